"""The provider protocol: what every adapter (SageMaker, Algorithmia-like, custom HTTP) offers.

The core knows nothing of any one provider. An adapter is a class registered under the
entry-point group ``openmart.providers``; the registry builds it from a binding's settings.
Adapters map their vendor errors into :mod:`openmart.errors` at their boundary
(``raise ProviderError(...) from exc``) so callers handle one exception tree.

Each adapter declares what it can do in ``capabilities`` (a class attribute, readable without
connecting): every adapter scores, lists and describes; one that can read the traffic its
platform captured itself also declares :attr:`Capability.INGEST_CAPTURE` and implements
:class:`CaptureSource`, and one that reads ground truth kept on the platform declares
:attr:`Capability.INGEST_GROUND_TRUTH` and implements :class:`GroundTruthSource`. The adapter
reads and decodes its platform's files; the core writes the records into the mart (see
:mod:`openmart.capture`), skipping scoring ids stored already.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, NamedTuple, Protocol, runtime_checkable

import pandas as pd

from openmart.mart.records import record_ids  # noqa: F401 - providers build ids by the one rule
from openmart.values import plain


class Capability(StrEnum):
    """What a provider can do for a binding."""

    SCORE = "score"
    LIST = "list"
    DESCRIBE = "describe"
    INGEST_CAPTURE = "ingest_capture"
    INGEST_GROUND_TRUTH = "ingest_ground_truth"

    @property
    def label(self) -> str:
        """As a message says it: ``ingest capture``."""
        return self.value.replace("_", " ")


#: what every provider offers (the protocol's required methods); a plug-in written before
#: capabilities were declared is taken to offer these
BASIC_CAPABILITIES: frozenset[Capability] = frozenset({Capability.SCORE, Capability.LIST, Capability.DESCRIBE})


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


class LineError(NamedTuple):
    """A line of a platform's file that could not be read: where it is and why."""

    source: str  #: the file (a URI the user can open)
    line: int  #: 1-based; 0 when the error concerns no one line
    reason: str


@dataclass
class CaptureBatch:
    """Payload records a platform captured, decoded by its provider (one batch per file,
    typically). Row ``i`` is one scored record: its ``scoring_ids[i]`` (the platform's own id,
    ``<id>-n`` for the rows of a multi-row event, see :func:`record_ids`), ``timestamps[i]``
    (ISO text or datetime; None: unknown), ``values[i]`` its inputs (a list in the
    subscription's feature order, or a mapping by feature name, as OpenScale's fields/values
    or records), ``predictions[i]`` and ``probabilities[i]`` (None where the model gave none),
    and ``origins[i]``: the (file, line) it came from, so the core can name it in an error.
    ``errors`` holds the lines that could not be decoded; ``files`` and ``events`` count what
    was read."""

    scoring_ids: list[str] = field(default_factory=list)
    timestamps: list[Any] = field(default_factory=list)
    values: list[Sequence[Any] | Mapping[str, Any]] = field(default_factory=list)
    predictions: list[Any] = field(default_factory=list)
    probabilities: list[Any] = field(default_factory=list)
    origins: list[tuple[str, int]] = field(default_factory=list)
    errors: list[LineError] = field(default_factory=list)
    files: int = 0
    events: int = 0

    def add(
        self,
        origin: tuple[str, int],
        scoring_ids: Sequence[str],
        timestamp: Any,
        values: Sequence[Sequence[Any] | Mapping[str, Any]],
        predictions: Sequence[Any],
        probabilities: Sequence[Any] | None,
    ) -> None:
        """Add one decoded event's rows."""
        n = len(values)
        if len(scoring_ids) != n or len(predictions) != n or (probabilities is not None and len(probabilities) != n):
            raise ValueError(f"{n} input rows, {len(scoring_ids)} ids and {len(predictions)} predictions")
        self.scoring_ids += scoring_ids
        self.timestamps += [timestamp] * n
        self.values += values
        self.predictions += predictions
        self.probabilities += probabilities if probabilities is not None else [None] * n
        self.origins += [origin] * n
        self.events += 1


@dataclass
class GroundTruthBatch:
    """Labels a platform keeps for records it captured (ground truth), decoded by its provider:
    ``labels[i]`` for the payload record ``scoring_ids[i]``, read at ``origins[i]``; ``errors``,
    ``files`` and ``events`` as in :class:`CaptureBatch`."""

    scoring_ids: list[str] = field(default_factory=list)
    labels: list[Any] = field(default_factory=list)
    origins: list[tuple[str, int]] = field(default_factory=list)
    errors: list[LineError] = field(default_factory=list)
    files: int = 0
    events: int = 0


@runtime_checkable
class Provider(Protocol):
    """An adapter bound to one binding's settings. Beyond these methods, an adapter offers
    those of :class:`CaptureSource` / :class:`GroundTruthSource` when it declares the matching
    capability."""

    kind: ClassVar[str]
    #: settings keys the adapter understands, with a one-line description each (for ``--help``)
    settings_help: ClassVar[Mapping[str, str]]
    #: what it can do; always includes :data:`BASIC_CAPABILITIES`
    capabilities: ClassVar[frozenset[Capability]]

    def list_deployments(self) -> list[Deployment]: ...

    def describe(self, deployment_id: str) -> Deployment: ...

    def score(self, deployment_id: str, records: pd.DataFrame) -> ScoreResult: ...

    def close(self) -> None: ...


@runtime_checkable
class CaptureSource(Protocol):
    """A provider declaring :attr:`Capability.INGEST_CAPTURE`: reads the traffic its platform
    captured for a deployment (``source``: where, when not where the deployment says;
    ``since``/``until``: only events in that window) and decodes it, never writing anything.
    A line it cannot decode goes into the batch's ``errors``, never stops the others."""

    def capture_records(
        self,
        deployment_id: str,
        *,
        source: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Iterator[CaptureBatch]: ...


@runtime_checkable
class GroundTruthSource(Protocol):
    """A provider declaring :attr:`Capability.INGEST_GROUND_TRUTH`: reads the labels kept on
    its platform for a deployment's records, by their scoring ids."""

    def ground_truth_records(
        self,
        deployment_id: str,
        *,
        source: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Iterator[GroundTruthBatch]: ...


class ProviderFactory(Protocol):
    """What an entry point of ``openmart.providers`` must load: usually the adapter class."""

    kind: ClassVar[str]
    settings_help: ClassVar[Mapping[str, str]]
    #: what its adapters can do, known without connecting (``openmart bind`` and the capture
    #: commands read it); a plug-in that declares none is taken to offer BASIC_CAPABILITIES
    capabilities: ClassVar[frozenset[Capability]]
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
    return [{k: plain(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]
