"""An absolute deadline that travels with a request through every hop.

The ingress fixes when a request must be answered; each judge replica receives that moment as
wall-clock time (monotonic clocks differ between processes) and sets it here for the work it
runs, so time spent queued at a replica counts. Bedrock calls never run past it.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from contextvars import ContextVar

__all__ = ["REQUEST_DEADLINE", "bounded", "monotonic_to_wall", "request_deadline", "wall_to_monotonic"]

REQUEST_DEADLINE: ContextVar[float | None] = ContextVar("farm_request_deadline", default=None)
"""The current request's deadline on this process's monotonic clock, or None (no caller waits)."""


def wall_to_monotonic(deadline_at: float) -> float:
    return time.monotonic() + (deadline_at - time.time())


def monotonic_to_wall(deadline: float) -> float:
    return time.time() + (deadline - time.monotonic())


def bounded(deadline: float) -> float:
    """`deadline`, or the request's own deadline if that comes first."""
    outer = REQUEST_DEADLINE.get()
    return deadline if outer is None else min(deadline, outer)


@contextlib.contextmanager
def request_deadline(deadline: float | None) -> Iterator[None]:
    """Run the body under `deadline` (monotonic; None or inf: no limit beyond each judge's own)."""
    token = REQUEST_DEADLINE.set(None if deadline is None or math.isinf(deadline) else deadline)
    try:
        yield
    finally:
        REQUEST_DEADLINE.reset(token)
