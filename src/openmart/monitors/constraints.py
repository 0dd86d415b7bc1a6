"""``sub.constraints``: the data-quality baseline in SageMaker Model Monitor's files — the
reference's ``statistics.json``, the ``constraints.json`` suggested from it, loading a user's own
(which enables or updates the data_quality monitor), and an evaluation's
``constraint_violations.json`` built from its stored measurements."""

from __future__ import annotations

from typing import Any

import pandas as pd

from openmart.context import SubscriptionContext
from openmart.errors import NotFound
from openmart.mart import evaluations
from openmart.monitors import dq_baseline
from openmart.monitors.base import context_of
from openmart.monitors.config import MonitorConfig, MonitorKind
from openmart.monitors.dq_formats import violation

KIND = MonitorKind.DATA_QUALITY


class Constraints:
    def __init__(self, ctx: SubscriptionContext | Any) -> None:
        self._ctx = ctx

    @property
    def ctx(self) -> SubscriptionContext:
        return context_of(self._ctx)

    def statistics(self) -> dict[str, Any]:
        """statistics.json of the reference as it is now."""
        ctx = self.ctx
        with ctx.engine.connect() as conn:
            return dq_baseline.statistics(*dq_baseline.profile(ctx, conn))

    def suggest(self) -> dict[str, Any]:
        """constraints.json suggested from the reference as it is now (nothing is stored: enable
        the monitor, or ``load`` these, to keep them)."""
        ctx = self.ctx
        with ctx.engine.connect() as conn:
            return dq_baseline.suggest(*dq_baseline.profile(ctx, conn))

    def baseline(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(statistics.json, constraints.json) of the reference, from one read of it."""
        ctx = self.ctx
        with ctx.engine.connect() as conn:
            profile = dq_baseline.profile(ctx, conn)
        return dq_baseline.statistics(*profile), dq_baseline.suggest(*profile)

    def current(self) -> dict[str, Any]:
        """The constraints the data_quality monitor checks (NotFound when it is not enabled)."""
        from openmart.monitors.store import Monitors

        return dict(Monitors(self.ctx).get(KIND).parameters["constraints"])

    def load(
        self, constraints: dict[str, Any], statistics: dict[str, Any] | None = None, **options: Any
    ) -> MonitorConfig:
        """Check a constraints.json (and statistics.json) and enable the data_quality monitor with
        them (or update it); a bad field is refused by its path, nothing stored."""
        from openmart.monitors.store import Monitors

        return Monitors(self.ctx).enable(KIND, constraints=constraints, statistics=statistics, **options)

    def violations(self, evaluation_id: int | None = None) -> dict[str, Any]:
        """constraint_violations.json of an evaluation (default: the latest that measured data
        quality): one entry per breached check."""
        frame = self._measurements(evaluation_id)
        out = []
        for row in frame.itertuples():
            if not row.breached or row.metric == "violations":
                continue
            details = row.details or {}
            out.append(violation(str(row.feature), str(details.get("check")), str(details.get("description"))))
        return {"violations": out}

    def latest_evaluation(self) -> int:
        """The id of the latest evaluation that measured data quality."""
        ctx = self.ctx
        with ctx.engine.connect() as conn:
            newest = evaluations.measurements_frame(conn, ctx.id, monitor=KIND, limit=1)
        if newest.empty:
            raise NotFound(f"subscription {ctx.name!r}: no evaluation has measured data quality yet")
        return int(newest["evaluation_id"].iloc[0])

    def _measurements(self, evaluation_id: int | None) -> pd.DataFrame:
        ctx = self.ctx
        chosen = self.latest_evaluation() if evaluation_id is None else int(evaluation_id)
        with ctx.engine.connect() as conn:
            frame = evaluations.measurements_frame(conn, ctx.id, monitor=KIND, evaluation_id=chosen)
        if frame.empty:
            raise NotFound(f"subscription {ctx.name!r}: evaluation {chosen} has no data-quality measurements")
        return frame
