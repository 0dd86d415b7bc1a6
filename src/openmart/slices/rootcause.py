"""Root cause of a metric's change: the features whose drift best explains it.

Covariate-shift attribution by importance weighting, one feature at a time: keep the model's
per-bin performance as it was in the labelled baseline, and take the current window's mix of
that feature's bins. The metric the model would have had if only that feature's distribution
had changed is

    expected_X = metric( sum over bins b of X:  P_current(b) * sums_baseline(b) / n_baseline(b) )

— for accuracy, sum_b P_current(b) * accuracy_baseline(b); ratio metrics (precision, F1) and
RMSE are rebuilt from the reweighted sums. ``explained_X = expected_X - metric_baseline`` is the
change X's shift accounts for; the features are ranked by it (the largest drop first). A bin
the baseline never saw (a new category) is given the baseline's overall metric: its share of the
change stays unexplained. Beside each feature, its drift between the baseline's and the current
bin frequencies: PSI and the Jensen–Shannon distance (base 2).

This is importance weighting for covariate shift (Shimodaira 2000, "Improving predictive
inference under covariate shift by weighting the log-likelihood function"), with density ratios
estimated per bin of one feature — the marginal version of what NannyML describes as linking
drift alerts back to changes in model performance; see docs/slices.md for its limits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.spatial.distance import jensenshannon

from openmart.slices.data import Coded
from openmart.slices.metrics import SliceMetric, group_sums, record_values, totals

EPS = 1e-4  # PSI's floor for an empty bin's share


@dataclass
class RootCause:
    metric: str
    higher_is_better: bool
    baseline: str
    baseline_value: float | None
    current_value: float | None
    change: float | None
    baseline_records: int
    records: int
    frame: pd.DataFrame
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        def plain(v: Any) -> Any:
            v = v.item() if isinstance(v, np.generic) else v
            return None if isinstance(v, float) and not np.isfinite(v) else v

        return {
            "metric": self.metric,
            "higher_is_better": self.higher_is_better,
            "baseline": self.baseline,
            "baseline_value": plain(self.baseline_value),
            "current_value": plain(self.current_value),
            "change": plain(self.change),
            "baseline_records": self.baseline_records,
            "records": self.records,
            "settings": self.settings,
            "features": [{k: plain(v) for k, v in r.items()} for r in self.frame.to_dict(orient="records")],
        }


def psi(p: np.ndarray, q: np.ndarray) -> float:
    """Population stability index between two frequency vectors (baseline ``p``, current ``q``)."""
    p, q = np.maximum(p, EPS), np.maximum(q, EPS)
    return float(np.sum((q - p) * np.log(q / p)))


def attribute(
    current: Coded, baseline: Coded, metric: SliceMetric, *, positive: Any | None, baseline_name: str
) -> RootCause:
    cur_values = record_values(metric, current.y_true, current.y_pred, positive)
    base_values = record_values(metric, baseline.y_true, baseline.y_pred, positive)
    base_total = totals(base_values, baseline.n)
    base_metric = float(metric.value(base_total)[0]) if baseline.n else np.nan
    cur_metric = float(metric.value(totals(cur_values, current.n))[0]) if current.n else np.nan
    change = cur_metric - base_metric
    sign = 1.0 if metric.higher_is_better else -1.0
    rows = []
    for f, bf in zip(current.features, baseline.features, strict=True):
        size = len(f.labels)
        base = group_sums(bf.codes, size, base_values)
        p_cur = np.bincount(f.codes, minlength=size) / max(current.n, 1)
        p_base = base["n"] / max(baseline.n, 1)
        seen = base["n"] > 0
        # the current mix of bins over the baseline's per-bin sums (records' importance weights
        # P_current(b) / P_baseline(b)); unseen bins take the baseline's overall rates
        expected = {}
        for key in base:
            per_record = np.where(
                seen, base[key] / np.where(seen, base["n"], 1), base_total[key][0] / max(baseline.n, 1)
            )
            expected[key] = np.array([float(np.sum(p_cur * per_record))])
        value = float(metric.value(expected)[0])
        explained = value - base_metric
        shift = p_cur - p_base
        rows.append(
            {
                "feature": f.name,
                "explained": explained,
                "explained_share": explained / change if change and np.isfinite(change) else np.nan,
                "expected": value,
                "psi": psi(p_base, p_cur),
                "js_distance": float(jensenshannon(p_base, p_cur, base=2)) if baseline.n and current.n else np.nan,
                "most_grown": f.labels[int(np.argmax(shift))],
                "grown_by": float(np.max(shift)),
                "unseen_share": float(p_cur[~seen].sum()),
            }
        )
    frame = pd.DataFrame(rows)
    if len(frame):
        # the largest drop in the metric's good direction first
        frame = frame.sort_values("explained", key=lambda s: sign * s, ignore_index=True)
    return RootCause(
        metric=metric.name,
        higher_is_better=metric.higher_is_better,
        baseline=baseline_name,
        baseline_value=base_metric,
        current_value=cur_metric,
        change=change,
        baseline_records=baseline.n,
        records=current.n,
        frame=frame,
    )
