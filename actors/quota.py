"""The cluster-wide quota: one named, detached actor per (model, region), handing out leases.

The actor holds a `farm.ratelimit.ModelQuota`; replicas take leases of several requests and
tokens at once (`LeasedQuotas`), so the actor is not a round trip per Bedrock call. Its methods
are synchronous, so Ray runs them one at a time: no locking needed.

It survives its own death. Every change (the newest deployment's quota and its version, the
back-off level, how far ahead slots are booked) is written to Ray's internal KV, which lives in
the GCS, and a restarted actor reads it back instead of starting from its creation arguments
with a fresh burst. Replicas map Ray's errors to the farm's retryable `JudgeUnavailableError`,
retry within the caller's deadline, and look the actor up again by name after a death. The
actor is pinned to the head node, whose life is the cluster's.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError, TaskCancelledError

from farm.config import QuotaConfig
from farm.errors import JudgeTimeoutError, JudgeUnavailableError
from farm.ratelimit import Grant, ModelQuota, Reservation, time_left, wait_turn

__all__ = ["HEAD_NODE", "NAMESPACE", "LeasedQuotas", "QuotaActor", "quota_actor", "quota_actor_name"]

NAMESPACE = "reward-farm"
HEAD_NODE = {"node:__internal_head__": 0.001}
"""The resource only the head node has: quota actors live and die with the cluster, not a worker."""

RAY_ERRORS = (RayActorError, GetTimeoutError, TaskCancelledError)
"""Ray's ways of saying the actor is dead, restarting or slow (ActorUnavailableError and
ActorDiedError are RayActorErrors)."""

_log = logging.getLogger(__name__)


def _kv_key(name: str) -> bytes:
    return f"farm-quota-state:{name}".encode()


def _kv_get(name: str) -> dict[str, Any] | None:
    from ray.experimental.internal_kv import _internal_kv_get

    raw = _internal_kv_get(_kv_key(name), namespace=NAMESPACE)
    return json.loads(raw) if raw else None


def _kv_put(name: str, state: dict[str, Any]) -> None:
    from ray.experimental.internal_kv import _internal_kv_put

    _internal_kv_put(_kv_key(name), json.dumps(state).encode(), overwrite=True, namespace=NAMESPACE)


# Retrying a task after a restart is safe for every method but `give_back`: a repeated grant
# only books a slot nobody uses (the restarted actor restored its state from the KV).
@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class QuotaActor:
    def __init__(self, config: dict[str, Any], version: float = 0.0, name: str = ""):
        self._name = name
        self._version = version
        self._quota = ModelQuota(QuotaConfig.model_validate(config))
        self._granted_requests = 0
        self._incarnation = 0
        saved = _kv_get(name) if name else None
        if saved is not None:
            self._restore(saved)
        self._save()

    def _restore(self, saved: dict[str, Any]) -> None:
        self._incarnation = int(saved.get("incarnation", 0)) + 1
        if float(saved["version"]) >= self._version:  # a newer deployment said otherwise before the restart
            self._version = float(saved["version"])
            self._quota.reconfigure(QuotaConfig.model_validate(saved["config"]))
        self._quota.restore_state(saved["quota"], max(0.0, time.time() - float(saved["saved_at"])))
        _log.warning(
            "quota actor %s restarted (incarnation %d): adopted %s", self._name, self._incarnation, self._quota.config.model_dump()
        )

    def _save(self) -> None:
        if self._name:
            state = {
                "config": self._quota.config.model_dump(),
                "version": self._version,
                "quota": self._quota.export_state(),
                "saved_at": time.time(),
                "incarnation": self._incarnation,
            }
            _kv_put(self._name, state)

    def grant(self, requests: int, tokens: int) -> Grant:
        granted = self._quota.grant(requests, tokens)
        self._granted_requests += granted.requests
        self._save()
        return granted

    def configure(self, config: dict[str, Any], version: float = 0.0) -> bool:
        """Adopt the quota of the newest deployment (highest `version`): a quota belongs to the
        AWS account, so one value holds cluster-wide, and the latest deployment states it. An
        older replica re-sending its config after a restart changes nothing."""
        if version < self._version:
            return False
        new = QuotaConfig.model_validate(config)
        old = self._quota.config
        self._version = version
        changed = self._quota.reconfigure(new)
        if changed:
            _log.warning("quota changed from %s to %s by a newer deployment", old.model_dump(), new.model_dump())
        self._save()
        return changed

    @ray.method(max_task_retries=0)
    def give_back(self, requests: int, tokens: int) -> None:
        """Return an unused lease (expired, a replica shutting down, a deadline that passed);
        negative `tokens` charge what calls used beyond their lease."""
        self._quota.tokens.give(tokens)
        if requests:
            self._quota.unused(requests)  # never sent: not admitted calls, or 429s would look like noise
        self._granted_requests -= requests
        self._save()

    def throttled(self) -> None:
        self._quota.throttled()
        self._save()

    def snapshot(self) -> dict[str, Any]:
        return {
            "scale": self._quota.scale,
            "ceiling": self._quota.export_state()["ceiling"],
            "rpm": self._quota.config.effective_rpm,
            "tpm": self._quota.config.tpm,
            "version": self._version,
            "incarnation": self._incarnation,
            "pid": os.getpid(),
            "requests_level": self._quota.requests.level,
            "tokens_level": self._quota.tokens.level,
            "throttle_events": self._quota.throttle_events,
            "granted_requests": self._granted_requests,
        }


def quota_actor_name(model: str, region: str) -> str:
    return f"quota:{model}@{region}"


def quota_actor(model: str, region: str, config: QuotaConfig, version: float = 0.0) -> Any:
    """The cluster's quota actor for (model, region), created on first use on the head node,
    and told `config` with its `version`: the newest deployment's quota wins."""
    name = quota_actor_name(model, region)
    # mypy keeps a decorated class's own type; @ray.remote made it an ActorClass, which has .options
    actor = QuotaActor.options(name=name, namespace=NAMESPACE, lifetime="detached", get_if_exists=True, resources=HEAD_NODE).remote(  # type: ignore[attr-defined]
        config.model_dump(), version, name
    )
    actor.configure.remote(config.model_dump(), version)  # ordered before this caller's grants
    return actor


@dataclass
class _Lease:
    actor: Any
    config: QuotaConfig
    requests: int = 0
    tokens: int = 0
    expires_at: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class LeasedQuotas:
    """A `QuotaBackend` that spends leases from the cluster's quota actors.

    Each lease covers `lease_s` seconds of the quota's rate (at least one request); callers of
    one replica queue first come, first served, and at most one lease request per model is in
    flight, so a replica cannot book far ahead of a rate cut. What a lease still holds after
    `expire_s` goes back to the actor, so an idle replica does not sit on the cluster's quota.
    `version` orders deployments (by default: when this replica started).
    """

    def __init__(self, quota_for: Any, lease_s: float = 0.25, *, expire_s: float = 1.0, version: float | None = None):
        self._quota_for = quota_for
        self._lease_s = lease_s
        self._expire_s = expire_s
        self.version = time.time() if version is None else version
        self._leases: dict[tuple[str, str], _Lease] = {}
        self.ray_errors = 0
        """Ray errors met talking to quota actors (each one retried)."""

    def _lease(self, model: str, region: str) -> _Lease:
        key = (model, region)
        lease = self._leases.get(key)
        if lease is None:
            config = self._quota_for(model, region)
            lease = self._leases[key] = _Lease(actor=quota_actor(model, region, config, self.version), config=config)
        return lease

    async def _grant(self, model: str, region: str, lease: _Lease, requests: int, tokens: int, deadline: float) -> Grant:
        """One grant, through actor restarts: Ray errors are retried with back-off until the
        deadline, the actor looked up again by name after each, and mapped to the farm's
        retryable `JudgeUnavailableError` if the deadline comes first."""
        delay = 0.05
        last: BaseException | None = None
        while True:
            remaining = time_left(deadline)
            if remaining is not None and remaining <= 0:
                break
            pending = asyncio.ensure_future(_awaitable(lease.actor.grant.remote(requests, tokens)))
            try:
                return await asyncio.wait_for(asyncio.shield(pending), remaining)
            except TimeoutError:
                self._return_when_granted(lease, pending)
                break
            except asyncio.CancelledError:
                self._return_when_granted(lease, pending)  # the actor still books it: hand it back
                raise
            except RAY_ERRORS as exc:
                last = exc
                self.ray_errors += 1
                _log.warning("quota actor for %s in %s: %s; retrying", model, region, type(exc).__name__)
                await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))  # inf - now stays inf
                delay = min(1.0, delay * 2)
                try:
                    lease.actor = quota_actor(model, region, lease.config, self.version)  # by name; re-sends our config
                except Exception as lookup:  # noqa: BLE001 - the GCS may be busy too; the next round retries
                    last = lookup
        reason = f"{type(last).__name__}: {str(last)[:200]}" if last else "no answer"
        raise JudgeUnavailableError(f"cluster quota for {model} in {region} unavailable before the deadline ({reason})")

    async def acquire(self, model: str, region: str, tokens: int, deadline: float) -> Reservation:
        lease = self._lease(model, region)
        late = JudgeTimeoutError(f"cluster quota for {model} in {region} would not admit the call before its deadline")
        await wait_turn(lease.lock, deadline, late)
        try:
            self._expire(lease)
            while lease.requests < 1 or lease.tokens < tokens:
                want_requests = max(1, round(lease.config.effective_rpm / 60.0 * self._lease_s)) if lease.requests < 1 else 0
                want_tokens = max(tokens - lease.tokens, round(lease.config.tpm / 60.0 * self._lease_s)) if lease.tokens < tokens else 0
                grant = await self._grant(model, region, lease, want_requests, want_tokens, deadline)
                if time.monotonic() + grant.wait_s > deadline:
                    self._give_back(lease, grant.requests, grant.tokens)
                    raise late
                if grant.wait_s > 0:
                    try:
                        await asyncio.sleep(grant.wait_s)
                    except asyncio.CancelledError:
                        self._give_back(lease, grant.requests, grant.tokens)
                        raise
                lease.requests += grant.requests
                lease.tokens += grant.tokens
                lease.expires_at = time.monotonic() + self._expire_s
            lease.requests -= 1
            lease.tokens -= tokens
        finally:
            lease.lock.release()
        return Reservation(tokens=tokens, wait_s=0.0)

    def _return_when_granted(self, lease: _Lease, pending: asyncio.Future[Grant]) -> None:
        """A grant whose caller stopped waiting (deadline, cancellation) is still booked by the
        actor: return it when it arrives, or the cluster's quota leaks a lease each time."""

        def settle(done: asyncio.Future[Grant]) -> None:
            if done.cancelled() or done.exception() is not None:  # also marks the error retrieved
                return
            grant = done.result()
            self._give_back(lease, grant.requests, grant.tokens)

        pending.add_done_callback(settle)

    def _expire(self, lease: _Lease) -> None:
        if (lease.requests > 0 or lease.tokens != 0) and time.monotonic() > lease.expires_at:
            self._give_back(lease, max(0, lease.requests), lease.tokens)  # tokens used beyond the lease are charged
            lease.requests = lease.tokens = 0

    @staticmethod
    def _give_back(lease: _Lease, requests: int, tokens: int) -> None:
        if requests > 0 or tokens != 0:
            try:
                lease.actor.give_back.remote(requests, tokens)  # fire and forget: a dead actor restores from the KV
            except Exception:  # noqa: BLE001 - returning is best effort; losing it only under-uses the quota
                _log.debug("could not return a lease", exc_info=True)

    def cancel(self, model: str, region: str, reservation: Reservation, *, refund_request: bool) -> None:
        lease = self._lease(model, region)
        lease.tokens += reservation.tokens
        if refund_request:
            lease.requests += 1

    def settle(self, model: str, region: str, reservation: Reservation, used_tokens: int) -> None:
        self._lease(model, region).tokens += reservation.tokens - used_tokens

    def throttled(self, model: str, region: str) -> None:
        try:
            self._lease(model, region).actor.throttled.remote()
        except Exception:  # noqa: BLE001 - a restarting actor misses one report; the next 429 is reported again
            self.ray_errors += 1

    def release_all(self) -> None:
        """Hand unused leases back (called when a replica shuts down)."""
        for lease in self._leases.values():
            self._give_back(lease, max(0, lease.requests), lease.tokens)
            lease.requests = lease.tokens = 0


async def _awaitable(ref: Any) -> Any:
    return await ref
