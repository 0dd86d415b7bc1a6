"""Charts as SVG strings drawn here, in Python: a time series with thresholds, horizontal bars,
reference-vs-current distributions and a confusion matrix.

Why not a charting library: the dashboard ships offline (nothing fetched from a CDN) and
renders on the server, so a chart must be markup, not a script. A chart here is a few hundred
bytes to a few kilobytes, built in well under a millisecond, visible with JavaScript off and in
screenshots. Axes have ticks and labels, threshold lines are dashed, breached points red, and
every point carries an SVG ``<title>`` (the browser's tooltip). All text is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from openmart.dashboard.html import e, number

PALETTE = ("#2563eb", "#d97706", "#059669", "#7c3aed", "#db2777", "#0891b2", "#65a30d", "#9333ea")
BAD = "#dc2626"
REFERENCE = "#94a3b8"
CURRENT = "#2563eb"
AXIS = "#64748b"
GRID = "#e2e8f0"
FONT = 'font-family="system-ui,sans-serif" font-size="11"'


@dataclass(frozen=True)
class Point:
    at: datetime
    value: float | None
    breached: bool = False
    note: str = ""  # extra tooltip text


@dataclass
class Series:
    name: str
    points: list[Point] = field(default_factory=list)


@dataclass(frozen=True)
class Threshold:
    value: float
    label: str  # "lower limit 0.8"


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high] (1, 2, 2.5, 5 times a power of ten apart)."""
    if not math.isfinite(low) or not math.isfinite(high):
        return []
    if high <= low:
        pad = abs(low) * 0.1 or 1.0
        low, high = low - pad, high + pad
    raw = (high - low) / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.floor(low / step) * step
    ticks, t = [], first
    while t <= high + step * 1e-9:
        ticks.append(round(t, 12))
        t += step
    if ticks[-1] < high:
        ticks.append(round(t, 12))
    return ticks


def _time_label(at: datetime, span: timedelta) -> str:
    if span <= timedelta(seconds=30):  # evaluations run back to back (tests, backfills)
        return at.strftime("%H:%M:%S.%f")[:-3]
    if span <= timedelta(minutes=10):
        return at.strftime("%H:%M:%S")
    if span <= timedelta(days=2):
        return at.strftime("%H:%M")
    if span <= timedelta(days=60):
        return at.strftime("%b %d")
    return at.strftime("%Y-%m")


def _empty(width: int, height: int, message: str) -> str:
    return (
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img">'
        f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" fill="{AXIS}" {FONT}>{e(message)}</text></svg>'
    )


def _legend(items: Sequence[tuple[str, str, str]], x: float, y: float) -> str:
    """Legend entries (label, colour, kind: line/dash/dot/box) in a row from (x, y)."""
    out = []
    for label, colour, kind in items:
        if kind == "dash":
            mark = f'<line x1="{x}" y1="{y}" x2="{x + 16}" y2="{y}" stroke="{colour}" stroke-dasharray="4 3"/>'
        elif kind == "dot":
            mark = f'<circle cx="{x + 8}" cy="{y}" r="4" fill="{colour}"/>'
        elif kind == "box":
            mark = f'<rect x="{x + 2}" y="{y - 5}" width="12" height="10" fill="{colour}"/>'
        else:
            mark = f'<line x1="{x}" y1="{y}" x2="{x + 16}" y2="{y}" stroke="{colour}" stroke-width="2"/>'
        out.append(f'<g class="legend-item">{mark}<text x="{x + 20}" y="{y + 4}" {FONT}>{e(label)}</text></g>')
        x += 28 + 6.5 * len(label)
    return "".join(out)


def time_series(
    series: Sequence[Series],
    *,
    thresholds: Sequence[Threshold] = (),
    y_label: str = "",
    width: int = 560,
    height: int = 220,
    start: datetime | None = None,
    end: datetime | None = None,
) -> str:
    """Lines over time, one per series; dashed threshold lines; breached points red."""
    points = [p for s in series for p in s.points if p.value is not None and math.isfinite(p.value)]
    if not points:
        return _empty(width, height, "no measurements in this range")
    left, right, top, bottom = 56, 12, 26, 34
    pw, ph = width - left - right, height - top - bottom
    # the axis spans the points, not the page's whole range: a week's axis with a morning's points
    # would squeeze them into one pixel column. ``start``/``end`` only clip.
    times = [p.at for p in points if (start is None or p.at >= start) and (end is None or p.at < end)] or [
        p.at for p in points
    ]
    t0, t1 = min(times), max(times)
    if t1 <= t0:
        t0, t1 = t0 - timedelta(minutes=30), t1 + timedelta(minutes=30)
    pad = (t1 - t0) * 0.03  # room for the first and last points' markers
    t0, t1 = t0 - pad, t1 + pad
    values = [p.value for p in points if p.value is not None] + [t.value for t in thresholds]
    low, high = min(values), max(values)
    ticks = nice_ticks(low, high + (high - low) * 0.05)
    y0, y1 = (ticks[0], ticks[-1]) if ticks else (min(values), max(values) + 1)
    span = (t1 - t0).total_seconds()

    def x(at: datetime) -> float:
        return round(left + pw * (at - t0).total_seconds() / span, 1)

    def y(v: float) -> float:
        return round(top + ph * (1 - (v - y0) / ((y1 - y0) or 1)), 1)

    out = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img">']
    for t in ticks:
        out.append(
            f'<line x1="{left}" y1="{y(t)}" x2="{left + pw}" y2="{y(t)}" stroke="{GRID}"/>'
            f'<text x="{left - 6}" y="{y(t) + 4}" text-anchor="end" fill="{AXIS}" {FONT}>{e(number(t, 3))}</text>'
        )
    for i in range(5):
        at = t0 + (t1 - t0) * (i / 4)
        anchor = "start" if i == 0 else "end" if i == 4 else "middle"
        out.append(
            f'<line x1="{x(at)}" y1="{top + ph}" x2="{x(at)}" y2="{top + ph + 4}" stroke="{AXIS}"/>'
            f'<text x="{x(at)}" y="{top + ph + 16}" text-anchor="{anchor}" fill="{AXIS}" {FONT}>'
            f"{e(_time_label(at, t1 - t0))}</text>"
        )
    out.append(
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + ph}" stroke="{AXIS}"/>'
        f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" stroke="{AXIS}"/>'
    )
    if y_label:
        out.append(
            f'<text x="12" y="{top + ph / 2}" text-anchor="middle" fill="{AXIS}" {FONT} '
            f'transform="rotate(-90 12 {top + ph / 2})">{e(y_label)}</text>'
        )
    for t in thresholds:
        out.append(
            f'<line class="threshold" x1="{left}" y1="{y(t.value)}" x2="{left + pw}" y2="{y(t.value)}" '
            f'stroke="{BAD}" stroke-dasharray="6 4"><title>{e(t.label)}</title></line>'
        )
    legend: list[tuple[str, str, str]] = []
    for i, s in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        drawn = [p for p in s.points if p.value is not None and math.isfinite(p.value)]
        if not drawn:
            continue
        legend.append((s.name, colour, "line"))
        path = " ".join(f"{'M' if j == 0 else 'L'}{x(p.at)},{y(p.value)}" for j, p in enumerate(drawn))  # type: ignore[arg-type]
        out.append(f'<path d="{path}" fill="none" stroke="{colour}" stroke-width="1.6"/>')
        for p in drawn:
            tip = f"{s.name}: {number(p.value)} at {p.at:%Y-%m-%d %H:%M:%S}{' — breached' if p.breached else ''}"
            tip += f" {p.note}" if p.note else ""
            fill, r = (BAD, 4) if p.breached else (colour, 2.5)
            out.append(
                f'<circle class="{"point breached" if p.breached else "point"}" cx="{x(p.at)}" cy="{y(p.value)}" '  # type: ignore[arg-type]
                f'r="{r}" fill="{fill}"><title>{e(tip)}</title></circle>'
            )
    if thresholds:
        legend.append(("threshold", BAD, "dash"))
    if any(p.breached for p in points):
        legend.append(("breached", BAD, "dot"))
    out.append(_legend(legend, left, 12))
    out.append("</svg>")
    return "".join(out)


def bars(
    labels: Sequence[str],
    values: Sequence[float | None],
    *,
    width: int = 360,
    row: int = 16,
    highlight: int | None = None,
) -> str:
    """Horizontal bars around zero (attributions: positive right, negative left)."""
    if not labels:
        return _empty(width, 40, "nothing to draw")
    label_w, pad = 120, 8
    height = row * len(labels) + 2 * pad
    finite = [abs(v) for v in values if v is not None and math.isfinite(v)]
    scale = max(finite) if finite and max(finite) > 0 else 1.0
    negative = any(v is not None and v < 0 for v in values)
    plot_w = width - label_w - 50
    zero = label_w + (plot_w / 2 if negative else 0)
    half = plot_w / 2 if negative else plot_w
    out = [f'<svg class="chart bars" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img">']
    out.append(f'<line x1="{zero}" y1="{pad - 2}" x2="{zero}" y2="{height - pad + 2}" stroke="{AXIS}"/>')
    for i, (label, v) in enumerate(zip(labels, values, strict=True)):
        cy = pad + i * row
        short = label if len(label) <= 18 else label[:17] + "…"
        out.append(
            f'<text x="{label_w - 6}" y="{cy + row * 0.7}" text-anchor="end" {FONT}>{e(short)}'
            f"<title>{e(label)}</title></text>"
        )
        if v is None or not math.isfinite(v):
            continue
        w = round(half * abs(v) / scale, 1)
        x0 = zero if v >= 0 else zero - w
        colour = BAD if highlight == i else (CURRENT if v >= 0 else "#f97316")
        out.append(
            f'<rect x="{x0}" y="{cy + 2}" width="{max(w, 0.5)}" height="{row - 4}" fill="{colour}">'
            f"<title>{e(label)}: {e(number(v))}</title></rect>"
            f'<text x="{zero + half + 4 if negative else label_w + plot_w + 4}" y="{cy + row * 0.7}" fill="{AXIS}" '
            f"{FONT}>{e(number(v, 3))}</text>"
        )
    out.append("</svg>")
    return "".join(out)


def distribution(
    labels: Sequence[str], reference: Sequence[float], current: Sequence[float], *, width: int = 560, height: int = 240
) -> str:
    """Reference vs current shares side by side per bucket or category (shares in [0, 1])."""
    if not labels:
        return _empty(width, height, "no distribution stored for this feature")
    left, right, top, bottom = 48, 12, 26, 58
    pw, ph = width - left - right, height - top - bottom
    top_value = max([*reference, *current, 0.0]) or 1.0
    ticks = nice_ticks(0.0, top_value, 4)
    y1 = ticks[-1] if ticks else top_value

    def y(v: float) -> float:
        return round(top + ph * (1 - v / y1), 1)

    out = [
        f'<svg class="chart distribution" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img">'
    ]
    for t in ticks:
        out.append(
            f'<line x1="{left}" y1="{y(t)}" x2="{left + pw}" y2="{y(t)}" stroke="{GRID}"/>'
            f'<text x="{left - 6}" y="{y(t) + 4}" text-anchor="end" fill="{AXIS}" {FONT}>{t * 100:g}%</text>'
        )
    slot = pw / len(labels)
    bar = max(min(slot * 0.4, 28), 1.0)
    for i, label in enumerate(labels):
        x = left + i * slot + slot / 2
        for offset, share, colour, name in (
            (-bar, reference[i], REFERENCE, "reference"),
            (0, current[i], CURRENT, "current"),
        ):
            out.append(
                f'<rect x="{round(x + offset, 1)}" y="{y(share)}" width="{round(bar, 1)}" '
                f'height="{round(top + ph - y(share), 1)}" '
                f'fill="{colour}"><title>{e(label)} — {name}: {share * 100:.1f}%</title></rect>'
            )
        if len(labels) <= 24 or i % math.ceil(len(labels) / 24) == 0:
            short = label if len(label) <= 12 else label[:11] + "…"
            out.append(
                f'<text x="{round(x, 1)}" y="{top + ph + 12}" text-anchor="end" fill="{AXIS}" {FONT} '
                f'transform="rotate(-35 {round(x, 1)} {top + ph + 12})">{e(short)}<title>{e(label)}</title></text>'
            )
    out.append(
        f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" stroke="{AXIS}"/>'
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + ph}" stroke="{AXIS}"/>'
    )
    out.append(_legend((("reference", REFERENCE, "box"), ("current", CURRENT, "box")), left, 12))
    out.append("</svg>")
    return "".join(out)


def matrix(labels: Sequence[str], cells: Sequence[Sequence[float]], *, size: int = 44) -> str:
    """A confusion matrix: rows are the truth, columns the prediction; darker is more."""
    n = len(labels)
    if not n:
        return _empty(240, 60, "no confusion matrix")
    left, top = 90, 40
    width, height = left + n * size + 10, top + n * size + 10
    peak = max((v for r in cells for v in r), default=0) or 1
    out = [f'<svg class="chart matrix" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img">']
    out.append(f'<text x="{left + n * size / 2}" y="12" text-anchor="middle" fill="{AXIS}" {FONT}>predicted</text>')
    out.append(
        f'<text x="10" y="{top + n * size / 2}" text-anchor="middle" fill="{AXIS}" {FONT} '
        f'transform="rotate(-90 10 {top + n * size / 2})">actual</text>'
    )
    for j, label in enumerate(labels):
        out.append(
            f'<text x="{left + j * size + size / 2}" y="{top - 6}" text-anchor="middle" {FONT}>{e(label[:8])}</text>'
            f'<text x="{left - 6}" y="{top + j * size + size / 2 + 4}" text-anchor="end" {FONT}>{e(label[:12])}</text>'
        )
    for i, r in enumerate(cells):
        for j, v in enumerate(r):
            shade = 0.08 + 0.85 * (v / peak)
            ink = "#fff" if shade > 0.5 else "#111"
            out.append(
                f'<rect x="{left + j * size}" y="{top + i * size}" width="{size - 2}" height="{size - 2}" '
                f'fill="{CURRENT}" fill-opacity="{shade:.2f}"><title>actual {e(labels[i])}, predicted '
                f"{e(labels[j])}: {e(number(v))}</title></rect>"
                f'<text x="{left + j * size + size / 2 - 1}" y="{top + i * size + size / 2 + 3}" text-anchor="middle" '
                f'fill="{ink}" {FONT}>{e(number(v, 3))}</text>'
            )
    out.append("</svg>")
    return "".join(out)
