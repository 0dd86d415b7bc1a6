"""The service's alert sender thread: every ``interval`` seconds, send the alert messages that
are due (:meth:`openmart.api.Mart.deliver_alerts`). Every ``serve`` process (and worker) runs
one; ``FOR UPDATE SKIP LOCKED`` claims make sure each message is sent by one of them."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from openmart.api import Mart

log = logging.getLogger(__name__)

#: messages at most per pass; a full pass is followed by another at once
BATCH = 100
#: seconds shutdown waits for a send in progress (each send has its own timeout, 300 s at most);
#: a claim left behind is sent again by any sender once its lease passes
SHUTDOWN_GRACE = 15.0


def start(mart: Mart, *, interval: float = 5.0) -> Callable[[], None]:
    """Start sending in the background; returns a function that stops it."""
    stopping = threading.Event()

    def loop() -> None:
        while not stopping.is_set():
            full = False
            try:
                counts = mart.deliver_alerts(limit=BATCH)
                full = counts.claimed >= BATCH
            except Exception:  # the mart unreachable, say: try again at the next tick
                log.exception("alert sender: a pass failed; trying again in %g s", interval)
            if not full:
                stopping.wait(interval)  # an Event, not sleep: shutdown wakes it at once

    thread = threading.Thread(target=loop, name="openmart-alert-sender", daemon=True)
    thread.start()

    def stop() -> None:
        stopping.set()
        thread.join(SHUTDOWN_GRACE)
        if thread.is_alive():
            log.warning("alert sender: a message is still being sent at shutdown; its claim expires and it is resent")

    return stop
