"""Mergeable pieces (issue #19 part 1) on three engines: the same records counted in PostgreSQL
and, exported to Parquet, by DuckDB and by Spark (local mode, a real JVM) give the same pieces;
pieces of two parts merge into the pieces of the whole; and the statistics computed from them
equal scikit-learn's and scipy's on the records.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy import stats
from sklearn import metrics as skm

import openmart
from openmart.aggregates import statistics
from openmart.aggregates.specs import Count, GroupCount, Histogram, Moments, Pieces, merge_all
from openmart.errors import ValidationError
from openmart.mart import windows
from openmart.mart.engines import duckdb_engine, postgres, spark_engine
from openmart.mart.windows import Window

pytest.importorskip("duckdb")

N = 6000
EDGES = (-1.5, -0.5, 0.0, 0.25, 1.0, 2.0)


def frame(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, N)
    x[rng.random(N) < 0.03] = np.nan  # stored as NULL
    ties = np.round(rng.exponential(1.0, N), 1)  # many ties: KS/W1 at repeated values
    region = rng.choice(["north", "south", "east"], N)
    probability = np.round(1 / (1 + np.exp(-(0.8 * np.nan_to_num(x) + 0.3 * ties - 0.4))), 3)  # tied scores
    label = (rng.random(N) < probability).astype(int)
    return pd.DataFrame(
        {
            "x": x,
            "ties": ties,
            "region": region,
            "label": label,
            "prediction": (probability >= 0.5).astype(int),
            "probability": probability,
        }
    )


Stored = tuple[openmart.Mart, Any, pd.DataFrame, list[Path]]  # the mart, the subscription's tables, rows, files

SPECS = [
    Count(),
    Moments("x"),
    Moments("ties"),
    Histogram("x", EDGES),
    Histogram("ties", (0.5, 1.0, 1.5)),
    GroupCount(("region",)),
    GroupCount(("ties",)),
    GroupCount(("label", "prediction")),
    GroupCount(("probability", "label")),
    GroupCount(("region", "prediction")),
]


@pytest.fixture
def stored(mart: openmart.Mart, tmp_path: Path) -> Stored:
    """The records in a reference table, and the same rows read back from it as two Parquet files."""
    data = frame()
    sub = mart.subscriptions.add(
        "eng", reference=data, label="label", problem_type="binary", categorical=["region"], class_labels=[0, 1]
    )
    table = sub.record
    relation = windows.payload(Window(environment="training", version=table.reference_version), table)
    types = {
        "x": pa.float64(),
        "ties": pa.float64(),
        "region": pa.string(),
        "label": pa.float64(),
        "prediction": pa.float64(),
        "probability": pa.float64(),
    }
    with mart.engine.connect() as conn:
        rows = windows.columns(conn, relation, list(types), types)
    assert len(rows) == N
    files = [tmp_path / "part-0.parquet", tmp_path / "part-1.parquet"]
    pq.write_table(pa.Table.from_pandas(rows.iloc[: N // 3], preserve_index=False), files[0])
    pq.write_table(pa.Table.from_pandas(rows.iloc[N // 3 :], preserve_index=False), files[1])
    return mart, table, rows, files


def _pg(mart: openmart.Mart, table: Any) -> Pieces:
    with mart.engine.connect() as conn:
        relation = windows.payload(Window(environment="training", version=table.reference_version), table)
        return postgres.run(conn, relation, SPECS)


def _assert_same(a: Pieces, b: Pieces) -> None:
    for spec in SPECS:
        x, y = a[spec], b[spec]
        if isinstance(spec, Moments):
            assert (x.n, x.low, x.high) == (y.n, y.low, y.high), spec
            assert x.total == pytest.approx(y.total, rel=1e-12, abs=1e-9), spec
            assert x.squares == pytest.approx(y.squares, rel=1e-12), spec
        elif isinstance(spec, Histogram):
            assert np.array_equal(x, y), spec
        elif isinstance(spec, GroupCount):
            assert x.counts == y.counts, spec
        else:
            assert x == y, spec


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    pytest.importorskip("pyspark")
    session = spark_engine.session("local[2]")
    yield session
    spark_engine.stop()


def test_postgres_duckdb_and_spark_give_the_same_pieces(stored: Stored, spark: Any) -> None:
    mart, table, _, files = stored
    in_postgres = _pg(mart, table)
    _assert_same(in_postgres, duckdb_engine.run(files, SPECS))
    _assert_same(in_postgres, spark_engine.run(files, SPECS, spark=spark))


def test_pieces_of_parts_merge_into_the_pieces_of_the_whole(
    stored: Stored,
) -> None:
    mart, table, _, files = stored
    parts = [duckdb_engine.run([f], SPECS) for f in files]
    _assert_same(merge_all(parts, SPECS), _pg(mart, table))
    assert merge_all([], SPECS)[Count()] == 0


def test_statistics_from_pieces_equal_the_oracles(stored: Stored) -> None:
    mart, table, rows, files = stored
    for pieces in (_pg(mart, table), duckdb_engine.run(files, SPECS)):
        assert pieces[Count()] == N
        # classification metrics: scikit-learn on the records
        matrix = statistics.confusion(pieces[GroupCount(("label", "prediction"))], [0.0, 1.0])
        got = statistics.binary_metrics(matrix)
        y, p = rows["label"], rows["prediction"]
        assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, p), abs=1e-12)
        assert got["precision"] == pytest.approx(skm.precision_score(y, p, zero_division=0), abs=1e-12)
        assert got["recall"] == pytest.approx(skm.recall_score(y, p, zero_division=0), abs=1e-12)
        assert got["f1"] == pytest.approx(skm.f1_score(y, p, zero_division=0), abs=1e-12)
        auc = statistics.roc_auc(pieces[GroupCount(("probability", "label"))], positive=1.0)
        assert auc == pytest.approx(skm.roc_auc_score(y, rows["probability"]), abs=1e-12)
        # moments: numpy over the values present
        x = rows["x"].dropna().to_numpy()
        mean, std = statistics.mean_std(pieces[Moments("x")])
        assert pieces[Moments("x")].n == x.size and mean == pytest.approx(x.mean(), abs=1e-12)
        assert std == pytest.approx(x.std(), rel=1e-9)
        # histogram: the number of edges at or below each value; NULL in bin 0
        expected = np.bincount(np.searchsorted(EDGES, x, side="right") + 1, minlength=len(EDGES) + 2)
        expected[0] = rows["x"].isna().sum()
        assert np.array_equal(pieces[Histogram("x", EDGES)], expected)


def test_two_sample_statistics_from_value_counts_equal_scipy(
    stored: Stored,
) -> None:
    """KS and W1 between two parts of the records, each counted by a different engine."""
    mart, table, rows, files = stored
    spec = GroupCount(("ties",))
    reference = _pg(mart, table)[spec]
    current = duckdb_engine.run([files[1]], [spec])[spec]
    a, b = rows["ties"].to_numpy(), rows["ties"].iloc[N // 3 :].to_numpy()
    assert statistics.ks_statistic(reference, current) == pytest.approx(stats.ks_2samp(a, b).statistic, abs=1e-12)
    assert statistics.wasserstein(reference, current) == pytest.approx(stats.wasserstein_distance(a, b), abs=1e-12)
    shifted = duckdb_engine.run([files[1]], [spec])[spec]
    shifted.counts = {(v + 0.5,): n for (v,), n in shifted.counts.items()}
    assert statistics.wasserstein(reference, shifted) == pytest.approx(stats.wasserstein_distance(a, b + 0.5), abs=1e-9)


def test_bad_specs_are_refused_and_names_are_quoted(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="edges"):
        Histogram("x", (1.0, 1.0))
    with pytest.raises(ValidationError, match="%"):
        GroupCount(("50%",))
    with pytest.raises(ValidationError):
        GroupCount(())
    # a hostile name is a name: quoted, it reads the column of that name and runs nothing else
    hostile = 'x"; DROP TABLE t; --'
    path = tmp_path / "hostile.parquet"
    pq.write_table(pa.table({hostile: [1.0, 1.0, 2.0, None]}), path)
    got = duckdb_engine.run([path], [GroupCount((hostile,)), Moments(hostile)])
    assert got[GroupCount((hostile,))].counts == {(1.0,): 2, (2.0,): 1, (None,): 1}
    assert got[Moments(hostile)].n == 3
