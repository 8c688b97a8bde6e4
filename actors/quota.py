"""The cluster-wide quota: one named, detached actor per (model, region), handing out leases.

The actor holds a `farm.ratelimit.ModelQuota`; replicas take leases of several requests and
tokens at once (`LeasedQuotas`), so the actor is not a round trip per Bedrock call. Its methods
are synchronous, so Ray runs them one at a time: no locking needed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import ray

from farm.config import QuotaConfig
from farm.errors import JudgeTimeoutError
from farm.ratelimit import Grant, ModelQuota, Reservation

__all__ = ["NAMESPACE", "LeasedQuotas", "QuotaActor", "quota_actor", "quota_actor_name"]

NAMESPACE = "reward-farm"


@ray.remote(num_cpus=0, max_restarts=-1)
class QuotaActor:
    def __init__(self, config: dict[str, Any]):
        self._quota = ModelQuota(QuotaConfig.model_validate(config))
        self._granted_requests = 0

    def grant(self, requests: int, tokens: int, returned_tokens: int = 0) -> Grant:
        if returned_tokens:
            self._quota.tokens.give(returned_tokens)
        self._granted_requests += requests
        return self._quota.grant(requests, tokens)

    def configure(self, config: dict[str, Any]) -> bool:
        """Adopt the quota the newest replica was configured with: a quota belongs to the AWS
        account, so one value holds cluster-wide, and the latest deployment states it."""
        new = QuotaConfig.model_validate(config)
        old = self._quota.config
        changed = self._quota.reconfigure(new)
        if changed:
            logging.getLogger(__name__).warning("quota changed from %s to %s by a newer deployment", old.model_dump(), new.model_dump())
        return changed

    def give_back(self, requests: int, tokens: int) -> None:
        """Return an unused lease (a replica shutting down, a deadline that passed)."""
        self._quota.tokens.give(tokens)
        self._quota.requests.give(requests)
        self._granted_requests -= requests

    def throttled(self) -> None:
        self._quota.throttled()

    def snapshot(self) -> dict[str, float]:
        return {
            "scale": self._quota.scale,
            "requests_level": self._quota.requests.level,
            "tokens_level": self._quota.tokens.level,
            "throttle_events": self._quota.throttle_events,
            "granted_requests": self._granted_requests,
        }


def quota_actor_name(model: str, region: str) -> str:
    return f"quota:{model}@{region}"


def quota_actor(model: str, region: str, config: QuotaConfig) -> Any:
    """The cluster's quota actor for (model, region), created on first use, and told `config`:
    an actor left by an earlier deployment adopts the quota this one declares."""
    actor = QuotaActor.options(name=quota_actor_name(model, region), namespace=NAMESPACE, lifetime="detached", get_if_exists=True).remote(
        config.model_dump()
    )
    actor.configure.remote(config.model_dump())  # ordered before this caller's grants
    return actor


@dataclass
class _Lease:
    actor: Any
    config: QuotaConfig
    requests: int = 0
    tokens: int = 0
    lock: asyncio.Lock | None = None


class LeasedQuotas:
    """A `QuotaBackend` that spends leases from the cluster's quota actors.

    Each lease covers `lease_s` seconds of the quota's rate (at least one request); callers of
    one replica queue first come, first served, and at most one lease request per model is in
    flight, so a replica cannot book far ahead of a rate cut.
    """

    def __init__(self, quota_for: Any, lease_s: float = 0.25):
        self._quota_for = quota_for
        self._lease_s = lease_s
        self._leases: dict[tuple[str, str], _Lease] = {}

    def _lease(self, model: str, region: str) -> _Lease:
        key = (model, region)
        lease = self._leases.get(key)
        if lease is None:
            config = self._quota_for(model, region)
            lease = self._leases[key] = _Lease(actor=quota_actor(model, region, config), config=config, lock=asyncio.Lock())
        return lease

    async def acquire(self, model: str, region: str, tokens: int, deadline: float) -> Reservation:
        lease = self._lease(model, region)
        assert lease.lock is not None
        late = JudgeTimeoutError(f"cluster quota for {model} in {region} would not admit the call before its deadline")
        try:
            await asyncio.wait_for(lease.lock.acquire(), max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            raise late from None
        try:
            while lease.requests < 1 or lease.tokens < tokens:
                want_requests = max(1, round(lease.config.rpm / 60.0 * self._lease_s)) if lease.requests < 1 else 0
                want_tokens = max(tokens - lease.tokens, round(lease.config.tpm / 60.0 * self._lease_s)) if lease.tokens < tokens else 0
                grant: Grant = await lease.actor.grant.remote(want_requests, want_tokens)
                if time.monotonic() + grant.wait_s > deadline:
                    lease.actor.give_back.remote(grant.requests, grant.tokens)
                    raise late
                if grant.wait_s > 0:
                    await asyncio.sleep(grant.wait_s)
                lease.requests += grant.requests
                lease.tokens += grant.tokens
            lease.requests -= 1
            lease.tokens -= tokens
        finally:
            lease.lock.release()
        return Reservation(tokens=tokens, wait_s=0.0)

    def cancel(self, model: str, region: str, reservation: Reservation, *, refund_request: bool) -> None:
        lease = self._lease(model, region)
        lease.tokens += reservation.tokens
        if refund_request:
            lease.requests += 1

    def settle(self, model: str, region: str, reservation: Reservation, used_tokens: int) -> None:
        self._lease(model, region).tokens += reservation.tokens - used_tokens

    def throttled(self, model: str, region: str) -> None:
        self._lease(model, region).actor.throttled.remote()

    def release_all(self) -> None:
        """Hand unused leases back (called when a replica shuts down)."""
        for lease in self._leases.values():
            if lease.requests > 0 or lease.tokens > 0:
                lease.actor.give_back.remote(max(0, lease.requests), max(0, lease.tokens))
                lease.requests = lease.tokens = 0
