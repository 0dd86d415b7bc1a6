"""One exception tree: every user-facing failure of openmart is an ``OpenmartError``."""

from __future__ import annotations


class OpenmartError(Exception):
    """Base of every error openmart raises on purpose."""


class ConfigError(OpenmartError):
    """A setting is missing or malformed."""


class MartError(OpenmartError):
    """The data mart cannot be reached or is in an unexpected state."""


class MartUnavailable(MartError):
    """The database did not answer (connection refused, server gone)."""


class NotFound(OpenmartError):
    """A named object (binding, subscription, record, monitor) does not exist."""


class AlreadyExists(OpenmartError):
    """A named object with this name exists already."""


class ValidationError(OpenmartError):
    """Input was refused; the message names the record, the field and the value."""

    def __init__(
        self, message: str, *, row: int | None = None, column: str | None = None, value: object = None
    ) -> None:
        super().__init__(message)
        self.row = row
        self.column = column
        self.value = value


class RecordsRefused(ValidationError):
    """Some scored records did not fit the schema: the others were kept, these were set aside.
    ``scored`` holds every scored record, ``refused`` one ``{"scoring_id", "reason"}`` each."""

    def __init__(self, message: str, *, scored: object, refused: list[dict[str, str]], counts: dict[str, int]) -> None:
        super().__init__(message)
        self.scored = scored
        self.refused = refused
        self.counts = counts


class IdentifierError(ValidationError):
    """A name that would reach SQL is not acceptable."""


class SecretError(OpenmartError):
    """A credential reference cannot be resolved, or a secret was given in clear."""


class ProviderError(OpenmartError):
    """Base of the errors raised by provider adapters (mapped at their boundary)."""


class ProviderNotInstalled(ProviderError):
    """No adapter of this kind is installed."""


class CapabilityMissing(ProviderError):
    """The binding's provider does not offer this (e.g. capture ingest); the message names the
    provider and what it does offer."""


class ProviderConnectionError(ProviderError):
    """The deployment could not be reached (connection refused, DNS)."""


class ProviderTimeout(ProviderError):
    """The deployment did not answer in time."""


class ProviderHTTPError(ProviderError):
    """The deployment answered with an error status; ``status`` and the server's message kept."""

    def __init__(
        self, message: str, *, status: int | None = None, body: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = body
        #: seconds the server asked us to wait (its Retry-After header), when it said
        self.retry_after = retry_after

    @property
    def transient(self) -> bool:
        """Whether asking again may get another answer: server errors (not 501/505, which will
        not change), 429 Too Many Requests and 408 Request Timeout."""
        if self.status is None:
            return False
        return self.status in (408, 429) or (self.status >= 500 and self.status not in (501, 505))


class ProviderResponseError(ProviderError):
    """The deployment's answer could not be decoded (names the missing path)."""


class ProviderThrottled(ProviderError):
    """The platform asked us to slow down (retried with backoff before surfacing)."""


class MonitorError(OpenmartError):
    """A monitor is misconfigured or cannot run."""


class EvaluationFailed(OpenmartError):
    """An evaluation failed and was recorded so (``evaluations.status = 'failed'``, with the
    error); nothing of its results was stored. ``__cause__`` is the original exception."""

    def __init__(self, message: str, *, evaluation_id: int | None = None, error_type: str | None = None) -> None:
        super().__init__(message)
        self.evaluation_id = evaluation_id
        self.error_type = error_type


class EvaluationBusy(OpenmartError):
    """Another evaluation of the same subscription is running (and the caller chose not to wait)."""


class ExplanationError(OpenmartError):
    """An explanation could not be computed."""
