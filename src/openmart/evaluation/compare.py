"""Comparing two record sets (issue #17): production v2 against validation v2, production v2
against production v1 last week, a validation set against THE reference.

A comparison is stored as evaluations of kind ``comparison`` (no alert is opened, updated or
resolved: alerts follow the monitored stream, not a question someone asked):

* the TARGET evaluation runs the requested monitors over the target set; drift compares it with
  the baseline set (``Window.baseline``), so drift is measured once, between the two;
* the BASELINE evaluation runs quality and fairness over the baseline set on its own.

Why two evaluations and not one: quality and fairness describe ONE set (accuracy of v1, accuracy
of v2); the runner measures one window per evaluation, and each evaluation keeps its own record
count, summary and status. Two evaluations keep that shape (and the runner untouched); their
summaries then name each other (``summary["comparison"]``), so a reader (the report,
:func:`stored`) pairs them without guessing.

A set that is too small for a monitor (fewer records than its ``min_records``) is reported in
:attr:`Comparison.notes` and in the ``note`` column, never as a failure. A labelled set without
predictions (a training set logged with labels only) has no quality or fairness: that is a note too.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from openmart import arguments
from openmart.context import SubscriptionContext
from openmart.errors import MonitorError, ValidationError
from openmart.evaluation import runner
from openmart.mart import evaluations, stats, subscriptions, windows
from openmart.mart import versions as versions_table
from openmart.mart.evaluations import EvaluationRecord
from openmart.mart.windows import LABELLED_SETS, PRODUCTION, Window
from openmart.monitors import drift_tests
from openmart.monitors.store import Monitors

#: the monitors a comparison runs: drift between the sets, quality and fairness on each
COMPARABLE = ("drift", "quality", "fairness")
#: the monitors measured on the baseline set too (drift is measured between the two sets)
PER_SET = ("quality", "fairness")
COLUMNS = [
    "monitor",
    "metric",
    "feature",
    "group",
    "baseline",
    "target",
    "delta",
    "breached",
    "baseline_breached",
    "threshold",
    "value_kind",
    "note",
]

# -- the set syntax: ENVIRONMENT[:VERSION][@SINCE..UNTIL] -----------------------------------------


def parse_set(spec: str, name: str = "target") -> Window:
    """``production:2``, ``validation:2``, ``training:1``, ``production:1@2026-11-01..2026-11-08``,
    ``production@2026-11-01..`` (every version). A training or validation set without a version is
    the current version's (as ``sub.reference.read_set``); production without one is every version.
    The error names the part that is wrong."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValidationError(
            f"{name}: give a record set such as production:2, validation:2 or production:1@2026-11-01..2026-11-08",
            column=name,
            value=spec,
        )
    text = spec.strip()
    head, at, span = text.partition("@")
    env, colon, version = head.partition(":")
    env = env.strip().lower()
    if env not in (PRODUCTION, *LABELLED_SETS):
        raise ValidationError(
            f"{name} {spec!r}: environment {env!r} is not one of production, training, validation",
            column=name,
            value=env,
        )
    v: str | None = None
    if colon:
        if not version.strip():
            raise ValidationError(f"{name} {spec!r}: the version after ':' is empty", column=name, value=version)
        try:
            v = versions_table.check_version(version.strip(), f"{name} version")
        except ValidationError as exc:
            raise ValidationError(f"{name} {spec!r}: {exc}", column=name, value=version) from None
    since = until = None
    if at:
        if env != PRODUCTION:
            raise ValidationError(
                f"{name} {spec!r}: time range '@{span}' — a {env} set has no scoring times; "
                "time ranges are for production only",
                column=name,
                value=span,
            )
        start, dots, end = span.partition("..")
        if not dots or not (start.strip() or end.strip()):
            raise ValidationError(
                f"{name} {spec!r}: time range '@{span}' — write @SINCE..UNTIL (either end may be left out)",
                column=name,
                value=span,
            )
        try:
            since, until = arguments.time_window(
                start.strip() or None, end.strip() or None, since_name=f"{name} since", until_name=f"{name} until"
            )
        except ValidationError as exc:
            raise ValidationError(f"{name} {spec!r}: time range '@{span}': {exc}", column=name, value=span) from None
    return Window(since=since, until=until, environment=env, version=v)


def as_set(value: Window | str, name: str) -> Window:
    if isinstance(value, Window):
        return value
    if isinstance(value, str):
        return parse_set(value, name)
    raise ValidationError(
        f"{name}: give a Window or a record set such as 'production:2' (got {type(value).__name__})", column=name
    )


def _with_version(conn: Any, ctx: SubscriptionContext, window: Window, name: str) -> Window:
    """The set with its version checked against ``model_versions`` (a labelled set without one:
    the current version's)."""
    version = window.version
    if version is None and window.labelled_set:
        version = versions_table.current_version(conn, ctx.id)
    if version is not None and not versions_table.exists(conn, ctx.id, version):
        known = [v.version for v in versions_table.list_for(conn, ctx.id)]
        raise ValidationError(
            f"{name}: subscription {ctx.name!r} has no model version {version!r} "
            f"(its versions: {', '.join(known) if known else 'none'})",
            column=name,
            value=version,
        )
    return Window(window.since, window.until, window.last, window.environment, version)


# -- the result ---------------------------------------------------------------------------------


@dataclass
class Comparison:
    """Two record sets compared: per metric the baseline's value, the target's, the delta
    (target - baseline) and whether each breached its threshold; drift per feature (a value
    between the two sets: a p-value or a distance, in ``target``)."""

    subscription: str
    target: Window
    baseline: Window
    frame: pd.DataFrame
    target_evaluation: int
    baseline_evaluation: int | None
    target_records: int | None = None
    baseline_records: int | None = None
    notes: list[dict[str, Any]] = field(default_factory=list)

    @property
    def evaluation_ids(self) -> list[int]:
        return [i for i in (self.target_evaluation, self.baseline_evaluation) if i is not None]

    @property
    def target_description(self) -> str:
        return self.target.describe()

    @property
    def baseline_description(self) -> str:
        return self.baseline.describe()

    def metric(self, monitor: str, metric: str, feature: str | None = None) -> pd.Series:
        """One row of the frame (KeyError when it is not there)."""
        f = self.frame
        rows = f[(f["monitor"] == monitor) & (f["metric"] == metric)]
        if feature is not None:
            rows = rows[rows["feature"] == feature]
        if rows.empty:
            raise KeyError(f"{monitor}.{metric}" + (f"[{feature}]" if feature else ""))
        return rows.iloc[0]

    def to_dict(self) -> dict[str, Any]:
        rows = [{k: _plain(v) for k, v in r.items()} for r in self.frame.to_dict("records")]
        return {
            "subscription": self.subscription,
            "target": {
                "set": self.target.describe(),
                "window": self.target.to_dict() | {"environment": self.target.environment},
                "evaluation_id": self.target_evaluation,
                "records": self.target_records,
            },
            "baseline": {
                "set": self.baseline.describe(),
                "window": self.baseline.to_dict() | {"environment": self.baseline.environment},
                "evaluation_id": self.baseline_evaluation,
                "records": self.baseline_records,
            },
            "notes": self.notes,
            "rows": rows,
        }


def _plain(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if hasattr(value, "item"):  # numpy scalars
        value = value.item()
    return None if isinstance(value, float) and math.isnan(value) else value


def value_kind(monitor: str, metric: str) -> str:
    """How to read a value: ``p-value``, ``distance`` (drift tests), ``share``, or ``metric``."""
    if monitor != "drift":
        return "metric"
    if metric == "share_of_drifted_features":
        return "share"
    tests = drift_tests.available()
    if metric in tests:
        return "p-value" if tests[metric].p_value else "distance"
    return "metric"


def build_frame(target: pd.DataFrame, baseline: pd.DataFrame, notes: Sequence[Mapping[str, Any]] = ()) -> pd.DataFrame:
    """The tidy frame from two evaluations' measurement rows (columns monitor, metric, feature,
    group, value, breached, threshold, details). Drift comes from the target evaluation only."""
    keys = ["monitor", "metric", "feature", "group"]
    missing_note = {(n["side"], n["monitor"]): n for n in notes}

    def side(frame: pd.DataFrame) -> dict[tuple[Any, ...], dict[str, Any]]:
        out: dict[tuple[Any, ...], dict[str, Any]] = {}
        for r in frame.to_dict("records"):
            key = tuple(None if _plain(r.get(k)) is None else r[k] for k in keys)
            out[key] = r
        return out

    t, b = side(target), side(baseline)
    rows = []
    for key in list(dict.fromkeys([*t, *b])):
        monitor, metric, feature, group = key
        tr, br = t.get(key), b.get(key)
        tv = _plain(tr["value"]) if tr else None
        bv = _plain(br["value"]) if br and monitor != "drift" else None
        reasons = []
        for label, r in (("target", tr), ("baseline", br)):
            reason = ((r or {}).get("details") or {}).get("reason")
            if reason and (r is None or _plain(r["value"]) is None):
                reasons.append(f"{label}: {reason}")
        if monitor != "drift":
            for label, r in (("target", tr), ("baseline", br)):
                if r is None and (label, monitor) in missing_note:
                    n = missing_note[(label, monitor)]
                    reasons.append(f"{label}: {n['status'].replace('_', ' ')} ({n['reason']})")
        rows.append(
            {
                "monitor": monitor,
                "metric": metric,
                "feature": feature,
                "group": group,
                "baseline": bv,
                "target": tv,
                "delta": tv - bv if tv is not None and bv is not None else None,
                "breached": bool(tr["breached"]) if tr else False,
                "baseline_breached": bool(br["breached"]) if br and monitor != "drift" else False,
                "threshold": _plain((tr or br or {}).get("threshold")),
                "value_kind": value_kind(monitor, metric),
                "note": "; ".join(reasons) or None,
            }
        )
    order = {m: i for i, m in enumerate(COMPARABLE)}
    frame = pd.DataFrame(rows, columns=COLUMNS)
    for col in ("baseline", "target", "delta", "threshold"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
    if not frame.empty:
        frame = frame.sort_values("monitor", key=lambda s: s.map(lambda m: order.get(m, 99)), kind="stable")
    return frame.reset_index(drop=True)


def _notes(record: EvaluationRecord, side: str, kinds: Iterable[str]) -> list[dict[str, Any]]:
    """A monitor that measured nothing on this side: not enough data, skipped (and why)."""
    out = []
    for kind in kinds:
        s = record.summary.get(kind)
        if isinstance(s, Mapping) and s.get("status") not in (None, "ok"):
            out.append({"side": side, "monitor": kind, "status": s["status"], "reason": s.get("reason")})
    return out


# -- running a comparison -----------------------------------------------------------------------

Progress = Callable[[str], None]


def _enabled(ctx: SubscriptionContext, monitors: Sequence[str] | None) -> list[str]:
    enabled = {str(c.kind) for c in Monitors(ctx).configs() if c.enabled}
    if monitors is None:
        chosen = [m for m in COMPARABLE if m in enabled]
        if not chosen:
            raise MonitorError(
                f"subscription {ctx.name!r} has none of {', '.join(COMPARABLE)} enabled: "
                f"enable one first (openmart monitor enable {ctx.name} quality)"
            )
        return chosen
    names = [monitors] if isinstance(monitors, str) else list(monitors)
    if not names:
        raise ValidationError("monitors: give at least one of " + ", ".join(COMPARABLE), column="monitors")
    for m in names:
        if m not in COMPARABLE:
            raise ValidationError(
                f"monitor {m!r}: a comparison measures {', '.join(COMPARABLE)}", column="monitors", value=m
            )
        if m not in enabled:
            raise MonitorError(
                f"the {m} monitor is not enabled on {ctx.name!r}: enable it first "
                f"(openmart monitor enable {ctx.name} {m}); a comparison uses the enabled monitors' settings"
            )
    return list(dict.fromkeys(names))


def _has_predictions(conn: Any, ctx: SubscriptionContext, window: Window) -> bool:
    relation = windows.labelled(window, ctx, joined=[ctx.schema.prediction], present=[ctx.schema.prediction])
    return stats.count(conn, relation) > 0


def compare(
    ctx: SubscriptionContext,
    target: Window | str,
    baseline: Window | str | None = None,
    *,
    monitors: Sequence[str] | None = None,
    progress: Progress | None = None,
    flush: Callable[[], object] | None = None,
) -> Comparison:
    """Compare the ``target`` record set with the ``baseline`` (default: THE reference, the
    training set of the reference version; a target Window's own baseline when it has one)."""
    target_set = as_set(target, "target")
    if baseline is None and target_set.baseline is not None:
        baseline = target_set.baseline
    kinds = _enabled(ctx, monitors)
    if flush is not None:
        flush()  # records captured in the background belong in the sets
    with ctx.engine.connect() as conn:
        record = subscriptions.by_id(conn, ctx.id)
        ctx = ctx.with_record(record)
        base_set = (
            windows.reference_window(record.reference_version) if baseline is None else as_set(baseline, "baseline")
        )
        target_set = _with_version(conn, ctx, target_set, "target")
        base_set = _with_version(conn, ctx, base_set, "baseline")
        per_set = [k for k in kinds if k in PER_SET]
        # quality and fairness read labelled records WITH predictions: a labelled set logged with
        # labels only (a training set, often) has nothing for them to measure
        skipped: list[dict[str, Any]] = []
        run_on: dict[str, list[str]] = {"target": [k for k in kinds if k not in PER_SET], "baseline": []}
        for side, window in (("target", target_set), ("baseline", base_set)):
            if window.labelled_set and per_set and not _has_predictions(conn, ctx, window):
                reason = f"the {window.describe()} set holds no predictions"
                skipped += [{"side": side, "monitor": k, "status": "no_predictions", "reason": reason} for k in per_set]
            else:
                run_on[side] += per_set
    run_target = [k for k in kinds if k in run_on["target"]]
    target_eval = (
        runner.evaluate(
            ctx,
            window=Window(
                target_set.since,
                target_set.until,
                target_set.last,
                target_set.environment,
                target_set.version,
                baseline=base_set,
            ),
            kinds=run_target,
            progress=progress,
            kind="comparison",
        )
        if run_target
        else None
    )
    base_eval = (
        runner.evaluate(ctx, window=base_set, kinds=run_on["baseline"], progress=progress, kind="comparison")
        if run_on["baseline"]
        else None
    )
    if target_eval is None:
        # nothing to run on the target (only quality/fairness asked, and it has no predictions):
        # an evaluation still records the comparison, with its note
        target_eval = runner.evaluate(
            ctx, window=_pair(target_set, base_set), kinds=[], progress=progress, kind="comparison"
        )
    with ctx.engine.connect() as conn:
        target_records = evaluations.count_window(conn, ctx, target_set)
        base_records = evaluations.count_window(conn, ctx, base_set)
    link = {
        "target_evaluation": target_eval.evaluation_id,
        "baseline_evaluation": base_eval.evaluation_id if base_eval else None,
        "target_records": target_records,
        "baseline_records": base_records,
        "monitors": kinds,
        "skipped": skipped,
    }
    with ctx.engine.begin() as conn:
        evaluations.merge_summary(conn, target_eval.evaluation_id, {"comparison": {"role": "target", **link}})
        if base_eval is not None:
            evaluations.merge_summary(conn, base_eval.evaluation_id, {"comparison": {"role": "baseline", **link}})
    return stored(ctx, target_eval.evaluation_id)


def _pair(target: Window, baseline: Window) -> Window:
    return Window(target.since, target.until, target.last, target.environment, target.version, baseline=baseline)


def stored(ctx: SubscriptionContext, evaluation_id: int) -> Comparison:
    """A comparison as stored: its target evaluation (and the baseline one it names)."""
    with ctx.engine.connect() as conn:
        target = evaluations.get(conn, evaluation_id)
        link = dict(target.summary.get("comparison") or {})
        base_id = link.get("baseline_evaluation")
        base = evaluations.get(conn, int(base_id)) if base_id is not None else None
        t_rows = evaluations.measurements_frame(conn, ctx.id, evaluation_id=target.id)
        b_rows = (
            evaluations.measurements_frame(conn, ctx.id, evaluation_id=base.id) if base is not None else pd.DataFrame()
        )
    kinds = link.get("monitors") or list(COMPARABLE)
    notes = _notes(target, "target", kinds) + (_notes(base, "baseline", kinds) if base is not None else [])
    notes += list(link.get("skipped") or [])
    target_set = Window.from_dict(target.target or {})
    base_set = Window.from_dict(target.baseline) if target.baseline else windows.reference_window(None)
    return Comparison(
        subscription=ctx.name,
        target=target_set,
        baseline=base_set,
        frame=build_frame(t_rows, b_rows, notes),
        target_evaluation=target.id,
        baseline_evaluation=base.id if base is not None else None,
        target_records=link.get("target_records", target.records),
        baseline_records=link.get("baseline_records"),
        notes=notes,
    )


def latest(ctx: SubscriptionContext, limit: int = 3) -> list[Comparison]:
    """The subscription's newest finished comparisons, newest first."""
    with ctx.engine.connect() as conn:
        found = evaluations.comparisons(conn, ctx.id, limit=limit)
    return [stored(ctx, e.id) for e in found]
