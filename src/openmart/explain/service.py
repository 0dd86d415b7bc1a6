"""Explaining a subscription's payload records through its binding, and keeping the results in
the mart's ``explanations`` table (read back without recomputation)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from openmart.context import HasContext, SubscriptionContext, context_of
from openmart.errors import ExplanationError, NotFound
from openmart.explain import shapley
from openmart.explain.engine import (
    Explanation,
    ReferenceStats,
    ScoringFunction,
    contrastive,
    explain_lime,
    explain_shap,
)
from openmart.mart import explanations, record_store
from openmart.mart.records import RecordKind
from openmart.schema import ProblemType

if TYPE_CHECKING:
    from openmart.providers.base import Provider

METHODS = ("shap", "lime")
LINKS = shapley.LINKS
#: rows drawn uniformly at random from THE reference; the exact SHAP values are those against
#: this sample (its per-feature means are exact), and its size adds rows only once per explanation
BACKGROUND_ROWS = 100


@dataclass
class StoredExplanation:
    scoring_id: str
    method: str
    prediction: str | None
    attributions: dict[str, float]
    base_value: float | None
    contrastive: dict[str, Any] | None
    elapsed_ms: float | None
    scoring_calls: int | None
    link: str | None = "identity"
    #: how the attributions were computed and their standard errors (shap; None for lime)
    estimate: dict[str, Any] | None = None
    cached: bool = False

    def ranked(self) -> list[tuple[str, float]]:
        return sorted(self.attributions.items(), key=lambda kv: abs(kv[1]), reverse=True)

    def to_dict(self) -> dict[str, Any]:
        return {
            "scoring_id": self.scoring_id,
            "method": self.method,
            "prediction": self.prediction,
            "base_value": self.base_value,
            "attributions": dict(self.ranked()),
            "contrastive": self.contrastive,
            "elapsed_ms": self.elapsed_ms,
            "scoring_calls": self.scoring_calls,
            "link": self.link,
            "estimate": self.estimate,
            "cached": self.cached,
        }


class RequestCounter:
    """Counts the requests actually sent to the deployment (a provider's ScoreResult.requests)."""

    def __init__(self) -> None:
        self.requests = 0


def output_function(
    sub: SubscriptionContext, provider: Provider, predicted: Any, counter: RequestCounter | None = None
) -> ScoringFunction:
    """What is explained: the probability of the predicted class (binary, multiclass), the
    prediction itself (regression), or 1/0 for 'still the predicted class' when the model gives
    no probabilities."""
    s = sub.schema
    labels = [str(c) for c in (s.class_labels or [])]

    def f(frame: pd.DataFrame) -> np.ndarray:
        result = provider.score(sub.deployment_id or "", frame.loc[:, s.feature_names])
        if counter is not None:
            counter.requests += result.requests
        if s.problem_type is ProblemType.REGRESSION:
            return np.asarray(result.predictions, dtype=float)
        if result.probabilities is None:
            return np.array([float(str(p) == str(predicted)) for p in result.predictions])
        probs = result.probabilities
        if s.problem_type is ProblemType.BINARY:
            p = np.array([q[-1] if isinstance(q, list | tuple) else q for q in probs], dtype=float)
            return p if labels and str(predicted) == labels[-1] else 1 - p
        k = labels.index(str(predicted)) if str(predicted) in labels else 0
        return np.array([q[k] for q in probs], dtype=float)

    return f


class _RecordCache:
    """Serves the record's own score from the contrastive batch, saving SHAP a request."""

    def __init__(self, fn: ScoringFunction, record: pd.DataFrame, value: float) -> None:
        self.fn, self.record, self.value = fn, record.reset_index(drop=True), value

    def __call__(self, frame: pd.DataFrame) -> np.ndarray:
        if len(frame) == 1 and frame.reset_index(drop=True).astype(str).equals(self.record.astype(str)):
            return np.array([self.value])
        return self.fn(frame)


def _typed(sub: SubscriptionContext, frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.loc[:, sub.schema.feature_names].copy()
    for f in sub.schema.numeric_features:
        frame[f] = pd.to_numeric(frame[f])
    return frame


def _reference(sub: SubscriptionContext, limit: int | None = None) -> pd.DataFrame:
    with sub.engine.connect() as conn:
        return _typed(sub, record_store.read(conn, sub.record, RecordKind.REFERENCE, limit=limit))


def reference_stats(subscription: SubscriptionContext | HasContext) -> ReferenceStats:
    sub = context_of(subscription)
    ref = _reference(sub)
    if ref.empty:
        raise ExplanationError(f"subscription {sub.name!r} has no reference data to explain against")
    return ReferenceStats.from_frame(ref, sub.schema.feature_names, sub.schema.categorical_features)


def background(
    subscription: SubscriptionContext | HasContext, rows: int = BACKGROUND_ROWS, seed: int = 0
) -> pd.DataFrame:
    """A uniform random sample of ``rows`` records of THE reference (all of it when smaller):
    the distribution features are taken from when they are "absent" from a coalition."""
    sub = context_of(subscription)
    ref = _reference(sub)
    if ref.empty:
        raise ExplanationError(f"subscription {sub.name!r} has no reference data to explain against")
    if len(ref) <= rows:
        return ref.reset_index(drop=True)
    return ref.sample(n=rows, random_state=seed).reset_index(drop=True)


def stored(
    subscription: SubscriptionContext | HasContext, scoring_id: str, method: str, link: str = "identity"
) -> StoredExplanation | None:
    sub = context_of(subscription)
    with sub.engine.connect() as conn:
        row = explanations.latest(conn, sub.id, scoring_id, method, link)
    if row is None:
        return None
    row["link"] = row["link"] or "identity"
    return StoredExplanation(**row, cached=True)


def explain(
    subscription: SubscriptionContext | HasContext,
    scoring_id: str,
    *,
    method: str = "shap",
    refresh: bool = False,
    provider: Provider | None = None,
    stats: ReferenceStats | None = None,
    bg: pd.DataFrame | None = None,
    link: str = "identity",
    tolerance: float = shapley.DEFAULT_TOLERANCE,
    background_size: int = BACKGROUND_ROWS,
) -> StoredExplanation:
    """Explain one payload record (SHAP or LIME, and the contrastive answer) and keep it; a
    stored one of the same method and link is read back unless ``refresh``. ``link``: SHAP's
    space, ``identity`` (the explained output: a probability, or a regression's prediction) or
    ``logit`` (the probability's log-odds, where a model linear in log-odds has exact values);
    ``tolerance``: the largest standard error allowed, as a share of the largest attribution;
    ``background_size``: reference rows drawn at random as SHAP's background (``bg`` gives them)."""
    sub = context_of(subscription)
    if method not in METHODS:
        raise ExplanationError(f"explanation method {method!r}: choose shap or lime")
    if link not in LINKS:
        raise ExplanationError(f"link {link!r}: choose identity or logit")
    if method == "lime":
        link = "identity"  # LIME explains the probability itself
    if not (0 < tolerance < 1):
        raise ExplanationError(f"tolerance {tolerance!r}: give a share of the largest attribution, 0 < t < 1")
    if background_size < 1:
        raise ExplanationError(f"background size {background_size!r}: give at least 1 row")
    if link == "logit" and sub.schema.problem_type is ProblemType.REGRESSION:
        raise ExplanationError("link logit explains log-odds of a probability: a regression has none, use identity")
    if not refresh:
        found = stored(sub, scoring_id, method, link)
        if found is not None:
            return found
    s = sub.schema
    with sub.engine.connect() as conn:
        row = record_store.find(conn, sub.payload_table, scoring_id, [*s.feature_names, s.prediction])
    if row is None:
        raise NotFound(f"subscription {sub.name!r} has no payload record with scoring_id {scoring_id!r}")
    record_frame = _typed(sub, pd.DataFrame([row[:-1]], columns=s.feature_names))
    record = record_frame.iloc[0]
    predicted = row[-1]
    if predicted is not None and isinstance(predicted, float) and predicted.is_integer():
        predicted = int(predicted)
    own = provider is None
    provider = provider or sub.provider()
    try:
        counter = RequestCounter()
        fn = output_function(sub, provider, predicted, counter)
        stats = stats or reference_stats(sub)
        threshold = (
            0.5
            if s.problem_type is not ProblemType.REGRESSION
            else float(np.median([v["median"] for v in stats.numeric.values()] or [0]))
        )
        contrast = (
            contrastive(record, stats, fn, features=s.feature_names, threshold=threshold)
            if s.problem_type is not ProblemType.REGRESSION
            else None
        )
        cached_fn = fn if contrast is None else _RecordCache(fn, record_frame, float(contrast.record_output))
        if method == "shap":
            bg = bg if bg is not None else background(sub, background_size)
            exp: Explanation = explain_shap(
                record,
                bg,
                fn,
                features=s.feature_names,
                categorical=s.categorical_features,
                link=link,
                tolerance=tolerance,
                # the record's output came back with the contrastive batch
                known_output=None if contrast is None else contrast.record_output,
            )
        else:
            exp = explain_lime(
                record,
                _reference(sub, limit=5000),
                cached_fn,
                features=s.feature_names,
                categorical=s.categorical_features,
            )
    finally:
        if own:
            provider.close()
    calls = counter.requests
    result = StoredExplanation(
        scoring_id,
        method,
        None if predicted is None else str(predicted),
        exp.attributions,
        exp.base_value,
        contrast.to_dict() if contrast else None,
        exp.elapsed_ms,
        calls,
        link,
        exp.extra if method == "shap" else None,
    )
    with sub.engine.begin() as conn:
        explanations.insert(
            conn,
            sub.id,
            {
                "scoring_id": scoring_id,
                "method": method,
                "prediction": result.prediction,
                "attributions": exp.attributions,
                "base_value": exp.base_value,
                "contrastive": result.contrastive,
                "elapsed_ms": exp.elapsed_ms,
                "scoring_calls": calls,
                "link": link,
                "estimate": result.estimate,
            },
        )
    return result
