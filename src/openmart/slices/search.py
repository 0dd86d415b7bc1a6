"""Quality by slice and the search for the slices that cost the most.

For a slice S with a share ``s`` of the records, the metric ``m_S`` in the slice and ``m_R`` in
the rest, the **impact** is ``s * (m_R - m_S)`` for a metric where higher is better (the sign
flipped for an error): for accuracy it is exactly how much higher the overall accuracy would be
had S done as well as the rest — the part of the overall shortfall S accounts for. Against a
baseline window instead of the rest it is ``s * (m_S,baseline - m_S)``: how much of the drop
between the windows S accounts for.

A slice is tested when it has at least ``min_records`` records and ``min_share`` of them (and the
rest, or the baseline's slice, has ``min_records`` too); each tested slice gets a two-sided
p-value (:mod:`openmart.slices.metrics`), and the p-values of every slice tested in the run —
single features, pairs — are adjusted together with Benjamini–Hochberg. A slice is reported when
its adjusted p-value (``q_value``) is at most ``alpha`` and it does worse (impact > 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from openmart.slices.data import Coded, Feature
from openmart.slices.expressions import Expression, evaluate
from openmart.slices.metrics import SliceMetric, Sums, benjamini_hochberg, group_sums, record_values, totals

COLUMNS = [
    "slice",
    "kind",
    "features",
    "records",
    "share",
    "value",
    "compared",
    "difference",
    "impact",
    "p_value",
    "q_value",
    "significant",
]
MAX_PAIR_CELLS = 4096  # a pair of high-cardinality features is skipped, not made into 10^5 slices


@dataclass
class SliceResult:
    """``frame``: the top slices, significant, by impact; ``tested``: every slice tested;
    ``expressions``: the user's slices (always shown; their p-values adjusted among themselves)."""

    metric: str
    higher_is_better: bool
    against: str  # "rest" or "baseline"
    overall: float | None
    baseline_overall: float | None
    records: int
    frame: pd.DataFrame
    tested: pd.DataFrame
    expressions: pd.DataFrame
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        def rows(f: pd.DataFrame) -> list[dict[str, Any]]:
            return [{k: _plain(v) for k, v in r.items()} for r in f.to_dict(orient="records")]

        return {
            "metric": self.metric,
            "higher_is_better": self.higher_is_better,
            "against": self.against,
            "overall": _plain(self.overall),
            "baseline_overall": _plain(self.baseline_overall),
            "records": self.records,
            "settings": self.settings,
            "slices": rows(self.frame),
            "expressions": rows(self.expressions),
            "tested": int(len(self.tested)),
        }


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not np.isfinite(v):
        return None
    return v


def _concat(parts: Sequence[Sums]) -> Sums:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else {}


@dataclass
class _Slices:
    sums: Sums
    labels: list[str]
    features: list[str]
    kind: list[str]


def _singles(coded: Coded, values: dict[str, np.ndarray], baseline: tuple[Coded, dict[str, np.ndarray]] | None):
    parts, base_parts, labels, names = [], [], [], []
    for i, f in enumerate(coded.features):
        size = len(f.labels)
        parts.append(group_sums(f.codes, size, values))
        if baseline is not None:
            base_parts.append(group_sums(baseline[0].features[i].codes, size, baseline[1]))
        labels += f.labels
        names += [f.name] * size
    cur = _Slices(_concat(parts), labels, names, ["single"] * len(labels))
    return cur, (_concat(base_parts) if baseline is not None else None)


def _pair_codes(a: Feature, b: Feature) -> tuple[np.ndarray, int]:
    return a.codes * len(b.labels) + b.codes, len(a.labels) * len(b.labels)


def _pairs(
    coded: Coded,
    values: dict[str, np.ndarray],
    chosen: Sequence[int],
    baseline: tuple[Coded, dict[str, np.ndarray]] | None,
) -> tuple[_Slices, Sums | None]:
    parts, base_parts, labels, names = [], [], [], []
    for i, j in combinations(sorted(chosen), 2):
        a, b = coded.features[i], coded.features[j]
        codes, size = _pair_codes(a, b)
        if size > MAX_PAIR_CELLS:
            continue
        parts.append(group_sums(codes, size, values))
        if baseline is not None:
            bc, _ = _pair_codes(baseline[0].features[i], baseline[0].features[j])
            base_parts.append(group_sums(bc, size, baseline[1]))
        labels += [f"{x} and {y}" for x in a.labels for y in b.labels]
        names += [f"{a.name}, {b.name}"] * size
    cur = _Slices(_concat(parts), labels, names, ["pair"] * len(labels))
    return cur, (_concat(base_parts) if baseline is not None else None)


def _score(
    metric: SliceMetric,
    cur: Sums,
    total: Sums,
    base: Sums | None,
    n: int,
    min_records: int,
    min_share: float,
) -> dict[str, np.ndarray]:
    """Per slice: value, compared value, difference, impact, eligibility and p-value."""
    other = base if base is not None else {k: total[k] - cur[k] for k in cur}
    value, compared = metric.value(cur), metric.value(other)
    share = cur["n"] / max(n, 1)
    sign = 1.0 if metric.higher_is_better else -1.0
    with np.errstate(invalid="ignore"):
        impact = share * sign * (compared - value)
    eligible = (cur["n"] >= min_records) & (share >= min_share) & (other["n"] >= min_records)
    eligible &= np.isfinite(value) & np.isfinite(compared)
    p = np.ones_like(value)
    if eligible.any():
        p[eligible] = metric.pvalue(
            {k: v[eligible] for k, v in cur.items()}, {k: v[eligible] for k, v in other.items()}
        )
    return {"value": value, "compared": compared, "share": share, "impact": impact, "eligible": eligible, "p": p}


def search(
    coded: Coded,
    metric: SliceMetric,
    *,
    positive: Any | None,
    min_share: float = 0.01,
    min_records: int = 30,
    top: int = 10,
    alpha: float = 0.05,
    pairs: bool = False,
    pair_features: int = 6,
    expressions: Sequence[Expression] = (),
    baseline: Coded | None = None,
) -> SliceResult:
    """Rank the slices of ``coded`` by impact (see the module's doc). With ``pairs``, also the
    two-feature conjunctions of the ``pair_features`` features whose best single slice has the
    highest impact."""
    values = record_values(metric, coded.y_true, coded.y_pred, positive)
    total = totals(values, coded.n)
    base = None
    if baseline is not None:
        base_values = record_values(metric, baseline.y_true, baseline.y_pred, positive)
        base = (baseline, base_values)
    singles, base_singles = _singles(coded, values, base)
    scored = [(singles, _score(metric, singles.sums, total, base_singles, coded.n, min_records, min_share))]
    if pairs and len(coded.features) > 1:
        s = scored[0][1]
        best: dict[str, float] = {}
        for name, imp, ok in zip(singles.features, s["impact"], s["eligible"], strict=True):
            if ok and np.isfinite(imp):
                best[name] = max(best.get(name, -np.inf), float(imp))
        order = sorted(best, key=lambda k: -best[k])[:pair_features]
        index = [i for i, f in enumerate(coded.features) if f.name in order]
        pair_slices, base_pairs = _pairs(coded, values, index, base)
        if pair_slices.labels:
            scored.append(
                (pair_slices, _score(metric, pair_slices.sums, total, base_pairs, coded.n, min_records, min_share))
            )
    frames = []
    for slices, s in scored:
        keep = s["eligible"]
        frames.append(
            pd.DataFrame(
                {
                    "slice": np.array(slices.labels, dtype=object)[keep],
                    "kind": np.array(slices.kind, dtype=object)[keep],
                    "features": np.array(slices.features, dtype=object)[keep],
                    "records": slices.sums["n"][keep].astype(np.int64),
                    "share": s["share"][keep],
                    "value": s["value"][keep],
                    "compared": s["compared"][keep],
                    "difference": (s["value"] - s["compared"])[keep],
                    "impact": s["impact"][keep],
                    "p_value": s["p"][keep],
                }
            )
        )
    tested = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)
    tested["q_value"] = benjamini_hochberg(tested["p_value"].to_numpy(dtype=float))
    tested["significant"] = (tested["q_value"] <= alpha) & (tested["impact"] > 0)
    tested = tested.sort_values(["significant", "impact"], ascending=[False, False], ignore_index=True)
    frame = tested[tested["significant"]].head(top).reset_index(drop=True)
    against = "baseline" if baseline is not None else "rest"
    overall = float(metric.value(total)[0]) if coded.n else None
    baseline_overall = None
    if baseline is not None and baseline.n:
        baseline_overall = float(metric.value(totals(base[1], baseline.n))[0])  # type: ignore[index]
    return SliceResult(
        metric=metric.name,
        higher_is_better=metric.higher_is_better,
        against=against,
        overall=overall,
        baseline_overall=baseline_overall,
        records=coded.n,
        frame=frame.rename(columns={"compared": against})[_columns(against)],
        tested=tested.rename(columns={"compared": against})[_columns(against)],
        expressions=_expressions(metric, coded, values, total, expressions, against, base, alpha),
        settings={
            "min_share": min_share,
            "min_records": min_records,
            "alpha": alpha,
            "pairs": pairs,
            "correction": "benjamini-hochberg",
        },
    )


def _columns(against: str) -> list[str]:
    return [against if c == "compared" else c for c in COLUMNS]


def _expressions(
    metric: SliceMetric,
    coded: Coded,
    values: dict[str, np.ndarray],
    total: Sums,
    expressions: Sequence[Expression],
    against: str,
    base: tuple[Coded, dict[str, np.ndarray]] | None,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """The user's slices, each measured and tested; their p-values adjusted (Benjamini-Hochberg)
    within the family of expressions asked for together, as the search adjusts its own."""
    rows = []
    for e in expressions:
        mask = evaluate(e, coded.columns)
        cur = {"n": np.array([float(mask.sum())]), **{k: np.array([float(v[mask].sum())]) for k, v in values.items()}}
        if base is not None:
            bmask = evaluate(e, base[0].columns)
            other = {"n": np.array([float(bmask.sum())])}
            other.update({k: np.array([float(v[bmask].sum())]) for k, v in base[1].items()})
        else:
            other = {k: total[k] - cur[k] for k in cur}
        value, compared = metric.value(cur)[0], metric.value(other)[0]
        sign = 1.0 if metric.higher_is_better else -1.0
        share = cur["n"][0] / max(coded.n, 1)
        p = metric.pvalue(cur, other)[0] if cur["n"][0] > 1 and other["n"][0] > 1 else np.nan
        rows.append(
            {
                "slice": e.text,
                "kind": "expression",
                "features": ", ".join(e.features),
                "records": int(cur["n"][0]),
                "share": share,
                "value": value,
                against: compared,
                "difference": value - compared,
                "impact": share * sign * (compared - value),
                "p_value": p,
            }
        )
    frame = pd.DataFrame(rows, columns=_columns(against))
    if len(frame):
        p_values = frame["p_value"].to_numpy(dtype=float)
        tested = np.isfinite(p_values)
        q = np.full(len(frame), np.nan)
        q[tested] = benjamini_hochberg(p_values[tested])
        frame["q_value"] = q
        frame["significant"] = (np.nan_to_num(q, nan=1.0) <= alpha) & (frame["impact"].to_numpy(dtype=float) > 0)
    return frame
