"""Named points where a test may kill this process, to prove a promise holds across a crash at
exactly that point (between an archive's copy and its delete, say): a fault that cannot be
caused reliably from outside. ``OPENMART_KILL_AT=archive:written`` makes the process SIGKILL
itself there, as ``kill -9`` would: no cleanup, no ``finally``. Unset (always, outside tests),
a point costs one dictionary lookup."""

from __future__ import annotations

import os
import signal

ENV = "OPENMART_KILL_AT"


def point(name: str) -> None:
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
