"""Black-box explanations: the model is seen only through a batch scoring function.

Every perturbed variant of one explanation goes to the deployment in as few calls as the
explainer allows — SHAP's rows in one call per round (:mod:`openmart.explain.shapley`), LIME's
samples in one, the contrastive search's candidates in one — never one call per variant: the
provider chunks a call for a batch endpoint and sends its rows concurrently to a single-record one.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from openmart.explain import shapley
from openmart.values import plain

#: records (feature columns, categorical as text) -> the output to explain, one number per record
ScoringFunction = Callable[[pd.DataFrame], np.ndarray]


class CountingScorer:
    """Counts calls and rows; splits a batch only above ``max_batch_rows``."""

    def __init__(self, fn: ScoringFunction, max_batch_rows: int = 100_000) -> None:
        self.fn = fn
        self.max_batch_rows = max_batch_rows
        self.calls = 0
        self.rows = 0

    def __call__(self, frame: pd.DataFrame) -> np.ndarray:
        out = []
        for start in range(0, len(frame), self.max_batch_rows):
            part = frame.iloc[start : start + self.max_batch_rows]
            self.calls += 1
            self.rows += len(part)
            out.append(np.asarray(self.fn(part), dtype=float))
        return np.concatenate(out) if out else np.zeros(0)


class Codec:
    """Categorical features as integer codes for the numeric explainers, decoded back to text
    before anything reaches the model."""

    def __init__(
        self,
        features: Sequence[str],
        categorical: Sequence[str],
        background: pd.DataFrame,
        record: pd.Series | None = None,
    ) -> None:
        self.features = list(features)
        self.categorical = [f for f in features if f in set(categorical)]
        self.levels: dict[str, list[str]] = {}
        for f in self.categorical:
            values = [str(v) for v in background[f].dropna().unique()]
            if record is not None and str(record[f]) not in values:
                values.append(str(record[f]))
            self.levels[f] = sorted(values)

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        out = np.empty((len(frame), len(self.features)), dtype=float)
        for j, f in enumerate(self.features):
            if f in self.levels:
                index = {v: i for i, v in enumerate(self.levels[f])}
                out[:, j] = [index.get(str(v), 0) for v in frame[f]]
            else:
                out[:, j] = pd.to_numeric(frame[f]).to_numpy(dtype=float)
        return out

    def decode(self, matrix: np.ndarray) -> pd.DataFrame:
        frame = pd.DataFrame(matrix, columns=self.features)
        for f, levels in self.levels.items():
            codes = np.clip(np.rint(frame[f].to_numpy()).astype(int), 0, len(levels) - 1)
            frame[f] = np.asarray(levels, dtype=object)[codes]
        return frame


@dataclass
class Explanation:
    method: str
    attributions: dict[str, float]
    base_value: float
    output_value: float
    scoring_calls: int
    scored_rows: int
    elapsed_ms: float
    extra: dict[str, Any] = field(default_factory=dict)

    def ranked(self) -> list[tuple[str, float]]:
        return sorted(self.attributions.items(), key=lambda kv: abs(kv[1]), reverse=True)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def explain_shap(
    record: pd.Series,
    background: pd.DataFrame,
    score: ScoringFunction,
    *,
    features: Sequence[str],
    categorical: Sequence[str] = (),
    link: str = "identity",
    tolerance: float = shapley.DEFAULT_TOLERANCE,
    nsamples: int | None = None,
    max_draws: int = shapley.DEFAULT_MAX_DRAWS,
    known_output: float | None = None,
    seed: int = 0,
) -> Explanation:
    """Interventional SHAP values with ``background`` as the reference distribution, in the
    ``link``'s space (identity: the output itself; logit: its log-odds), exact for few features,
    else sampled until the largest standard error is at most ``tolerance`` times the largest
    attribution (``nsamples``: a fixed number of draws instead). Attributions add up to
    ``output_value - base_value``; ``extra`` holds each one's standard error and how they were
    computed (:mod:`openmart.explain.shapley`)."""
    started = time.perf_counter()
    scorer = CountingScorer(score)
    est = shapley.estimate(
        record,
        background,
        scorer,
        features=features,
        categorical=categorical,
        link=link,
        tolerance=tolerance,
        draws=nsamples,
        max_draws=max_draws,
        known_output=known_output,
        seed=seed,
    )
    return Explanation(
        "shap",
        {f_: float(v) for f_, v in zip(features, est.values, strict=True)},
        est.base_value,
        est.output_value,
        scorer.calls,
        scorer.rows,
        (time.perf_counter() - started) * 1000,
        est.details(features),
    )


def explain_lime(
    record: pd.Series,
    background: pd.DataFrame,
    score: ScoringFunction,
    *,
    features: Sequence[str],
    categorical: Sequence[str] = (),
    num_samples: int = 5000,
    seed: int = 0,
) -> Explanation:
    """LIME (lime's tabular explainer, OpenScale's ~5,000 perturbations) in one scoring call."""
    from lime.lime_tabular import LimeTabularExplainer

    started = time.perf_counter()
    scorer = CountingScorer(score)
    codec = Codec(features, categorical, background, record)
    train = codec.encode(background)
    cat_idx = [features.index(f) for f in codec.categorical]

    def predict(matrix: np.ndarray) -> np.ndarray:
        p = np.clip(scorer(codec.decode(matrix)), 0, 1)
        return np.column_stack([1 - p, p])

    explainer = LimeTabularExplainer(
        train,
        feature_names=list(features),
        categorical_features=cat_idx,
        mode="classification",
        discretize_continuous=False,
        random_state=seed,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exp = explainer.explain_instance(
            codec.encode(record.to_frame().T)[0],
            predict,
            num_features=len(features),
            num_samples=num_samples,
            labels=(1,),
        )
    weights = {features[i]: float(w) for i, w in exp.local_exp[1]}
    return Explanation(
        "lime",
        {f: weights.get(f, 0.0) for f in features},
        float(exp.intercept[1]),
        float(exp.local_pred[0]) if exp.local_pred is not None else float("nan"),
        scorer.calls,
        scorer.rows,
        (time.perf_counter() - started) * 1000,
        {"score": float(exp.score)},
    )


# -- contrastive ------------------------------------------------------------------------------------


@dataclass
class ReferenceStats:
    """What the contrastive search needs from the reference data, computed once."""

    numeric: dict[str, dict[str, Any]]  # median, std, min, max, quantiles
    categorical: dict[str, dict[str, Any]]  # values, mode

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, features: Sequence[str], categorical: Sequence[str]) -> ReferenceStats:
        cats = set(categorical)
        numeric, categ = {}, {}
        for f in features:
            col = frame[f].dropna()
            if f in cats:
                counts = col.astype(str).value_counts()
                categ[f] = {"values": counts.index.tolist()[:50], "mode": str(counts.index[0]) if len(counts) else None}
            else:
                v = pd.to_numeric(col).to_numpy(dtype=float)
                numeric[f] = {
                    "median": float(np.median(v)),
                    "std": float(v.std() or 1.0),
                    "min": float(v.min()),
                    "max": float(v.max()),
                    "quantiles": np.quantile(v, np.linspace(0.05, 0.95, 10)).tolist(),
                }
        return cls(numeric, categ)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ReferenceStats:
        return cls(dict(d["numeric"]), dict(d["categorical"]))


@dataclass
class Contrastive:
    found: bool
    changes: dict[str, dict[str, Any]]
    new_output: float | None
    distance: float | None
    keep: list[str]
    scoring_calls: int
    candidates: int
    record_output: float | None = None  # the record's own output, scored in the same batch

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def contrastive(
    record: pd.Series,
    stats: ReferenceStats,
    score: ScoringFunction,
    *,
    features: Sequence[str],
    threshold: float = 0.5,
    budget: int = 2000,
    pair_features: Sequence[str] | None = None,
) -> Contrastive:
    """The pertinent negative (the smallest move, within the reference's ranges, that carries the
    output across ``threshold``) and the pertinent positive (the features that must keep their
    values: moving any one of them to the reference median/mode alone flips the outcome).
    Every candidate is scored in one call."""
    scorer = CountingScorer(score)
    base = record[list(features)]
    moves: list[tuple[dict[str, Any], float]] = []

    def options(f: str) -> list[tuple[Any, float]]:
        if f in stats.numeric:
            s = stats.numeric[f]
            return [
                (q, abs(q - float(base[f])) / s["std"])
                for q in s["quantiles"] + [s["min"], s["max"]]
                if q != float(base[f])
            ]
        values = stats.categorical.get(f, {}).get("values", [])
        return [(v, 1.0) for v in values if str(v) != str(base[f])]

    for f in features:
        moves += [({f: v}, d) for v, d in options(f)]
    pairs = list(pair_features or features[:6])
    for i, a in enumerate(pairs):
        for b in pairs[i + 1 :]:
            for va, da in options(a)[::3]:
                for vb, db in options(b)[::3]:
                    moves.append(({a: va, b: vb}, da + db))
    moves.sort(key=lambda m: m[1])
    moves = moves[: max(budget - len(features) - 1, 0)]
    keep_moves = []
    for f in features:  # pertinent positive: one feature at a time to the reference centre
        centre = stats.numeric[f]["median"] if f in stats.numeric else stats.categorical.get(f, {}).get("mode")
        keep_moves.append({f: centre})
    rows = (
        [base.to_dict()] + [{**base.to_dict(), **m} for m, _ in moves] + [{**base.to_dict(), **m} for m in keep_moves]
    )
    out = scorer(pd.DataFrame(rows, columns=list(features)))
    original = out[0] >= threshold
    flips = (out[1 : 1 + len(moves)] >= threshold) != original
    keep = [f for f, o in zip(features, out[1 + len(moves) :], strict=True) if (o >= threshold) != original]
    if not flips.any():
        return Contrastive(False, {}, None, None, keep, scorer.calls, len(moves), float(out[0]))
    k = int(np.argmax(flips))  # moves are sorted by distance: the first flip is the smallest
    move, distance = moves[k]
    changes = {f: {"from": plain(base[f]), "to": plain(v)} for f, v in move.items()}
    return Contrastive(True, changes, float(out[1 + k]), float(distance), keep, scorer.calls, len(moves), float(out[0]))


# -- global view -------------------------------------------------------------------------------------


def global_importance(explanations: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Mean absolute attribution per feature."""
    frame = pd.DataFrame(list(explanations)).abs()
    return frame.mean().to_dict() if len(frame) else {}


def ndcg(reference: Mapping[str, float], current: Mapping[str, float], k: int | None = None) -> float:
    """How well the current ranking of features keeps the reference's (SageMaker Clarify's
    feature-attribution drift): DCG of the current order with the reference's importances as
    relevance, over the ideal DCG. 1 means the same order."""
    features = list(reference)
    k = k or len(features)
    ideal = sorted(features, key=lambda f: reference[f], reverse=True)[:k]
    order = sorted(features, key=lambda f: current.get(f, 0.0), reverse=True)[:k]

    def dcg(ranked: Sequence[str]) -> float:
        return sum(reference[f] / np.log2(i + 2) for i, f in enumerate(ranked))

    best = dcg(ideal)
    return float(dcg(order) / best) if best > 0 else 1.0
