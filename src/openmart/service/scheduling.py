"""The service's scheduler thread: every ``interval`` seconds, run the monitors that are due
(:meth:`openmart.api.Mart.run_due`). Every ``serve`` process (and worker) runs one; claims in the
mart make sure each due slot runs once among them all."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from openmart.api import Mart

log = logging.getLogger(__name__)

#: seconds shutdown waits for an evaluation in progress; after that it is left to die with the
#: process (its row is then marked abandoned by the next sweep)
SHUTDOWN_GRACE = 20.0


def start(mart: Mart, *, interval: float = 30.0) -> Callable[[], None]:
    """Start the scheduler in the background; returns a function that stops it."""
    stopping = threading.Event()

    def loop() -> None:
        while not stopping.is_set():
            try:
                # a failed evaluation is recorded by the runner and logged by run_due: the loop goes on
                mart.run_due(should_stop=stopping.is_set)
            except Exception:  # the mart unreachable, say: try again at the next tick
                log.exception("scheduler: looking for due monitors failed; trying again in %g s", interval)
            stopping.wait(interval)  # an Event, not sleep: shutdown wakes it at once

    thread = threading.Thread(target=loop, name="openmart-scheduler", daemon=True)
    thread.start()

    def stop() -> None:
        stopping.set()
        thread.join(SHUTDOWN_GRACE)
        if thread.is_alive():
            log.warning("scheduler: an evaluation is still running at shutdown; it will be marked abandoned")

    return stop
