"""The Spark engine: pieces computed by Apache Spark over Parquet files, on a cluster or, with
``master="local[*]"``, in this process's JVM. Spark SQL runs the same compiled specs as the other
engines (its dialect quotes names with backticks), and only the pieces come back to Python.

The session is Spark's own singleton (``getOrCreate``): the first run starts it (10-20 s for a
local JVM), later runs reuse it; :func:`stop` ends it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from openmart.aggregates.specs import Pieces, Spec
from openmart.mart.engines.compile import SPARK, query
from openmart.mart.engines.results import piece

DEFAULT_MASTER = "local[*]"
VIEW = "openmart_records"


def session(master: str = DEFAULT_MASTER, **conf: str) -> Any:
    """The Spark session for ``master`` (``local[*]``, ``spark://host:7077``, ``yarn``...)."""
    from pyspark.sql import SparkSession  # an optional engine (the spark extra): imported when used

    builder = SparkSession.builder.master(master).appName("openmart")
    # no web UI (a port per session) and few shuffle partitions: the pieces are small aggregates
    settings = {"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "8", **conf}
    for key, value in settings.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def run(paths: Sequence[str | Path], specs: Sequence[Spec], *, spark: Any = None) -> Pieces:
    """Every spec over the rows of the Parquet files (or directories), in Spark."""
    if not paths:
        return Pieces.of(specs)
    spark = spark or session()
    spark.read.parquet(*[str(p) for p in paths]).createOrReplaceTempView(VIEW)
    values = {}
    for spec in specs:
        rows = spark.sql(query(spec, f"{VIEW} w", SPARK)).collect()
        values[spec] = piece(spec, [tuple(r) for r in rows])
    return Pieces(values)


def stop() -> None:
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        active.stop()
