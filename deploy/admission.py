"""Admission control at the ingress: refuse at once the work the quota cannot serve in time.

A request needs a known number of Bedrock calls per model (one per rollout for a rubric judge;
the capped comparisons, both orders, for a preference judge). Work already admitted holds its
calls until it finishes. If the backlog plus this request would take the quota longer than the
judges' deadline, the request is refused with HTTP 503 and a Retry-After that says when the
backlog will have drained enough, instead of being accepted and answered with partial rewards.
The rate is the quota actor's learned rate (configured quota times its ceiling), so a quota
learned lower than configured also admits less.
"""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from farm.config import FarmConfig, PreferenceJudgeConfig, RubricJudgeConfig
from farm.judges import needs_bedrock
from farm.judges.preference import opponent_pairs
from farm.wire import Rollout

__all__ = ["Admission", "Refused", "Ticket", "calls_needed"]

_Key = tuple[str, str]


class Refused(Exception):
    """The request cannot be served before its deadline; `status` 503 (try later) or 413 (never)."""

    def __init__(self, status: int, message: str, retry_after_s: int | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Ticket:
    calls: dict[_Key, int]


def calls_needed(config: FarmConfig, rollouts: Sequence[Rollout]) -> dict[_Key, int]:
    """Bedrock calls per (model, region) that scoring `rollouts` takes, before any cache hit."""
    needed: Counter[_Key] = Counter()
    groups: dict[str, int] = defaultdict(int)
    for rollout in rollouts:
        if rollout.group is not None:
            groups[rollout.group] += 1
    for judge in config.judges:
        if not needs_bedrock(judge):
            continue
        key = (judge.model, judge.region or config.bedrock.region)  # type: ignore[union-attr]
        if isinstance(judge, RubricJudgeConfig):
            needed[key] += len(rollouts)
        elif isinstance(judge, PreferenceJudgeConfig):
            for rollout in rollouts:
                grouped = rollout.group is not None and groups[rollout.group] >= 2 and judge.mode != "reference"
                if not grouped and judge.mode != "group" and rollout.reference is not None:
                    needed[key] += 2
            if judge.mode != "reference":
                needed[key] += sum(2 * len(opponent_pairs(n, judge.max_comparisons)) for n in groups.values() if n >= 2)
    return dict(needed)


class Admission:
    def __init__(self, config: FarmConfig, *, headroom: float = 0.8, refresh_s: float = 2.0):
        self.config = config
        self.headroom = headroom
        self.refresh_s = refresh_s
        self.in_flight: Counter[_Key] = Counter()
        self._rates: dict[_Key, tuple[float, float]] = {}
        self._budget: dict[_Key, float] = {}
        for judge in config.judges:
            if needs_bedrock(judge):
                key = (judge.model, judge.region or config.bedrock.region)  # type: ignore[union-attr]
                self._budget[key] = min(self._budget.get(key, math.inf), judge.deadline_s * headroom)

    async def admit(self, rollouts: Sequence[Rollout]) -> Ticket:
        if not self.config.serve.admission:
            return Ticket({})
        needed = calls_needed(self.config, rollouts)
        # Read every rate first: no await may come between the check and booking the calls, or
        # requests arriving together would all be checked against the same backlog.
        rates = {key: await self.rate(*key) for key in needed}
        for key, calls in needed.items():
            rate = rates[key]
            budget = self._budget[key]
            if calls / rate > budget:
                raise Refused(
                    413,
                    f"this request needs {calls} calls of {key[0]}, more than its quota serves within the judges' "
                    f"deadline ({rate * budget:.0f} at {rate * 60:.0f} requests/min); split the batch",
                )
            wait = (self.in_flight[key] + calls) / rate - budget
            if wait > 0:
                raise Refused(
                    503,
                    f"the quota of {key[0]} is booked: {self.in_flight[key]} calls admitted ahead of this request's {calls} "
                    f"at {rate * 60:.0f} requests/min would not finish within the deadline; retry after {math.ceil(wait)}s",
                    retry_after_s=max(1, math.ceil(wait)),
                )
        self.in_flight.update(needed)
        return Ticket(needed)

    def release(self, ticket: Ticket) -> None:
        self.in_flight.subtract(ticket.calls)

    async def rate(self, model: str, region: str) -> float:
        """Calls per second the quota serves: the quota actor's learned rate, read at most every
        `refresh_s`, else the configured quota."""
        key = (model, region)
        cached = self._rates.get(key)
        now = time.monotonic()
        if cached is not None and now - cached[1] < self.refresh_s:
            return cached[0]
        rate = self.config.quota_for(model, region).effective_rpm / 60.0
        snapshot = await _snapshot(model, region)
        if snapshot is not None:
            rate = float(snapshot["rpm"]) / 60.0 * float(snapshot.get("ceiling", 1.0))
        self._rates[key] = (rate, now)
        return rate


async def _snapshot(model: str, region: str) -> dict[str, Any] | None:
    import asyncio

    import ray

    from actors.quota import NAMESPACE, quota_actor_name

    try:
        # `get_actor` is a blocking GCS call: off the ingress loop, and bounded like the snapshot
        actor = await asyncio.wait_for(asyncio.to_thread(ray.get_actor, quota_actor_name(model, region), namespace=NAMESPACE), 0.5)
        return await asyncio.wait_for(_awaited(actor.snapshot.remote()), 0.5)
    except Exception:  # noqa: BLE001 - no actor yet, or busy: the configured quota stands in
        return None


async def _awaited(ref: Any) -> Any:
    return await ref
