"""Matplotlib charts rendered to inline SVG: crisp, small (no raw rows, no script), and
readable without a network — the report stays one self-contained file."""

from __future__ import annotations

import io
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: charts are files
import matplotlib.pyplot as plt  # noqa: E402

plt.rcParams.update(
    {
        "figure.dpi": 96,
        "font.size": 9,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "svg.fonttype": "none",
        # names and categories come from users' data: "$\\foo$" is text, not TeX for mathtext to parse
        "text.parse_math": False,
        "text.usetex": False,
    }
)
OK, BAD, REF, CUR = "#2b7a78", "#c0392b", "#7f8c8d", "#2980b9"


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    with warnings.catch_warnings():
        # text stays text in the SVG (svg.fonttype none): the browser draws glyphs DejaVu lacks (CJK, ...)
        warnings.filterwarnings("ignore", message="Glyph .* missing from font", category=UserWarning)
        fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg") :]  # drop the XML prologue: the SVG sits inside HTML


def time_series(
    title: str,
    times: Sequence[Any],
    values: Sequence[float | None],
    threshold: float | None,
    threshold_type: str | None,
    breached: Sequence[bool],
) -> str:
    fig, ax = plt.subplots(figsize=(5.2, 2.4))
    xs = list(range(1, len(values) + 1))
    ax.plot(xs, [v if v is not None else float("nan") for v in values], marker="o", color=OK, lw=1.5)
    for x, v, b in zip(xs, values, breached, strict=True):
        if b and v is not None:
            ax.plot([x], [v], marker="o", color=BAD, ms=8)
    if threshold is not None:
        ax.axhline(
            threshold,
            ls="--",
            color=BAD,
            lw=1,
            label=f"{'lower' if threshold_type == 'lower_limit' else 'upper'} limit {threshold:g}",
        )
        ax.legend(loc="best", frameon=False)
    ax.set_title(title)
    ax.set_xlabel("evaluation")
    ax.set_xticks(xs)
    return _svg(fig)


def distribution(
    title: str, labels: Sequence[str], reference: Sequence[float], current: Sequence[float], drifted: bool
) -> str:
    fig, ax = plt.subplots(figsize=(3.6, 2.3))
    xs = range(len(labels))
    width = 0.42
    ax.bar([x - width / 2 for x in xs], reference, width, color=REF, label="reference")
    ax.bar([x + width / 2 for x in xs], current, width, color=BAD if drifted else CUR, label="current")
    ax.set_xticks(
        list(xs), labels, rotation=60 if len(labels) > 4 else 0, ha="right" if len(labels) > 4 else "center", fontsize=7
    )
    ax.set_ylabel("share")
    ax.set_title(title, color=BAD if drifted else "black")
    ax.legend(frameon=False, fontsize=7)
    return _svg(fig)


def bars(
    title: str,
    labels: Sequence[str],
    values: Sequence[float],
    reference_line: float | None = None,
    highlight: Sequence[bool] | None = None,
    xlabel: str = "",
) -> str:
    fig, ax = plt.subplots(figsize=(5.2, 0.5 + 0.32 * max(len(labels), 2)))
    colours = [BAD if (highlight and highlight[i]) else OK for i in range(len(labels))]
    ax.barh(list(range(len(labels)))[::-1], values, color=colours)
    ax.set_yticks(list(range(len(labels)))[::-1], labels)
    if reference_line is not None:
        ax.axvline(reference_line, ls="--", color=REF, lw=1)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    return _svg(fig)


def signed_bars(title: str, weights: Mapping[str, float], top: int = 12) -> str:
    items = sorted(weights.items(), key=lambda kv: abs(kv[1]), reverse=True)[:top]
    fig, ax = plt.subplots(figsize=(5.2, 0.5 + 0.3 * max(len(items), 2)))
    ys = list(range(len(items)))[::-1]
    ax.barh(ys, [w for _, w in items], color=[OK if w >= 0 else BAD for _, w in items])
    ax.set_yticks(ys, [k for k, _ in items])
    ax.axvline(0, color="black", lw=0.8)
    ax.set_title(title)
    return _svg(fig)


def confusion(labels: Sequence[str], matrix: Sequence[Sequence[int]]) -> str:
    fig, ax = plt.subplots(figsize=(3.2, 2.8))
    ax.imshow(matrix, cmap="Blues")
    for i, row in enumerate(matrix):
        for j, v in enumerate(row):
            ax.text(j, i, str(v), ha="center", va="center", fontsize=10)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title("confusion matrix")
    return _svg(fig)


def throughput_latency(
    times: Sequence[Any],
    requests: Sequence[float],
    errors: Sequence[float],
    latency: Mapping[str, Sequence[float | None]],
    bucket: str,
) -> str:
    """Requests (and errors) per bucket above, latency percentiles below, on one time axis."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7.2, 4.2), sharex=True)
    marker = "o" if len(times) < 40 else None
    top.plot(times, requests, color=OK, lw=1.5, marker=marker, ms=3, label="requests")
    top.plot(times, errors, color=BAD, lw=1.2, marker=marker, ms=3, label="errors")
    top.set_ylabel(f"per {bucket}")
    top.set_title("throughput")
    top.legend(loc="best", frameon=False, fontsize=7)
    for (name, values), colour in zip(latency.items(), (OK, CUR, BAD), strict=False):
        bottom.plot(times, [v if v is not None else float("nan") for v in values], color=colour, lw=1.3, label=name)
    bottom.set_ylabel("latency (ms)")
    bottom.set_title("latency per request")
    bottom.legend(loc="best", frameon=False, fontsize=7)
    fig.autofmt_xdate()
    return _svg(fig)


def paired_bars(
    title: str,
    labels: Sequence[str],
    first: Sequence[float | None],
    second: Sequence[float | None],
    names: Sequence[str],
) -> str:
    """Two bars per label (a comparison's baseline and target), missing values left out."""
    fig, ax = plt.subplots(figsize=(0.9 + 0.62 * max(len(labels), 3), 2.5))
    xs = range(len(labels))
    width = 0.4
    nan = float("nan")
    ax.bar([x - width / 2 for x in xs], [nan if v is None else v for v in first], width, color=REF, label=names[0])
    ax.bar([x + width / 2 for x in xs], [nan if v is None else v for v in second], width, color=CUR, label=names[1])
    ax.set_xticks(list(xs), labels, rotation=45 if len(labels) > 3 else 0, ha="right" if len(labels) > 3 else "center")
    ax.set_title(title)
    ax.legend(frameon=False, fontsize=7)
    return _svg(fig)
