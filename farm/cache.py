"""A content-addressed verdict cache with single flight.

Keys hash the judge's configuration with the content judged, so a changed rubric never reads
an old verdict. Concurrent requests for one key share one computation (duplicate rollouts
inside a request are scored once); only successful verdicts are stored, so a failure is
retried next time instead of being remembered.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import msgspec

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


class VerdictCache:
    def __init__(self, max_entries: int = 100_000, enabled: bool = True):
        self.max_entries = max_entries
        self.enabled = enabled and max_entries > 0
        self.stats = CacheStats()
        self._entries: OrderedDict[str, Verdict] = OrderedDict()
        self._inflight: dict[str, asyncio.Future[Verdict]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    async def get_or_compute(self, key: str, compute: Callable[[], Awaitable[Verdict]], *, fresh: bool = False) -> Verdict:
        """The cached verdict for `key`, else `compute()`'s. `fresh` skips the lookup (canaries and
        consistency checks must see the judge as it is now) but still refreshes the entry."""
        if not self.enabled:
            self.stats.misses += 1
            return await compute()
        found = None if fresh else self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
            self.stats.hits += 1
            return msgspec.structs.replace(found, cached=True)
        pending = None if fresh else self._inflight.get(key)
        if pending is not None:
            self.stats.joined += 1
            verdict = await asyncio.shield(pending)
            return msgspec.structs.replace(verdict, cached=True) if verdict.status == "ok" else verdict
        self.stats.misses += 1
        future: asyncio.Future[Verdict] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            verdict = await compute()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: joiners re-raise it, nobody else must
            raise
        finally:
            self._inflight.pop(key, None)
        future.set_result(verdict)
        if verdict.status == "ok":
            self._entries[key] = verdict
            if len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return verdict
