"""Client-side quotas: token buckets on requests/min and tokens/min, with AIMD on throttling.

The bucket runs "in debt": a caller reserves at once and is told how long to wait, so callers
are served first come first served without a queue, a lock or a polling loop. Tokens are
reserved at request start (input estimate + `maxTokens`) and corrected from `usage` when the
answer arrives. A 429 halves the admitted rate (at most once per cool-down); the rate then
recovers linearly, so throttling becomes rarer instead of turning into a retry storm.

`ModelQuota` is a plain object with no I/O: the cluster-wide quota actor holds the same object
and hands out leases (`grant`), so one process or many share one budget.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from farm.config import QuotaConfig
from farm.errors import JudgeTimeoutError

__all__ = ["Grant", "ModelQuota", "QuotaBackend", "QuotaRegistry", "Reservation", "TokenBucket", "wait_turn"]

Clock = Callable[[], float]


class TokenBucket:
    """A bucket of `capacity` refilled at `rate` per second that may go into debt."""

    def __init__(self, rate: float, capacity: float, clock: Clock = time.monotonic):
        if rate <= 0 or capacity <= 0:
            raise ValueError("rate and capacity must be positive")
        self.rate = rate
        self.capacity = capacity
        self._clock = clock
        self._level = capacity
        self._stamp = clock()

    @property
    def level(self) -> float:
        self._refill()
        return self._level

    def wait_for(self, amount: float) -> float:
        """Seconds until `amount` could be taken, without taking it."""
        self._refill()
        return max(0.0, (amount - self._level) / self.rate)

    def take(self, amount: float) -> float:
        """Take `amount` now and return the seconds the caller must wait before using it."""
        self._refill()
        self._level -= amount
        return max(0.0, -self._level / self.rate)

    def give(self, amount: float) -> None:
        """Return (positive) or charge (negative) an amount, e.g. after a usage correction."""
        self._refill()
        self._level = min(self.capacity, self._level + amount)

    def set_rate(self, rate: float) -> None:
        self._refill()
        self.rate = rate

    def resize(self, rate: float, capacity: float) -> None:
        """New rate and depth; the level carries over, clipped to the new depth (debt is kept)."""
        self._refill()
        self.rate, self.capacity = rate, capacity
        self._level = min(self._level, capacity)

    def _refill(self) -> None:
        now = self._clock()
        elapsed = now - self._stamp
        if elapsed > 0:
            self._level = min(self.capacity, self._level + elapsed * self.rate)
            self._stamp = now


@dataclass(frozen=True)
class Reservation:
    """What one call took from the quota; settle it with the real usage."""

    tokens: int
    wait_s: float


@dataclass(frozen=True)
class Grant:
    """A lease of requests and tokens handed to a replica by the cluster's quota holder."""

    requests: int
    tokens: int
    wait_s: float


class ModelQuota:
    """RPM and TPM buckets for one (model, region), with additive-increase/multiplicative-decrease."""

    def __init__(
        self,
        config: QuotaConfig,
        *,
        clock: Clock = time.monotonic,
        decrease_factor: float = 0.5,
        min_scale: float = 0.05,
        recovery_s: float = 20.0,
        cooldown_s: float = 2.0,
    ):
        self.config = config
        self._clock = clock
        self._decrease = decrease_factor
        self._min_scale = min_scale
        self._recovery_per_s = (1.0 - min_scale) / recovery_s
        self._cooldown_s = cooldown_s
        self._scale = 1.0
        self._scale_stamp = clock()
        self._last_decrease = float("-inf")
        rps, tps = config.rpm / 60.0, config.tpm / 60.0
        self.requests = TokenBucket(rps, max(1.0, rps * config.burst_s), clock)
        self.tokens = TokenBucket(tps, max(1.0, tps * config.burst_s), clock)
        self.throttle_events = 0

    @property
    def scale(self) -> float:
        """The share of the configured rate admitted now (1.0 unless recently throttled)."""
        self._recover()
        return self._scale

    def reserve(self, tokens: int) -> Reservation:
        """Take one request and `tokens` now; the caller sleeps `wait_s` before sending."""
        self._recover()
        tokens = min(tokens, int(self.tokens.capacity))
        wait = max(self.requests.take(1), self.tokens.take(tokens))
        return Reservation(tokens=tokens, wait_s=wait)

    def wait_for(self, tokens: int) -> float:
        self._recover()
        tokens = min(tokens, int(self.tokens.capacity))
        return max(self.requests.wait_for(1), self.tokens.wait_for(tokens))

    def cancel(self, reservation: Reservation, *, refund_request: bool) -> None:
        """Give back a reservation that was never used (deadline, cancellation, throttled)."""
        self.tokens.give(reservation.tokens)
        if refund_request:
            self.requests.give(1)

    def settle(self, reservation: Reservation, used_tokens: int) -> None:
        """Correct the token reservation with what the model really used."""
        self.tokens.give(reservation.tokens - used_tokens)

    def grant(self, requests: int, tokens: int) -> Grant:
        """Hand out a lease of several requests and tokens at once (for the quota actor), capped
        at the buckets' depth as `reserve` is, so one lease can never outrun a whole burst."""
        self._recover()
        requests = min(requests, max(1, int(self.requests.capacity)))
        tokens = min(tokens, int(self.tokens.capacity))
        wait = max(self.requests.take(requests), self.tokens.take(tokens))
        return Grant(requests=requests, tokens=tokens, wait_s=wait)

    def export_state(self) -> dict[str, float]:
        """What a restarted holder needs to carry on: the back-off level and how far ahead slots
        are already booked (seconds of debt), so a restart hands out neither a fresh burst nor
        slots that were already granted."""
        self._recover()
        return {
            "scale": self._scale,
            "requests_booked_s": max(0.0, -self.requests.level / self.requests.rate),
            "tokens_booked_s": max(0.0, -self.tokens.level / self.tokens.rate),
        }

    def restore_state(self, state: dict[str, float], elapsed_s: float) -> None:
        """Adopt `export_state()` taken `elapsed_s` ago: the back-off recovers for the time that
        passed, and both buckets start empty (or still in debt), never full."""
        self._last_decrease = self._clock()  # the cut is recent: no second cut within the cool-down
        self._scale_stamp = self._clock()
        scale = float(state.get("scale", 1.0)) + max(0.0, elapsed_s - self._cooldown_s) * self._recovery_per_s
        self._set_scale(min(1.0, max(self._min_scale, scale)))
        for bucket, key in ((self.requests, "requests_booked_s"), (self.tokens, "tokens_booked_s")):
            booked = max(0.0, float(state.get(key, 0.0)) - elapsed_s)
            bucket.take(bucket.level + booked * bucket.rate)

    def reconfigure(self, config: QuotaConfig) -> bool:
        """Adopt a new quota in place, keeping bucket levels and the AIMD state, so a change
        never hands out a fresh burst. Returns whether anything changed."""
        if config == self.config:
            return False
        self._recover()
        self.config = config
        rps, tps = config.rpm / 60.0, config.tpm / 60.0
        self.requests.resize(rps * self._scale, max(1.0, rps * config.burst_s))
        self.tokens.resize(tps * self._scale, max(1.0, tps * config.burst_s))
        return True

    def throttled(self) -> None:
        """The service answered 429: cut the admitted rate, at most once per cool-down."""
        self.throttle_events += 1
        now = self._clock()
        self._recover()
        if now - self._last_decrease < self._cooldown_s:
            return
        self._last_decrease = now
        self._set_scale(max(self._min_scale, self._scale * self._decrease))

    def _recover(self) -> None:
        now = self._clock()
        since = max(self._scale_stamp, self._last_decrease + self._cooldown_s)
        self._scale_stamp = now
        if self._scale < 1.0 and now > since:
            self._set_scale(min(1.0, self._scale + (now - since) * self._recovery_per_s))

    def _set_scale(self, scale: float) -> None:
        self._scale = scale
        self.requests.set_rate(self.config.rpm / 60.0 * scale)
        self.tokens.set_rate(self.config.tpm / 60.0 * scale)


async def wait_turn(queue: asyncio.Lock, deadline: float, late: Exception, clock: Clock = time.monotonic) -> None:
    """Take `queue` (first come, first served) or raise `late` if the deadline passes first."""
    try:
        await asyncio.wait_for(queue.acquire(), max(0.0, deadline - clock()))
    except TimeoutError:
        raise late from None


class QuotaBackend(Protocol):
    """Where a client's quota lives: this process (`QuotaRegistry`) or the cluster (the quota actor)."""

    async def acquire(self, model: str, region: str, tokens: int, deadline: float) -> Reservation: ...

    def cancel(self, model: str, region: str, reservation: Reservation, *, refund_request: bool) -> None: ...

    def settle(self, model: str, region: str, reservation: Reservation, used_tokens: int) -> None: ...

    def throttled(self, model: str, region: str) -> None: ...


class QuotaRegistry:
    """The quotas of one process, one per (model, region), created on first use.

    Callers queue first come, first served. The head of the queue books its slot only when
    the slot is at most `horizon_s` away, so when a 429 cuts the rate, at most `horizon_s` of
    traffic is still scheduled at the old rate instead of every queued caller.
    """

    def __init__(self, quota_for: Callable[[str, str], QuotaConfig], clock: Clock = time.monotonic, horizon_s: float = 0.5):
        self._quota_for = quota_for
        self._clock = clock
        self._horizon_s = horizon_s
        self._quotas: dict[tuple[str, str], ModelQuota] = {}
        self._queues: dict[tuple[str, str], asyncio.Lock] = {}

    def get(self, model: str, region: str) -> ModelQuota:
        key = (model, region)
        quota = self._quotas.get(key)
        if quota is None:
            quota = self._quotas[key] = ModelQuota(self._quota_for(model, region), clock=self._clock)
            self._queues[key] = asyncio.Lock()
        return quota

    def cancel(self, model: str, region: str, reservation: Reservation, *, refund_request: bool) -> None:
        self.get(model, region).cancel(reservation, refund_request=refund_request)

    def settle(self, model: str, region: str, reservation: Reservation, used_tokens: int) -> None:
        self.get(model, region).settle(reservation, used_tokens)

    def throttled(self, model: str, region: str) -> None:
        self.get(model, region).throttled()

    async def acquire(self, model: str, region: str, tokens: int, deadline: float) -> Reservation:
        """Wait for a slot in turn and until the call may go out; raise if that would pass `deadline`."""
        quota = self.get(model, region)
        queue = self._queues[(model, region)]
        late = JudgeTimeoutError(f"quota for {model} in {region} would not admit the call before its deadline")
        try:
            await asyncio.wait_for(queue.acquire(), max(0.0, deadline - self._clock()))
        except TimeoutError:
            raise late from None
        try:
            while True:
                wait = quota.wait_for(tokens)
                if self._clock() + wait > deadline:
                    raise late
                if wait <= self._horizon_s:
                    break
                await asyncio.sleep(wait - self._horizon_s / 2)
            reservation = quota.reserve(tokens)
        finally:
            queue.release()
        if reservation.wait_s > 0:
            try:
                await asyncio.sleep(reservation.wait_s)
            except asyncio.CancelledError:
                quota.cancel(reservation, refund_request=True)
                raise
        return reservation
