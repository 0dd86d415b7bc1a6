"""Shared by the benchmarks: where to run, and a peak-memory sampler."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psutil


def database_url() -> str | None:
    """OPENMART_DATABASE_URL, else the machine's PostgreSQL when it answers, else embedded."""
    return os.environ.get("OPENMART_DATABASE_URL") or None


class PeakRSS:
    """Samples this process's resident memory every few milliseconds; ``peak`` is the highest."""

    def __init__(self, interval: float = 0.005) -> None:
        self._proc = psutil.Process()
        self._interval = interval
        self.start = self._proc.memory_info().rss
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            time.sleep(self._interval)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)

    @property
    def added(self) -> int:
        return self.peak - self.start


@contextmanager
def timed() -> Iterator[list[float]]:
    out: list[float] = []
    t0 = time.perf_counter()
    yield out
    out.append(time.perf_counter() - t0)
