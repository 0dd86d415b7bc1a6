"""The provider protocol: what every adapter (SageMaker, Algorithmia-like, custom HTTP) offers.

The core knows nothing of any one provider. An adapter is a class registered under the
entry-point group ``openmart.providers``; the registry builds it from a binding's settings.
Adapters map their vendor errors into :mod:`openmart.errors` at their boundary
(``raise ProviderError(...) from exc``) so callers handle one exception tree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import pandas as pd


@dataclass(frozen=True)
class Deployment:
    """Something a binding can score: a SageMaker endpoint, an algorithm version, a URL."""

    id: str
    name: str
    kind: str = "endpoint"
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class ScoreResult:
    """The answer to one batch: one prediction (and probability, when the model gives one) per
    input row, in input order. ``requests`` counts the calls made to the deployment."""

    predictions: list[Any]
    probabilities: list[Any] | None = None
    requests: int = 1
    elapsed_ms: float = 0.0
    #: the ids the platform itself records the rows under (SageMaker's InferenceId), so that
    #: traffic captured there and logged here is the same record
    record_ids: list[str] | None = None

    def __post_init__(self) -> None:
        if self.probabilities is not None and len(self.probabilities) != len(self.predictions):
            raise ValueError("probabilities and predictions differ in length")


@runtime_checkable
class Provider(Protocol):
    """An adapter bound to one binding's settings."""

    kind: ClassVar[str]
    #: settings keys the adapter understands, with a one-line description each (for ``--help``)
    settings_help: ClassVar[Mapping[str, str]]

    def list_deployments(self) -> list[Deployment]: ...

    def describe(self, deployment_id: str) -> Deployment: ...

    def score(self, deployment_id: str, records: pd.DataFrame) -> ScoreResult: ...

    def close(self) -> None: ...


class ProviderFactory(Protocol):
    """What an entry point of ``openmart.providers`` must load: usually the adapter class."""

    kind: ClassVar[str]
    settings_help: ClassVar[Mapping[str, str]]
    #: settings whose whole value is a secret (a token, an API key): the core stores them
    #: encrypted and shows them as ``***``. Credentials inside URL-valued settings (userinfo,
    #: ``?api_key=``) are found by the core itself and need no declaration. The adapter receives
    #: every value in clear, in ``validate_settings`` and ``from_settings`` alike.
    secret_settings: ClassVar[frozenset[str]]

    @classmethod
    def validate_settings(cls, settings: Mapping[str, str]) -> dict[str, str]:
        """Check a binding's settings when it is added; raise ValidationError naming the key."""
        ...

    @classmethod
    def from_settings(cls, settings: Mapping[str, str]) -> Provider: ...


def records_to_rows(records: pd.DataFrame, features: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Plain JSON-ready dicts (NaN -> None, numpy scalars -> Python) for wire encoders."""
    frame = records if features is None else records.loc[:, list(features)]
    frame = frame.astype(object).where(frame.notna(), None)
    return [
        {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()} for row in frame.to_dict(orient="records")
    ]
