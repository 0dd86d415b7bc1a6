"""Payload logging speed: openmart's `sub.payload.log` against the raw COPY baseline and pandas
`to_sql(method="multi")`, in the same run, on the same mart.

    python benchmarks/ingest.py [--rows 1000000] [--to-sql-rows 50000] [--database-url URL]

Goals (issue 2): openmart >= 0.8 x raw COPY, >= 50 x to_sql, peak memory added while logging
<= 2 x the DataFrame's own size. Exits non-zero when a goal is missed.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from _common import PeakRSS, database_url  # noqa: E402

import openmart  # noqa: E402

N_FEATURES = 30


def make_frame(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = {f"f{i:02d}": rng.normal(size=rows) for i in range(N_FEATURES)}
    frame = pd.DataFrame(data)
    frame["prediction"] = rng.integers(0, 2, rows).astype(float)
    frame["probability"] = rng.random(rows)
    return frame


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--to-sql-rows", type=int, default=50_000)
    parser.add_argument("--database-url", default=database_url())
    args = parser.parse_args()

    schema = f"bench_ingest_{uuid.uuid4().hex[:8]}"
    mart = openmart.connect(args.database_url, schema=schema)
    print(f"mart: {mart.location.describe()}")
    try:
        reference = make_frame(1000, seed=1).rename(columns={"prediction": "label"}).drop(columns="probability")
        sub = mart.subscriptions.add("bench", reference=reference, label="label", problem_type="binary")
        frame = make_frame(args.rows)
        frame_bytes = int(frame.memory_usage(deep=True).sum())

        # openmart
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            ids = sub.payload.log(frame)
            t_om = time.perf_counter() - t0
        assert len(ids) == args.rows and sub.payload.count() == args.rows
        del ids

        # raw baseline: the same DataFrame (plus the scoring ids it must carry) through to_csv + COPY
        base = mart.subscriptions.add("bench_raw", schema=sub.schema)
        t0 = time.perf_counter()
        with_ids = frame.assign(scoring_id=[str(uuid.uuid4()) for _ in range(args.rows)])
        cols = ["scoring_id", *frame.columns]
        buf = io.StringIO()
        with_ids[cols].to_csv(buf, index=False, header=False)
        buf.seek(0)
        raw = mart.engine.raw_connection()
        with raw.cursor() as cur:
            cur.copy_expert(f"COPY {base.payload.table} ({', '.join(cols)}) FROM STDIN WITH (FORMAT csv)", buf)
        raw.commit()
        raw.close()
        t_raw = time.perf_counter() - t0
        del with_ids, buf
        assert base.payload.count() == args.rows

        # pandas to_sql(method="multi") on a smaller frame, into a plain table
        small = frame.head(args.to_sql_rows).assign(scoring_id=[str(uuid.uuid4()) for _ in range(args.to_sql_rows)])
        t0 = time.perf_counter()
        with mart.engine.begin() as conn:
            small.to_sql("bench_to_sql", conn, schema=schema, method="multi", chunksize=1000, index=False)
        t_sql = time.perf_counter() - t0

        om_rate, raw_rate, sql_rate = args.rows / t_om, args.rows / t_raw, args.to_sql_rows / t_sql
        mem_ratio = mem.added / frame_bytes
        print(f"rows                       : {args.rows:,} x ({N_FEATURES} features + prediction + probability)")
        print(f"openmart sub.payload.log   : {t_om:7.2f} s  {om_rate:12,.0f} rows/s")
        print(f"raw to_csv + COPY baseline : {t_raw:7.2f} s  {raw_rate:12,.0f} rows/s")
        print(f"pandas to_sql(multi)       : {t_sql:7.2f} s  {sql_rate:12,.0f} rows/s  ({args.to_sql_rows:,} rows)")
        print(f"openmart / raw COPY        : {om_rate / raw_rate:7.2f} x   (goal >= 0.8)")
        print(f"openmart / to_sql          : {om_rate / sql_rate:7.1f} x   (goal >= 50)")
        print(f"DataFrame size             : {frame_bytes / 2**20:7.1f} MiB")
        print(
            f"peak memory added (RSS)    : {mem.added / 2**20:7.1f} MiB = {mem_ratio:.2f} x the DataFrame (goal <= 2)"
        )
        ok = om_rate >= 0.8 * raw_rate and om_rate >= 50 * sql_rate and mem_ratio <= 2
        print("goals met" if ok else "GOALS MISSED")
        return 0 if ok else 1
    finally:
        with mart.engine.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        mart.close()


if __name__ == "__main__":
    raise SystemExit(main())
