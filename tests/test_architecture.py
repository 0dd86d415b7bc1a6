"""The layout is the architecture (docs/architecture.md), and these tests keep it so:

- the import graph of ``openmart`` has no circle, function-level and type-only imports included;
- each module imports only from its own layer or the layers below it;
- SQL is written only under ``openmart/mart/`` (the gateway): no SQL text, no SQLAlchemy
  statement builders, no ``execute`` on a connection anywhere else.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "openmart"

# layer by module prefix (the longest prefix wins); a module may import its own layer and below
LAYERS: dict[str, int] = {
    "openmart.errors": 0,
    "openmart.config": 0,
    "openmart.schema": 0,
    "openmart.secrets": 0,
    "openmart.arguments": 0,
    "openmart.values": 0,
    "openmart.mart.identifiers": 0,  # name rules and quoting, no database: the schema's columns use them
    "openmart.faults": 0,  # named kill points for crash tests
    "openmart.aggregates": 0,  # mergeable pieces and their statistics: pure, engines (mart) and monitors use them
    "openmart.mart": 1,
    "openmart.providers": 2,
    "openmart.context": 2,
    "openmart.scoring": 3,
    "openmart.monitors": 3,
    "openmart.evaluation": 3,
    "openmart.explain": 3,
    "openmart.estimation": 3,
    "openmart.multivariate": 3,
    "openmart.capture": 3,
    "openmart.alerting": 3,
    "openmart.slices": 3,
    "openmart.api": 4,
    "openmart.report": 5,
    "openmart.quickstart": 5,
    "openmart.deployments": 5,
    "openmart.cli": 5,
    "openmart.service": 5,
    "openmart.dashboard": 5,
    "openmart": 5,
}
LAYER_NAMES = {0: "base", 1: "mart (gateway)", 2: "providers/context", 3: "services", 4: "api", 5: "applications"}


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if "migrations" in path.parts:
            continue  # alembic's scripts: data, run by alembic, part of the mart layer
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = modules()


def layer(module: str) -> int:
    best = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return LAYERS[best]


def _resolve(name: str) -> str | None:
    """The openmart module an import names (a name imported from a package is a submodule when
    one exists, else the package itself)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports(module: str, path: Path) -> Iterator[tuple[str, int]]:
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("openmart"):
                    target = _resolve(alias.name)
                    if target:
                        yield target, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            if not base.startswith("openmart"):
                continue
            for alias in node.names:
                target = _resolve(f"{base}.{alias.name}")
                if target:
                    yield target, node.lineno


GRAPH: dict[str, set[str]] = {m: {t for t, _ in imports(m, p) if t != m} for m, p in MODULES.items()}


def _package_inits(module: str) -> set[str]:
    """Packages Python initialises on the way to ``module``: not edges of the design."""
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def test_import_graph_has_no_circle() -> None:
    graph = {m: {t for t in ts if t not in _package_inits(m)} for m, ts in GRAPH.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not circles, f"import circles: {circles}"


def test_each_layer_imports_only_its_own_and_lower_layers() -> None:
    wrong = []
    for module, path in MODULES.items():
        for target, line in imports(module, path):
            if layer(target) > layer(module):
                wrong.append(
                    f"{path.relative_to(SRC)}:{line} {module} ({LAYER_NAMES[layer(module)]}) imports "
                    f"{target} ({LAYER_NAMES[layer(target)]})"
                )
    assert not wrong, "\n".join(wrong)


# -- SQL only in the gateway ---------------------------------------------------------------------

SQL_TEXT = re.compile(
    r"\b(SELECT\s.+\sFROM\s|INSERT\s+INTO\s|UPDATE\s+\S+\s+SET\s|DELETE\s+FROM\s|CREATE\s+(TEMP\s+|UNIQUE\s+)?"
    r"(TABLE|INDEX|SCHEMA)\s|DROP\s+(TABLE|INDEX|SCHEMA)\s|TRUNCATE\s|COPY\s.+\s(FROM|TO)\s|"
    r"pg_advisory|SET\s+(LOCAL\s+)?\w+\s*(=|TO)\s)",
    re.DOTALL,
)
SQL_CALLS = {"exec_driver_sql", "copy_expert", "copy_from", "copy_to", "mogrify"}
SQL_BUILDERS = {"select", "insert", "update", "delete", "text"}


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def sql_outside_the_gateway() -> Iterator[str]:
    for module, path in MODULES.items():
        if module.startswith("openmart.mart"):
            continue
        tree = ast.parse(path.read_text(), str(path))
        docs = _docstrings(tree)
        where = f"{path.relative_to(SRC)}"
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
                if SQL_TEXT.search(node.value):
                    yield f"{where}:{node.lineno} SQL text {node.value[:60]!r}"
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                name = node.func.attr
                owner = node.func.value
                if name in SQL_CALLS:
                    yield f"{where}:{node.lineno} .{name}()"
                elif name == "execute" and not (isinstance(owner, ast.Name) and owner.id in {"pool", "executor"}):
                    yield f"{where}:{node.lineno} .execute()"
                elif name in SQL_BUILDERS and isinstance(owner, ast.Name) and owner.id in {"sa", "sqlalchemy"}:
                    yield f"{where}:{node.lineno} sa.{name}()"
            elif isinstance(node, ast.ImportFrom) and node.module in {"sqlalchemy", "sqlalchemy.dialects.postgresql"}:
                builders = sorted({a.name for a in node.names} & SQL_BUILDERS)
                if builders:
                    yield f"{where}:{node.lineno} imports {builders} from {node.module}"


def test_sql_is_written_only_in_the_mart_gateway() -> None:
    found = list(sql_outside_the_gateway())
    assert not found, "SQL outside openmart/mart/:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "text",
    [
        "SELECT a FROM t",
        "INSERT INTO t VALUES (1)",
        "UPDATE t SET a = 1",
        "DELETE FROM t",
        "TRUNCATE t",
        "CREATE TEMP TABLE x (LIKE y)",
        "COPY t (a) FROM STDIN",
        "SET LOCAL standard_conforming_strings = on",
    ],
)
def test_the_sql_detector_sees_sql(text: str) -> None:
    assert SQL_TEXT.search(text)
