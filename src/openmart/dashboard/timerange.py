"""The time range a page shows: a named range back from now (1h, 24h, 7d, 30d, all) or a custom
``start``/``end`` (ISO 8601). Every chart and table of a page reads only this range, so a page
costs the same on a mart with a day of history as on one with years."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

RANGES: dict[str, timedelta | None] = {
    "1h": timedelta(hours=1),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
    "all": None,
}
DEFAULT = "7d"
CUSTOM = "custom"


@dataclass(frozen=True)
class TimeRange:
    key: str  # one of RANGES, or "custom"
    start: datetime | None
    end: datetime | None

    def params(self) -> dict[str, str]:
        """The query parameters that name this range in a link."""
        if self.key != CUSTOM:
            return {"range": self.key}
        return {
            "range": CUSTOM,
            "start": self.start.isoformat() if self.start else "",
            "end": self.end.isoformat() if self.end else "",
        }

    def describe(self) -> str:
        if self.key == "all":
            return "all time"
        if self.key == CUSTOM:
            start = self.start.strftime("%Y-%m-%d %H:%M") if self.start else "the beginning"
            end = self.end.strftime("%Y-%m-%d %H:%M") if self.end else "now"
            return f"{start} to {end} UTC"
        return f"the last {self.key}"


def _parse(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        at = datetime.fromisoformat(value.strip())
    except ValueError:
        return None  # a mistyped date shows the default rather than an error page
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def parse(
    key: str | None, start: str | None = None, end: str | None = None, *, now: datetime | None = None
) -> TimeRange:
    """The range a request names; anything unknown falls back to :data:`DEFAULT`."""
    now = now or datetime.now(UTC)
    custom_start, custom_end = _parse(start), _parse(end)
    if key == CUSTOM or (key is None and (custom_start or custom_end)):
        if custom_start or custom_end:
            return TimeRange(CUSTOM, custom_start, custom_end)
        key = DEFAULT
    if key not in RANGES:
        key = DEFAULT
    span = RANGES[key]
    # end None: open-ended, so a measurement stored while the page is open still falls in range
    return TimeRange(key, None if span is None else now - span, None)
