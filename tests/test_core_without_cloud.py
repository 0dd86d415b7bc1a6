"""The core knows no provider and needs no cloud SDK.

- Every module of ``openmart`` imports, and the CLI runs, in an interpreter where boto3,
  botocore and the SageMaker SDK cannot be imported; the sagemaker plug-in is then skipped with
  its reason, and ``openmart bind add ... --provider sagemaker`` says which extra to install.
- Every provider declares its capabilities; capture and ground-truth ingest are declared by the
  sagemaker provider only, and the capture commands refuse the others in one line.
- No core source names a provider kind in code, or imports a cloud SDK or a provider package.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

import openmart
from openmart.errors import CapabilityMissing
from openmart.providers import registry
from openmart.providers.base import (
    BASIC_CAPABILITIES,
    Capability,
    CaptureSource,
    GroundTruthSource,
)

CORE = Path(openmart.__file__).resolve().parent
CLOUD_SDKS = ("boto3", "botocore", "s3transfer", "sagemaker", "aiobotocore")

#: refuses the cloud SDKs as if they were not installed; loaded by ``site`` at start-up
BLOCKER = f"""
import importlib.abc
import sys

BLOCKED = {CLOUD_SDKS!r}


class _NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None


sys.meta_path.insert(0, _NotInstalled())
"""

#: imports every module of the core, then reports what the registry found
PROBE = """
import json, pkgutil, importlib, sys
import openmart

failed = {}
for info in pkgutil.walk_packages(openmart.__path__, "openmart."):
    try:
        importlib.import_module(info.name)
    except Exception as exc:
        failed[info.name] = f"{type(exc).__name__}: {exc}"
for name in ("openmart.api", "openmart.cli.app", "openmart.evaluation.runner", "openmart.scoring.capture",
             "openmart.monitors.drift", "openmart.capture"):
    importlib.import_module(name)

from openmart.providers import registry

try:
    import boto3
    blocked = False
except ModuleNotFoundError:
    blocked = True
print(json.dumps({
    "blocked": blocked,
    "failed": failed,
    "loaded_sdks": sorted(m for m in sys.modules if m.split(".")[0] in __SDKS__),
    "available": sorted(registry.available()),
    "skipped": registry.skipped(),
}))
""".replace("__SDKS__", repr(CLOUD_SDKS))


@pytest.fixture
def no_cloud_env(tmp_path: Path, database_url: str, schema_name: str) -> dict[str, str]:
    """An environment whose interpreters cannot import the cloud SDKs, on this test's mart."""
    site = tmp_path / "no_cloud"
    site.mkdir()
    (site / "sitecustomize.py").write_text(textwrap.dedent(BLOCKER))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "OPENMART_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])])
    env["OPENMART_DATABASE_URL"] = database_url
    env["OPENMART_SCHEMA"] = schema_name
    env["OPENMART_DATA_DIR"] = str(tmp_path / "data")
    return env


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)


def _openmart(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("openmart")
    cmd = [str(script)] if script.exists() else [sys.executable, "-c", "from openmart.cli.app import main; main()"]
    return _run(env, *cmd, *args)


def test_the_core_imports_and_runs_without_a_cloud_sdk(no_cloud_env: dict[str, str]) -> None:
    probe = _run(no_cloud_env, sys.executable, "-c", PROBE)
    assert probe.returncode == 0, probe.stderr
    found = json.loads(probe.stdout.strip().splitlines()[-1])
    assert found["blocked"], "the blocker did not load: the test would prove nothing"
    assert found["failed"] == {}
    assert found["loaded_sdks"] == []
    assert {"custom", "algorithmia"} <= set(found["available"]) and "sagemaker" not in found["available"]
    assert "openmart[sagemaker]" in found["skipped"]["sagemaker"]
    assert "skipped" in probe.stderr  # the plug-in's skip is logged, with its reason

    helped = _openmart(no_cloud_env, "--help")
    assert helped.returncode == 0, helped.stderr
    assert "capture" in helped.stdout

    # a core operation on a real mart: bind the plain HTTP provider, list it
    added = _openmart(no_cloud_env, "bind", "add", "web", "--provider", "custom", "--set", "url=http://127.0.0.1:9/p")
    assert added.returncode == 0, added.stderr
    listed = _openmart(no_cloud_env, "bind", "list", "--json")
    assert listed.returncode == 0 and [b["name"] for b in json.loads(listed.stdout)] == ["web"]

    # binding SageMaker without boto3: one line naming the extra to install
    refused = _openmart(no_cloud_env, "bind", "add", "aws", "--provider", "sagemaker", "--set", "region=us-east-1")
    assert refused.returncode != 0
    message = refused.stderr.strip()
    assert "pip install 'openmart[sagemaker]'" in message and "boto3" in message, message
    assert "Traceback" not in refused.stderr


def test_every_provider_declares_its_capabilities() -> None:
    factories = registry.available()
    assert {"custom", "algorithmia", "sagemaker"} <= set(factories)
    for kind, factory in factories.items():
        declared = factory.__dict__.get("capabilities") or getattr(factory, "capabilities", None)
        assert isinstance(declared, frozenset) and declared, f"{kind} declares no capabilities"
        assert all(isinstance(c, Capability) for c in declared), kind
        assert declared >= BASIC_CAPABILITIES, kind
        assert registry.capabilities(kind) == declared
        # a declared ingest capability comes with its method, and only then
        assert (Capability.INGEST_CAPTURE in declared) == callable(getattr(factory, "capture_records", None)), kind
        assert (Capability.INGEST_GROUND_TRUTH in declared) == callable(
            getattr(factory, "ground_truth_records", None)
        ), kind
    ingests = {k for k in factories if Capability.INGEST_CAPTURE in registry.capabilities(k)}
    truths = {k for k in factories if Capability.INGEST_GROUND_TRUTH in registry.capabilities(k)}
    assert ingests == truths == {"sagemaker"}
    assert issubclass(factories["sagemaker"], CaptureSource) and issubclass(factories["sagemaker"], GroundTruthSource)


def test_capture_commands_refuse_a_provider_without_the_capability(mart: openmart.Mart, cli) -> None:  # type: ignore[no-untyped-def]
    mart.bindings.add("web", "custom", {"url": "http://127.0.0.1:9/predict"})
    reference = pd.DataFrame({"x": [0.1, 0.5, 0.9, 0.3], "y": [0, 1, 1, 0]})
    sub = mart.subscriptions.add("s", reference=reference, label="y", problem_type="binary", binding="web")
    for args, what in (
        (("capture", "ingest", "s"), "ingest capture"),
        (("capture", "ground-truth", "s", "s3://bucket/gt/"), "ingest ground truth"),
    ):
        result = cli(*args, ok=False)
        assert result.exit_code != 0
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert "'custom'" in lines[0] and f"cannot {what}" in lines[0]
        assert "it supports: score, list, describe" in lines[0]
    from openmart.capture import ingest_capture, ingest_ground_truth

    with pytest.raises(CapabilityMissing, match="binding 'web' uses provider 'custom'"):
        ingest_capture(sub)
    with pytest.raises(CapabilityMissing, match="cannot ingest ground truth"):
        ingest_ground_truth(sub, "s3://bucket/gt/")
    assert sub.payload.count() == 0 and sub.feedback.count() == 0


# -- the core names no provider ------------------------------------------------------------------


def _kinds() -> set[str]:
    from importlib.metadata import entry_points

    return {ep.name for ep in entry_points(group=registry.GROUP)}


#: the only places in the core that may name a provider kind in code (a path, or a folder ending
#: in /), and why
ALLOWED = {
    # the quickstart deploys a local model and binds it with the shipped plain-HTTP provider
    ("quickstart.py", "custom"),
    # reference model servers imitating a platform's HTTP API (what a provider talks to, for the
    # demos and tests): they know a platform's wire shape, not the provider plug-in
    ("deployments/", "algorithmia"),
    # OpenScale's V1 routes speak OpenScale's wire shape, whose binding type is "amazon_sagemaker":
    # they map it onto the sagemaker plug-in by name (no SDK import: test above and below)
    ("service/openscale/", "sagemaker"),
    # the REST API's OpenAPI examples and field descriptions name the shipped plug-ins (documentation)
    ("service/rest/models.py", "custom"),
    ("service/rest/models.py", "sagemaker"),
    ("service/rest/models.py", "algorithmia"),
    # the dashboard's time range picker has a "custom" range (start and end given), not the provider
    ("dashboard/timerange.py", "custom"),
}


def _allowed(rel: str, kind: str) -> bool:
    return any(k == kind and (rel == p or (p.endswith("/") and rel.startswith(p))) for p, k in ALLOWED)


def _docstrings(tree: ast.AST) -> set[int]:
    ids: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def _help_texts(tree: ast.AST) -> set[int]:
    """Strings given as ``help=`` (documentation shown by ``--help``, examples included)."""
    ids: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg in ("help", "epilog", "short_help"):
            ids.update(id(n) for n in ast.walk(node.value) if isinstance(n, ast.Constant))
    return ids


def _offences(rel: str, source: str, kinds: set[str]) -> list[str]:
    """What in one core file (``rel``: its path under the package) names a provider in code or
    imports a cloud SDK or a provider package."""
    tree = ast.parse(source, filename=rel)
    docs = _docstrings(tree) | _help_texts(tree)
    found: list[str] = []
    for node in ast.walk(tree):
        where = f"{rel}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for name in names:
                top = name.split(".")[0]
                if top in CLOUD_SDKS or top.startswith("openmart_"):
                    found.append(f"{where}: imports {name}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            text = node.value.lower()
            for kind in kinds:
                if (kind == text or (len(kind) > 6 and kind in text)) and not _allowed(rel, kind):
                    found.append(f"{where}: names the provider {kind!r} in {node.value[:60]!r}")
        elif isinstance(node, ast.Name | ast.Attribute | ast.FunctionDef | ast.ClassDef | ast.arg):
            ident = getattr(node, "id", None) or getattr(node, "attr", None) or getattr(node, "name", None)
            ident = ident or getattr(node, "arg", None)
            if ident and any(len(k) > 6 and k in ident.lower() and not _allowed(rel, k) for k in kinds):
                found.append(f"{where}: identifier {ident!r}")
    return found


def test_the_core_names_no_provider_and_imports_no_cloud_sdk() -> None:
    kinds = _kinds()
    assert {"sagemaker", "algorithmia", "custom"} <= kinds
    offences = [
        o
        for path in sorted(CORE.rglob("*.py"))
        for o in _offences(path.relative_to(CORE).as_posix(), path.read_text(), kinds)
    ]
    assert offences == []


def test_the_guard_sees_what_it_guards_against() -> None:
    """The scan above would catch a provider named in code or an SDK imported."""
    source = textwrap.dedent(
        '''
        """Docstrings may say sagemaker."""
        import boto3
        from openmart_sagemaker import capture

        def f(kind):
            if kind == "sagemaker":
                return sagemaker_client
            return "custom"
        '''
    )
    offences = _offences("probe.py", source, _kinds())
    assert any("imports boto3" in o for o in offences)
    assert any("imports openmart_sagemaker" in o for o in offences)
    assert any("names the provider 'sagemaker'" in o for o in offences)
    assert any("names the provider 'custom'" in o for o in offences)
    assert any("identifier 'sagemaker_client'" in o for o in offences)
    assert not any("Docstrings" in o for o in offences)
