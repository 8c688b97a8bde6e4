"""A content-addressed verdict cache with single flight.

Keys hash the judge's configuration with the content judged, so a changed rubric never reads
an old verdict. Concurrent requests for one key share one computation (duplicate rollouts
inside a request are scored once); only successful verdicts are stored, so a failure is
retried next time instead of being remembered. A computation belongs to the cache, not to the
caller that started it, so cancelling one caller never breaks another.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import msgspec

from farm.deadlines import REQUEST_DEADLINE
from farm.errors import TransientJudgeError
from farm.wire import Verdict

__all__ = ["CacheStats", "VerdictCache", "content_key"]


def content_key(*parts: object) -> str:
    """A stable digest of JSON-encodable parts."""
    return hashlib.sha256(msgspec.json.encode(parts)).hexdigest()


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    joined: int = 0
    """Requests that waited on an identical computation already in flight."""

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses + self.joined
        return (self.hits + self.joined) / total if total else 0.0


async def _awaited(compute: Callable[[], Awaitable[Verdict]]) -> Verdict:
    return await compute()


class _Flight:
    """One computation in progress and how many callers still wait on it."""

    __slots__ = ("task", "waiters")

    def __init__(self, task: asyncio.Future[Verdict]):
        self.task = task
        self.waiters = 0


class VerdictCache:
    def __init__(self, max_entries: int = 100_000, enabled: bool = True):
        self.max_entries = max_entries
        self.enabled = enabled and max_entries > 0
        self.stats = CacheStats()
        self._entries: OrderedDict[str, Verdict] = OrderedDict()
        self._inflight: dict[str, _Flight] = {}

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def inflight(self) -> int:
        """Computations running now (for tests and operators)."""
        return len(self._inflight)

    async def get_or_compute(self, key: str, compute: Callable[[], Awaitable[Verdict]], *, fresh: bool = False) -> Verdict:
        """The cached verdict for `key`, else `compute()`'s. `fresh` skips the lookup (canaries and
        consistency checks must see the judge as it is now) but still refreshes the entry.

        The computation runs as its own task and every caller awaits it shielded, so a caller
        that is cancelled (a client disconnected, a trainer timed out) leaves; the computation
        goes on for the others and is cancelled only when its last waiter has left."""
        if not self.enabled:
            self.stats.misses += 1
            return await compute()
        found = None if fresh else self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
            self.stats.hits += 1
            return msgspec.structs.replace(found, cached=True)
        flight = None if fresh else self._inflight.get(key)
        joined = flight is not None
        if flight is None:
            self.stats.misses += 1
            flight = self._start(key, compute)
        else:
            self.stats.joined += 1
        flight.waiters += 1
        try:
            verdict = await asyncio.shield(flight.task)
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if flight.task.cancelled() and me is not None and not me.cancelling():
                # the computation was cancelled from outside while this caller still waited
                raise TransientJudgeError("the shared computation was cancelled before it finished") from None
            raise
        finally:
            flight.waiters -= 1
            if flight.waiters == 0 and not flight.task.done():
                flight.task.cancel()
                if self._inflight.get(key) is flight:
                    del self._inflight[key]  # a later caller starts afresh, never joins a dying task
        if joined and verdict.status == "ok":
            return msgspec.structs.replace(verdict, cached=True)
        return verdict

    def _start(self, key: str, compute: Callable[[], Awaitable[Verdict]]) -> _Flight:
        # A fresh context detaches the work from the caller that happened to start it: Ray Serve
        # cancels a disconnected request together with the Ray calls it made (found by context).
        context = contextvars.Context()
        context.run(REQUEST_DEADLINE.set, REQUEST_DEADLINE.get())  # the starter's deadline bounds the shared work
        flight = _Flight(asyncio.get_running_loop().create_task(_awaited(compute), context=context))
        self._inflight[key] = flight

        def settle(task: asyncio.Future[Verdict]) -> None:
            if self._inflight.get(key) is flight:
                del self._inflight[key]
            if task.cancelled():
                return
            if task.exception() is not None:  # also marks it retrieved when nobody waits any more
                return
            verdict = task.result()
            if verdict.status == "ok":
                self._entries[key] = verdict
                self._entries.move_to_end(key)
                if len(self._entries) > self.max_entries:
                    self._entries.popitem(last=False)

        flight.task.add_done_callback(settle)
        return flight
