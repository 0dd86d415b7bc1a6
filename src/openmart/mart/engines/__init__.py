"""Engines that compute mergeable pieces (:mod:`openmart.aggregates.specs`) over records where
they are: PostgreSQL (the mart's own tables, :mod:`.postgres`) and DuckDB over Parquet files
(:mod:`.duckdb_engine`). The specs compile to SQL once (:mod:`.compile`), in each engine's dialect, and
every engine returns the same pieces for the same records."""
