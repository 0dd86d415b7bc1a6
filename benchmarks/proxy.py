"""Capture proxy overhead and durability, against a real reference deployment.

    python benchmarks/proxy.py [--requests 5000] [--concurrency 16]

1. The same single-record requests sent directly to the deployment (the Algorithmia-like host,
   a real process) and through `openmart proxy` (a real process), concurrency 16: p50 and p99
   latency of each, the added latency, and the throughput of each.
2. The same load through the proxy again, with the mart's embedded PostgreSQL stopped for a
   stretch in the middle (from a third to two thirds of the requests): how many records the
   mart holds at the end against how many were sent, lost and duplicated.

3. The same timed load through a second proxy started with ``--durable`` (each exchange fsync'd
   to the journal, group-committed, before its answer goes back): what durability costs.

Goals (issues 3 and 12): added p50 <= 2 ms, added p99 <= 10 ms, proxy throughput >= 0.8 x
direct, zero records lost or duplicated; the same figures are printed for ``--durable``.
The load generator is a minimal asyncio HTTP/1.1 client with
keep-alive connections, so that it measures the servers rather than itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

import openmart
from openmart.config import Settings
from openmart.deployments.launch import free_port, start_algorithmia
from openmart.mart.embedded import ensure_running, stop

ALGO = "bench/credit/1.0.0"


def train(path: Path) -> pd.DataFrame:
    import joblib
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"income": rng.normal(50, 15, 2000), "debt": rng.normal(20, 8, 2000)})
    frame["label"] = (frame["income"] - frame["debt"] + rng.normal(0, 10, 2000) > 30).astype(int)
    joblib.dump(LogisticRegression().fit(frame[["income", "debt"]], frame["label"]), path)
    return frame


async def _worker(
    host: str, port: int, path: str, bodies: list[bytes], lat: list[float], ids: list[str], on_sent
) -> None:  # type: ignore[no-untyped-def]
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for body in bodies:
            head = (
                f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            t0 = time.perf_counter()
            writer.write(head + body)
            await writer.drain()
            status = await reader.readline()
            length, sid = 0, None
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
                elif name.lower() == "x-openmart-scoring-id":
                    sid = value.strip()
            await reader.readexactly(length)
            lat.append(time.perf_counter() - t0)
            if not status.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"{path}: {status!r}")
            if sid:
                ids.append(sid)
            on_sent()
    finally:
        writer.close()


def load(
    url: str, path: str, bodies: list[bytes], concurrency: int, on_sent=lambda: None
) -> tuple[np.ndarray, float, list[str]]:  # type: ignore[no-untyped-def]
    host, port = url.removeprefix("http://").split(":")
    lat: list[float] = []
    ids: list[str] = []
    shares = [bodies[i::concurrency] for i in range(concurrency)]

    async def run() -> None:
        await asyncio.gather(*(_worker(host, int(port), path, s, lat, ids, on_sent) for s in shares))

    t0 = time.perf_counter()
    asyncio.run(run())
    return np.array(lat) * 1000, time.perf_counter() - t0, ids


def wait_until_up(url: str) -> None:
    import httpx

    for _ in range(600):
        try:
            httpx.get(f"{url}/_openmart/health", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="openmart-proxy-bench-"))
    env = dict(os.environ, OPENMART_DATA_DIR=str(work / "data"), OPENMART_SCHEMA="openmart")
    env.pop("OPENMART_DATABASE_URL", None)
    settings = Settings(None, work / "data", None)
    frame = train(work / "model.joblib")
    deployment = start_algorithmia({ALGO: work / "model.joblib"})
    proxy = None
    try:
        mart = openmart.connect(settings=settings)
        mart.bindings.add("host", "algorithmia", {"base_url": deployment.url})
        sub = mart.subscriptions.add(
            "bench", reference=frame, label="label", problem_type="binary", binding="host", deployment=ALGO
        )
        port = free_port()
        proxy = subprocess.Popen(
            [sys.executable, "-m", "openmart.cli.app", "proxy", "bench", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        proxy_url = f"http://127.0.0.1:{port}"
        wait_until_up(proxy_url)
        rng = np.random.default_rng(1)
        rows = frame.sample(args.requests, replace=True, random_state=1)[["income", "debt"]]
        bodies = [
            json.dumps([{"income": float(a) + rng.normal(), "debt": float(b)}]).encode()
            for a, b in rows.itertuples(index=False)
        ]
        path = f"/v1/algo/{ALGO}"
        load(deployment.url, path, bodies[:300], args.concurrency)  # warm both paths up
        load(proxy_url, path, bodies[:300], args.concurrency)
        time.sleep(1)
        before = sub.payload.count()

        direct, t_direct, _ = load(deployment.url, path, bodies, args.concurrency)
        via, t_via, _ = load(proxy_url, path, bodies, args.concurrency)
        p50d, p99d = np.percentile(direct, [50, 99])
        p50p, p99p = np.percentile(via, [50, 99])
        thr_d, thr_p = len(bodies) / t_direct, len(bodies) / t_via
        print(f"requests: {len(bodies):,} single-record POSTs at concurrency {args.concurrency}")
        print(f"direct : p50 {p50d:6.2f} ms  p99 {p99d:6.2f} ms  throughput {thr_d:8.0f} req/s")
        print(f"proxy  : p50 {p50p:6.2f} ms  p99 {p99p:6.2f} ms  throughput {thr_p:8.0f} req/s")
        print(
            f"added  : p50 {p50p - p50d:+6.2f} ms (goal <= 2)   p99 {p99p - p99d:+6.2f} ms (goal <= 10)   "
            f"throughput ratio {thr_p / thr_d:.2f} (goal >= 0.8)"
        )

        # durable mode: a second proxy, same load, each exchange fsync'd before its answer goes back
        durable_port = free_port()
        durable = subprocess.Popen(
            [sys.executable, "-m", "openmart.cli.app", "proxy", "bench", "--port", str(durable_port), "--durable"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        durable_url = f"http://127.0.0.1:{durable_port}"
        try:
            wait_until_up(durable_url)
            load(durable_url, path, bodies[:300], args.concurrency)
            via_d, t_via_d, _ = load(durable_url, path, bodies, args.concurrency)
        finally:
            durable.terminate()
            durable.wait(60)
        p50x, p99x = np.percentile(via_d, [50, 99])
        thr_x = len(bodies) / t_via_d
        print(f"durable: p50 {p50x:6.2f} ms  p99 {p99x:6.2f} ms  throughput {thr_x:8.0f} req/s")
        print(
            f"added  : p50 {p50x - p50d:+6.2f} ms   p99 {p99x - p99d:+6.2f} ms   throughput ratio {thr_x / thr_d:.2f}"
            "   (--durable)"
        )

        # durability: the database goes away for the middle third of the load
        pgdata = settings.embedded_pgdata
        sent = {"n": 0}
        third = len(bodies) // 3
        state = {"stopped": False, "started": False}

        def on_sent() -> None:
            sent["n"] += 1

        import threading

        def blink() -> None:
            while sent["n"] < third:
                time.sleep(0.005)
            stop(pgdata, mode="fast")
            state["stopped"] = True
            while sent["n"] < 2 * third:
                time.sleep(0.005)
            ensure_running(pgdata)
            state["started"] = True

        blinker = threading.Thread(target=blink)
        blinker.start()
        _, t_blink, ids = load(proxy_url, path, bodies, args.concurrency, on_sent)
        blinker.join()
        expected = before + 3 * len(bodies) + 300  # timed, durable warm-up and timed, and this run
        mart.close()
        mart = openmart.connect(settings=settings)
        sub = mart.subscriptions.get("bench")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and sub.payload.count() < expected:
            time.sleep(0.5)
        stored = sub.payload.count()
        distinct = int(mart.sql(f"SELECT count(DISTINCT scoring_id) AS n FROM {sub.payload.table}")["n"][0])
        present = int(
            mart.sql(f"SELECT count(*) AS n FROM {sub.payload.table} WHERE scoring_id = ANY(:ids)", {"ids": ids})["n"][
                0
            ]
        )
        print(
            f"database stopped after {third:,} and started again after {2 * third:,} of {len(bodies):,} requests "
            f"({t_blink:.1f} s)"
        )
        print(
            f"records sent through the proxies in all: {expected - before:,} (+{before:,} warm-up); "
            f"stored: {stored:,}; distinct: {distinct:,}"
        )
        print(
            f"of the {len(ids):,} answered during the outage run, in the mart: {present:,}; "
            f"lost: {len(ids) - present}; duplicated: {stored - distinct}"
        )
        ok = (
            p50p - p50d <= 2
            and p99p - p99d <= 10
            and thr_p >= 0.8 * thr_d
            and present == len(ids)
            and stored == distinct == expected
        )
        print("goals met" if ok else "GOALS MISSED")
        mart.close()
        return 0 if ok else 1
    finally:
        if proxy is not None:
            proxy.terminate()
            proxy.wait(10)
        deployment.stop()
        stop(settings.embedded_pgdata)


if __name__ == "__main__":
    raise SystemExit(main())
