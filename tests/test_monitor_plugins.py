"""A custom monitor and a custom drift test, added from a package of their own through entry points
(an installed-looking distribution: a ``*.dist-info`` with METADATA and entry_points.txt beside
the package, on sys.path), enabled and evaluated through the API and the CLI; their measurements
land in the mart. A broken plug-in is skipped with its reason. Values are checked against numpy."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import openmart
from openmart.errors import MonitorError
from openmart.monitors import drift_tests, registry

PACKAGE = '''
"""acme_monitors: a custom monitor and a custom drift test for openmart."""

from typing import Any

import numpy as np

from openmart.errors import MonitorError
from openmart.mart import stats, windows
from openmart.monitors.base import (
    BaseMonitor, Direction, Measurement, MetricSpec, MonitorOutcome, OptionSpec, min_records_option,
    thresholds_option,
)


class MeanShiftMonitor(BaseMonitor):
    """The window's mean of one numeric feature, and how far it moved from the reference's."""

    kind = "mean_shift"
    description = "Mean of one numeric feature, against the reference's."
    options = (
        OptionSpec("column", str, required=True, help="A numeric feature."),
        OptionSpec("scale", float, 1.0, low=0.0, low_open=True, help="Divides the shift."),
        thresholds_option(),
        min_records_option(10),
    )
    metrics = (
        MetricSpec("window_mean", Direction.LOWER_IS_BETTER, None),
        MetricSpec("mean_shift", Direction.LOWER_IS_BETTER, 0.25, low=0.0),
    )

    def check(self, ctx, values):
        if values["column"] not in ctx.schema.numeric_features:
            raise MonitorError(f"mean_shift monitor: option 'column': {values['column']!r} is not a numeric feature")
        return values

    def run(self, ctx, config, window, conn) -> MonitorOutcome:
        column = config.parameters["column"]
        current = stats.numeric_summary(conn, windows.payload(window, ctx.payload_table), column, []).moments
        reference = windows.reference_rows(conn, ctx.reference_table, [column])[column].astype(float)
        outcome = MonitorOutcome(self.kind, records=current.count)
        if current.count < config.min_records:
            outcome.status = "not_enough_data"
            return outcome
        shift = abs(current.mean - reference.mean()) / config.parameters["scale"]
        outcome.measurements += [
            Measurement.judged(self.kind, "window_mean", current.mean, config.threshold("window_mean"), feature=column),
            Measurement.judged(self.kind, "mean_shift", shift, config.threshold("mean_shift"), feature=column),
        ]
        return outcome


def median_gap(reference: np.ndarray, current: np.ndarray) -> dict[str, Any]:
    """Distance between the medians, in reference standard deviations."""
    gap = abs(float(np.median(current)) - float(np.median(reference))) / float(np.std(reference, ddof=1))
    return {"value": gap, "statistic": float(np.median(current)), "reference_median": float(np.median(reference))}


median_gap.threshold = 0.3
median_gap.kinds = ("numeric",)
'''

ENTRY_POINTS = """
[openmart.monitors]
mean_shift = acme_monitors:MeanShiftMonitor
broken = acme_monitors:DoesNotExist

[openmart.drift_tests]
median_gap = acme_monitors:median_gap
broken_test = acme_monitors_missing:whatever
"""


def _forget() -> None:
    registry.clear_cache()
    drift_tests.clear_cache()


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """acme-monitors 1.0 'installed' in a directory of its own, put on sys.path."""
    site = tmp_path / "site"
    (site / "acme_monitors").mkdir(parents=True)
    (site / "acme_monitors" / "__init__.py").write_text(textwrap.dedent(PACKAGE))
    info = site / "acme_monitors-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-monitors\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(site))
    _forget()
    yield site
    sys.modules.pop("acme_monitors", None)
    _forget()


def _world(mart: openmart.Mart, name: str = "acme") -> tuple[openmart.Subscription, pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(11)
    n = 2000
    ref = pd.DataFrame(
        {
            "x": rng.normal(0, 1, n),
            "y": rng.normal(5, 2, n),
            "colour": rng.choice(["red", "blue"], n),
            "label": rng.integers(0, 2, n),
        }
    )
    sub = mart.subscriptions.add(name, reference=ref, label="label", problem_type="binary")
    cur = pd.DataFrame(
        {
            "x": rng.normal(0.8, 1, 1500),  # moved
            "y": rng.normal(5, 2, 1500),  # stable
            "colour": rng.choice(["red", "blue"], 1500),
            "prediction": rng.integers(0, 2, 1500),
        }
    )
    sub.payload.log(cur)
    return sub, ref, cur


def _gap(ref: pd.Series, cur: pd.Series) -> float:
    return abs(cur.median() - ref.median()) / ref.std(ddof=1)


def test_plugins_are_discovered_and_a_broken_one_is_skipped(plugin: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        kinds = registry.available()
        tests = drift_tests.available()
    assert {"quality", "fairness", "drift", "explainability", "mean_shift"} <= set(kinds)
    assert "broken" not in kinds and "median_gap" in tests and "broken_test" not in tests
    assert "monitor plug-in 'broken' skipped" in caplog.text
    assert "drift test plug-in 'broken_test' skipped" in caplog.text
    with pytest.raises(MonitorError, match="'broken' \\(its plug-in could not be loaded: AttributeError"):
        registry.get("broken")
    with pytest.raises(MonitorError, match="unknown drift test 'broken_test' \\(its plug-in could not be loaded"):
        drift_tests.get("broken_test")
    gap = tests["median_gap"]
    assert (gap.threshold, gap.kinds, gap.drift_when) == (0.3, ("numeric",), "above")


def test_custom_monitor_and_drift_test_through_the_api(plugin: Path, mart: openmart.Mart) -> None:
    sub, ref, cur = _world(mart)
    config = sub.monitors.enable("mean_shift", column="x", thresholds=["window_mean=0.5"])
    assert config.kind == "mean_shift" and config.min_records == 10
    assert {t.metric: t.value for t in config.thresholds} == {"window_mean": 0.5, "mean_shift": 0.25}
    sub.monitors.enable("drift", tests={"x": "median_gap", "y": "median_gap"}, min_records=10)
    result = sub.evaluate()
    assert {o.kind: o.status for o in result.outcomes} == {"mean_shift": "ok", "drift": "ok"}

    stored = mart.sql(
        "SELECT monitor, metric, feature, value, threshold, breached FROM measurements "
        "WHERE evaluation_id = :e ORDER BY id",
        {"e": result.evaluation_id},
    )
    mine = stored[stored["monitor"] == "mean_shift"].set_index("metric")
    assert mine.loc["window_mean", "value"] == pytest.approx(cur["x"].mean())
    assert mine.loc["mean_shift", "value"] == pytest.approx(abs(cur["x"].mean() - ref["x"].mean()))
    assert bool(mine.loc["window_mean", "breached"]) and bool(mine.loc["mean_shift", "breached"])

    drift = stored[(stored["monitor"] == "drift") & stored["feature"].isin(["x", "y"])].set_index("feature")
    assert set(drift["metric"]) == {"median_gap"}
    assert drift.loc["x", "value"] == pytest.approx(_gap(ref["x"], cur["x"]))
    assert drift.loc["y", "value"] == pytest.approx(_gap(ref["y"], cur["y"]))
    assert drift.loc["x", "threshold"] == 0.3 and bool(drift.loc["x", "breached"])
    assert not bool(drift.loc["y", "breached"])
    # the other columns kept their built-in tests; the test's extra answers are kept in the details
    other = {m.feature: m for m in result.measurements if m.monitor == "drift" and m.feature}
    assert other["colour"].metric == "jensenshannon"
    assert other["x"].details["test"] == {"reference_median": pytest.approx(ref["x"].median())}
    alerts = mart.alerts()
    assert {"mean_shift", "drift"} <= set(alerts["monitor"])


def test_a_drift_test_registered_in_python(mart: openmart.Mart) -> None:
    def mean_gap(reference: np.ndarray, current: np.ndarray) -> float:
        return abs(float(current.mean()) - float(reference.mean()))

    openmart.register_drift_test("mean_gap", mean_gap, threshold=0.5, kinds=("numeric",))
    try:
        sub, ref, cur = _world(mart, "registered")
        sub.monitors.enable("drift", method="mean_gap", min_records=10, thresholds=["mean_gap=0.6"])
        result = sub.evaluate()
        by_feature = {m.feature: m for m in result.measurements if m.feature}
        assert by_feature["x"].metric == "mean_gap"
        assert by_feature["x"].value == pytest.approx(abs(cur["x"].mean() - ref["x"].mean()))
        assert by_feature["x"].threshold == 0.6 and by_feature["x"].breached
        assert not by_feature["y"].breached
        assert by_feature["colour"].metric == "jensenshannon"  # numeric only: categories fall back to auto
        with pytest.raises(MonitorError, match="'mean_gap' measures numeric columns; 'colour' is categorical"):
            sub.monitors.enable("drift", tests={"colour": "mean_gap"})
    finally:
        drift_tests.unregister("mean_gap")
    with pytest.raises(MonitorError, match="unknown drift test 'mean_gap'"):
        sub.monitors.enable("drift", tests={"x": "mean_gap"})


def test_custom_monitor_and_drift_test_through_the_cli(plugin: Path, cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(5)
    ref = pd.DataFrame({"x": rng.normal(0, 1, 1000), "y": rng.normal(0, 1, 1000), "label": rng.integers(0, 2, 1000)})
    cur = pd.DataFrame({"x": rng.normal(1, 1, 400), "y": rng.normal(0, 1, 400), "prediction": rng.integers(0, 2, 400)})
    ref.to_csv(tmp_path / "ref.csv", index=False)
    cur.to_csv(tmp_path / "cur.csv", index=False)
    cli("subscribe", "add", "c", "--reference", str(tmp_path / "ref.csv"), "--label", "label", "--problem", "binary")
    cli("payload", "log", "c", str(tmp_path / "cur.csv"))
    kinds = json.loads(cli("monitor", "kinds", "--json").stdout)
    assert "mean_shift" in {m["kind"] for m in kinds["monitors"]}
    assert "median_gap" in {t["name"] for t in kinds["drift_tests"]}
    cli("monitor", "enable", "c", "mean_shift", "--option", "column=y", "--option", "scale=2", "--min-records", "50")
    cli("monitor", "enable", "c", "drift", "--test", "x=median_gap", "--threshold", "median_gap=0.5")
    listed = {c["kind"]: c for c in json.loads(cli("monitor", "list", "c", "--json").stdout)}
    assert listed["mean_shift"]["parameters"] == {"column": "y", "scale": 2.0}
    assert listed["drift"]["parameters"]["tests"] == {"x": "median_gap"}
    result = json.loads(cli("evaluate", "c", "--json").stdout)
    assert result["monitors"]["mean_shift"]["status"] == "ok"
    rows = json.loads(cli("measurements", "c", "--monitor", "mean_shift", "--json").stdout)
    shift = next(r for r in rows if r["metric"] == "mean_shift")
    assert shift["value"] == pytest.approx(abs(cur["y"].mean() - ref["y"].mean()) / 2)
    drift = json.loads(cli("measurements", "c", "--monitor", "drift", "--metric", "median_gap", "--json").stdout)
    assert len(drift) == 1 and drift[0]["feature"] == "x" and drift[0]["threshold"] == 0.5
    assert drift[0]["value"] == pytest.approx(_gap(ref["x"], cur["x"])) and drift[0]["breached"]


def test_a_fresh_process_finds_the_plugins_on_pythonpath(plugin: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin), os.environ.get("PYTHONPATH", "")])}
    code = (
        "import json; from openmart.monitors import registry, drift_tests; "
        "print(json.dumps([sorted(registry.available()), sorted(drift_tests.available())]))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    monitors, tests = json.loads(out.stdout)
    assert "mean_shift" in monitors and "broken" not in monitors and "median_gap" in tests
    assert "monitor plug-in 'broken' skipped" in out.stderr


def test_the_built_ins_are_declared_as_entry_points_in_pyproject() -> None:
    """openmart declares its own monitors the way a plug-in does; each declaration loads and is a
    monitor of its entry point's kind (checked from pyproject.toml: an editable install's
    metadata may predate it)."""
    import importlib
    import tomllib

    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    declared = pyproject["project"]["entry-points"][registry.GROUP]
    assert set(declared) == {
        "quality",
        "fairness",
        "drift",
        "explainability",
        "performance",
        "data_quality",
        "estimated_performance",
        "multivariate_drift",
    }
    for kind, target in declared.items():
        module, _, attr = target.partition(":")
        monitor = registry.check(getattr(importlib.import_module(module), attr), kind)
        assert type(monitor) is type(registry.get(kind))
