"""REST payload logging through `openmart serve` against the Python API's own logging, in the
same run, on the same mart.

    python benchmarks/serve.py [--single 2000] [--bulk 200] [--bulk-size 1000] [--concurrency 8]

Four ways to log the same records (30 numeric features, prediction, probability):

- in-process, 1 record per call: ``sub.payload.log(one_row_frame)``, one call after another;
- in-process, 1,000 records per call: ``sub.payload.log(frame_of_1000)``;
- REST, 1 record per POST to ``/api/v1/subscriptions/bench/payload`` (JSON), from
  ``--concurrency`` keep-alive connections;
- REST, 1,000 records per POST, as JSON and as a streamed CSV body.

Each prints records per second and the p50/p99 latency of one call. The bodies are encoded
before the clock starts: the figures are the service's, not the client's ``json.dumps``. The
service runs as its own process (`openmart serve`, one worker, a write key), as users run it.

Goal (issue 15): REST bulk posts keep >= 0.5 x the in-process bulk throughput. Exits non-zero when
missed. The record count of the payload table is checked after every phase.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from _common import database_url  # noqa: E402
from ingest import make_frame  # noqa: E402

import openmart  # noqa: E402
from openmart.deployments.launch import free_port  # noqa: E402

PATH = "/api/v1/subscriptions/bench/payload"


async def _worker(host: str, port: int, key: str, requests: list[tuple[str, bytes]], latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for content_type, body in requests:
            head = (
                f"POST {PATH} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n"
                f"Authorization: Bearer {key}\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode()
            t0 = time.perf_counter()
            writer.write(head + body)
            await writer.drain()
            status = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            answer = await reader.readexactly(length)
            latencies.append(time.perf_counter() - t0)
            if not status.split(b" ")[1].startswith(b"2"):
                raise RuntimeError(f"{PATH}: {status!r} {answer[:300]!r}")
    finally:
        writer.close()


def post_all(url: str, key: str, requests: list[tuple[str, bytes]], concurrency: int) -> tuple[np.ndarray, float]:
    """(latency of each POST in ms, wall seconds for all of them)."""
    host, port = url.removeprefix("http://").split(":")
    latencies: list[float] = []
    shares = [requests[i::concurrency] for i in range(concurrency)]

    async def run() -> None:
        await asyncio.gather(*(_worker(host, int(port), key, s, latencies) for s in shares if s))

    t0 = time.perf_counter()
    asyncio.run(run())
    return np.array(latencies) * 1000, time.perf_counter() - t0


def in_process(sub: openmart.Subscription, frames: list[pd.DataFrame]) -> tuple[np.ndarray, float]:
    latencies = []
    t0 = time.perf_counter()
    for frame in frames:
        t1 = time.perf_counter()
        sub.payload.log(frame)
        latencies.append(time.perf_counter() - t1)
    return np.array(latencies) * 1000, time.perf_counter() - t0


def json_body(frame: pd.DataFrame) -> tuple[str, bytes]:
    return "application/json", json.dumps(frame.to_dict("records")).encode()


def csv_body(frame: pd.DataFrame) -> tuple[str, bytes]:
    buf = io.StringIO()
    frame.to_csv(buf, index=False)
    return "text/csv", buf.getvalue().encode()


def start_service(url: str | None, schema: str, port: int) -> subprocess.Popen[bytes]:
    """`openmart serve` on the same mart: the URL given, else the same embedded default (the
    same OPENMART_DATA_DIR, inherited)."""
    env = dict(os.environ, OPENMART_SCHEMA=schema)
    if url:
        env["OPENMART_DATABASE_URL"] = url
    argv = [sys.executable, "-m", "openmart.cli.app", "serve", "--port", str(port), "--no-scheduler"]
    return subprocess.Popen(argv + ["--log-level", "warning"], env=env, start_new_session=True)


def wait_until_up(url: str, process: subprocess.Popen[bytes]) -> None:
    import httpx

    end = time.monotonic() + 300
    while time.monotonic() < end:
        if process.poll() is not None:
            raise RuntimeError(f"openmart serve exited with {process.returncode}")
        try:
            if httpx.get(url + "/health", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def row(name: str, records: int, latencies: np.ndarray, seconds: float) -> float:
    rate = records / seconds
    p50, p99 = np.percentile(latencies, [50, 99])
    print(
        f"{name:<34}: {records:>9,} records {seconds:7.2f} s {rate:11,.0f} rec/s   p50 {p50:8.2f} ms  p99 {p99:8.2f} ms"
    )
    return rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--single", type=int, default=2000, help="1-record calls/posts")
    parser.add_argument("--bulk", type=int, default=200, help="bulk calls/posts")
    parser.add_argument("--bulk-size", type=int, default=1000, help="records per bulk call/post")
    parser.add_argument("--concurrency", type=int, default=8, help="REST client connections")
    parser.add_argument("--database-url", default=database_url())
    args = parser.parse_args()

    schema = f"bench_serve_{uuid.uuid4().hex[:8]}"
    mart = openmart.connect(args.database_url, schema=schema)
    print(f"mart: {mart.location.describe()}")
    process = None
    try:
        reference = make_frame(1000, seed=1).rename(columns={"prediction": "label"}).drop(columns="probability")
        sub = mart.subscriptions.add("bench", reference=reference, label="label", problem_type="binary")
        _, key = mart.keys.create("bench", "write")
        single = make_frame(args.single, seed=2)
        bulk = make_frame(args.bulk * args.bulk_size, seed=3)
        single_frames = [single.iloc[i : i + 1] for i in range(args.single)]
        bulk_frames = [bulk.iloc[i : i + args.bulk_size] for i in range(0, len(bulk), args.bulk_size)]
        expected = 0

        def check(added: int) -> None:
            nonlocal expected
            expected += added
            stored = sub.payload.count()
            if stored != expected:
                raise RuntimeError(f"payload table holds {stored:,} records, {expected:,} were logged")

        print(f"records: 30 features + prediction + probability; bulk posts of {args.bulk_size:,}")
        lat, secs = in_process(sub, single_frames)
        check(args.single)
        api_single = row("in-process, 1 record per call", args.single, lat, secs)
        lat, secs = in_process(sub, bulk_frames)
        check(len(bulk))
        api_bulk = row(f"in-process, {args.bulk_size:,} per call", len(bulk), lat, secs)

        port = free_port()
        url = f"http://127.0.0.1:{port}"
        process = start_service(args.database_url, schema, port)
        wait_until_up(url, process)
        requests = [json_body(f) for f in single_frames]
        lat, secs = post_all(url, key, requests, args.concurrency)
        check(args.single)
        rest_single = row(f"REST JSON, 1 record per POST (c={args.concurrency})", args.single, lat, secs)
        requests = [json_body(f) for f in bulk_frames]
        lat, secs = post_all(url, key, requests, args.concurrency)
        check(len(bulk))
        rest_bulk = row(f"REST JSON, {args.bulk_size:,} per POST (c={args.concurrency})", len(bulk), lat, secs)
        requests = [csv_body(f) for f in bulk_frames]
        lat, secs = post_all(url, key, requests, args.concurrency)
        check(len(bulk))
        rest_csv = row(f"REST CSV, {args.bulk_size:,} per POST (c={args.concurrency})", len(bulk), lat, secs)

        best_bulk = max(rest_bulk, rest_csv)
        print(f"REST / in-process, 1 record       : {rest_single / api_single:7.2f} x")
        print(f"REST JSON / in-process, bulk      : {rest_bulk / api_bulk:7.2f} x")
        print(f"REST CSV / in-process, bulk       : {rest_csv / api_bulk:7.2f} x   (goal: best bulk >= 0.5)")
        ok = best_bulk >= 0.5 * api_bulk
        print("goal met" if ok else "GOAL MISSED")
        return 0 if ok else 1
    finally:
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=60)
        with mart.engine.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        mart.close()


if __name__ == "__main__":
    raise SystemExit(main())
