"""Labelled records as integer slice codes: the bins (edges from the reference's quantiles), one
fetch per relation through :mod:`openmart.mart.slices`, and the codes and labels per feature."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from openmart.context import SubscriptionContext
from openmart.errors import ValidationError
from openmart.mart import slices as mart_slices
from openmart.mart import windows
from openmart.mart.windows import Relation, Window
from openmart.schema import ColumnKind, ProblemType, SubscriptionSchema
from openmart.slices.expressions import Categories

DEFAULT_BINS = 10


@dataclass(frozen=True)
class Binning:
    """How each feature is cut: numeric ``edges`` (interior, increasing, from quantiles), the
    categorical features, and where the edges came from ("reference" or "window")."""

    edges: dict[str, list[float]]
    categorical: list[str]
    source: str


@dataclass
class Feature:
    """One feature's slices: a code per record in ``range(len(labels))`` and a label per code."""

    name: str
    codes: np.ndarray
    labels: list[str]


@dataclass
class Coded:
    y_true: np.ndarray
    y_pred: np.ndarray
    features: list[Feature]
    #: the columns slice expressions read: numbers (NaN: missing) or :class:`Categories`
    columns: dict[str, np.ndarray | Categories] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.y_true.size)


def labelled(ctx: SubscriptionContext, window: Window, columns: Sequence[str]) -> Relation:
    s = ctx.schema
    return windows.labelled(window, ctx, joined=[*columns, s.prediction], feedback=[s.label])


def reference(ctx: SubscriptionContext) -> Relation:
    return windows.payload(windows.reference_window(ctx.record.reference_version), ctx)


def feature_names(schema: SubscriptionSchema, features: Sequence[str] | None) -> list[str]:
    """The features to slice by (default: every feature and meta attribute), checked."""
    known = [c.name for c in schema.input_columns]
    if features is None:
        return known
    for f in features:
        if f not in known:
            raise ValidationError(f"unknown feature {f!r} (the schema has: {', '.join(known)})", column=f)
    return list(dict.fromkeys(features))


def binning(conn: Any, ctx: SubscriptionContext, features: Sequence[str], bins: int, fallback: Relation) -> Binning:
    """Numeric edges at the reference's quantiles 1/bins .. (bins-1)/bins (ties merged, so a
    feature with few distinct values gets fewer bins); from ``fallback`` (the window) when the
    reference holds no value of the feature."""
    schema = ctx.schema
    numeric = [f for f in features if schema.column(f).kind is ColumnKind.NUMERIC]
    quantiles = [i / bins for i in range(1, bins)]
    edges = mart_slices.quantile_edges(conn, reference(ctx), numeric, quantiles)
    missing = [f for f in numeric if not edges[f]]
    source = "reference"
    if missing:
        edges.update(mart_slices.quantile_edges(conn, fallback, missing, quantiles))
        source = "reference" if len(missing) < len(numeric) else "window"
    cleaned = {f: sorted(set(edges[f])) for f in numeric}
    return Binning(cleaned, [f for f in features if f not in cleaned], source)


def fetch(
    conn: Any, ctx: SubscriptionContext, relation: Relation, binning: Binning, raw_numeric: Sequence[str]
) -> pa.Table:
    s = ctx.schema
    return mart_slices.coded_rows(
        conn,
        relation,
        label=s.label,
        prediction=s.prediction,
        numeric_outputs=s.outputs_numeric,
        edges=binning.edges,
        categorical=binning.categorical,
        raw={f: True for f in raw_numeric},
    )


def _fmt(v: float) -> str:
    return f"{v:.6g}"


def numeric_labels(name: str, edges: Sequence[float]) -> list[str]:
    """Labels of codes 0 (missing) .. len(edges) + 1, written as slice expressions where they can be."""
    labels = [f"{name} is missing"]
    for c in range(1, len(edges) + 2):
        lo = edges[c - 2] if c >= 2 else None
        hi = edges[c - 1] if c - 1 < len(edges) else None
        if lo is None and hi is None:
            labels.append(f"{name} is present")
        elif lo is None:
            labels.append(f"{name} < {_fmt(hi)}")  # type: ignore[arg-type]
        elif hi is None:
            labels.append(f"{name} >= {_fmt(lo)}")
        else:
            labels.append(f"{name} >= {_fmt(lo)} and {name} < {_fmt(hi)}")
    return labels


def _text(value: str) -> str:
    return "'" + value + "'" if "'" not in value else '"' + value + '"'


def encode(tables: Sequence[pa.Table], binning: Binning, raw_numeric: Sequence[str]) -> list[Coded]:
    """The fetched tables as :class:`Coded`, categories coded against one vocabulary shared by
    all the tables (so a slice means the same records' kind in each)."""
    vocab: dict[str, list[str]] = {}
    for i, name in enumerate(binning.categorical):
        values: set[str] = set()
        for t in tables:
            if t.num_rows:
                values.update(v for v in pc.unique(t.column(f"c{i}")).to_pylist() if v is not None)
        vocab[name] = sorted(values)
    out = []
    for t in tables:
        feats: list[Feature] = []
        columns: dict[str, np.ndarray | Categories] = {}
        for i, (name, cuts) in enumerate(binning.edges.items()):
            codes = (
                t.column(f"b{i}").to_numpy(zero_copy_only=False).astype(np.intp) if t.num_rows else np.empty(0, np.intp)
            )
            feats.append(Feature(name, codes, numeric_labels(name, cuts)))
        for i, name in enumerate(binning.categorical):
            words = vocab[name]
            if t.num_rows:
                index = pc.index_in(t.column(f"c{i}"), value_set=pa.array(words, pa.string()))
                codes = index.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.intp)
            else:
                codes = np.empty(0, np.intp)
            columns[name] = Categories(codes, tuple(words))
            # the missing value's code is the last: bincount needs codes >= 0
            feats.append(
                Feature(
                    name,
                    np.where(codes < 0, len(words), codes),
                    [f"{name} == {_text(w)}" for w in words] + [f"{name} is missing"],
                )
            )
        for i, name in enumerate(raw_numeric):
            columns[name] = (
                t.column(f"r{i}").to_numpy(zero_copy_only=False).astype(float) if t.num_rows else np.empty(0)
            )
        y_true = t.column("y_true").to_numpy(zero_copy_only=False) if t.num_rows else np.empty(0)
        y_pred = t.column("y_pred").to_numpy(zero_copy_only=False) if t.num_rows else np.empty(0)
        out.append(Coded(y_true, y_pred, feats, columns))
    return out


def positive_class(schema: SubscriptionSchema, coded: Coded) -> Any | None:
    """The positive class of a binary subscription, as the fetched outputs spell it (the second
    class label; else the larger of the labels seen, as scikit-learn orders them)."""
    if schema.problem_type is not ProblemType.BINARY:
        return None
    if schema.class_labels is not None:
        pos = schema.class_labels[1]
    else:
        seen = sorted(set(np.unique(coded.y_true).tolist()) | set(np.unique(coded.y_pred).tolist()))
        pos = seen[-1] if seen else None
    if pos is None:
        return None
    return float(pos) if schema.outputs_numeric else str(pos)
