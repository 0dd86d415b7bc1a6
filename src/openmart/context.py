"""What the layers below the API get for one subscription: :class:`SubscriptionContext`.

Capture, scoring, replay, the evaluation runner, monitors and explanations work from a frozen
:class:`~openmart.mart.subscriptions.SubscriptionRecord` plus the mart's engine and settings and
a way to reach the deployment. They never import :mod:`openmart.api`; the API builds the context
and hands it down (see docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from sqlalchemy.engine import Engine

from openmart.config import Settings
from openmart.errors import ValidationError
from openmart.mart.subscriptions import SubscriptionRecord
from openmart.schema import SubscriptionSchema

if TYPE_CHECKING:
    from openmart.providers.base import Provider


class RecordFields:
    """The record's fields, read through: ``ctx.schema``, not ``ctx.record.schema``. Shared by
    the context and the API's ``Subscription``, which both carry a ``record``."""

    record: SubscriptionRecord

    @property
    def id(self) -> int:
        return self.record.id

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def schema(self) -> SubscriptionSchema:
        return self.record.schema

    @property
    def binding(self) -> str | None:
        return self.record.binding

    @property
    def deployment_id(self) -> str | None:
        return self.record.deployment_id

    @property
    def asset_revision(self) -> str | None:
        return self.record.asset_revision

    @property
    def payload_table(self) -> str:
        return self.record.payload_table

    @property
    def feedback_table(self) -> str:
        return self.record.feedback_table

    @property
    def reference_table(self) -> str:
        return self.record.reference_table

    @property
    def created_at(self) -> datetime | None:
        return self.record.created_at


@dataclass(frozen=True)
class SubscriptionContext(RecordFields):
    record: SubscriptionRecord
    engine: Engine = field(repr=False)
    settings: Settings = field(repr=False)
    #: builds an adapter for the subscription's binding (secrets opened in memory); None: no binding
    connect_provider: Callable[[], Provider] | None = field(default=None, repr=False, compare=False)

    def provider(self) -> Provider:
        """A new adapter for the binding; the caller closes it."""
        if self.connect_provider is None or not self.binding:
            raise ValidationError(f"subscription {self.name!r} has no binding to score through")
        return self.connect_provider()

    def with_record(self, record: SubscriptionRecord) -> SubscriptionContext:
        return replace(self, record=record)


class HasContext(Protocol):
    """Anything that carries a subscription's context (the API's ``Subscription`` does)."""

    @property
    def context(self) -> SubscriptionContext: ...


def context_of(sub: SubscriptionContext | HasContext) -> SubscriptionContext:
    """The context itself, or the one an API object carries: entry points below the API accept
    either, so ``CaptureProxy(sub)`` and ``CaptureProxy(sub.context)`` are the same."""
    return sub if isinstance(sub, SubscriptionContext) else sub.context
