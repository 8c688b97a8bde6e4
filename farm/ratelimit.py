"""Client-side quotas: token buckets on requests/min and tokens/min, and a limiter on throttling.

The bucket runs "in debt": a caller reserves at once and is told how long to wait, so callers
are served first come first served without a queue, a lock or a polling loop. Tokens are
reserved at request start (input estimate + `maxTokens`) and corrected from `usage` when the
answer arrives. Sporadic 429s are noise and change nothing; a 429 rate above a threshold over a
window is overload and cuts the admitted rate to what the service was seen to serve, which then
recovers toward the configured rate, so throttling becomes rarer instead of a retry storm.

`ModelQuota` is a plain object with no I/O: the cluster-wide quota actor holds the same object
and hands out leases (`grant`), so one process or many share one budget.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from farm.config import QuotaConfig
from farm.errors import JudgeTimeoutError

__all__ = ["Grant", "ModelQuota", "QuotaBackend", "QuotaRegistry", "Reservation", "TokenBucket", "time_left", "wait_turn"]

Clock = Callable[[], float]

_CATCH_UP_PER_S = 2 * math.log(2)
_SLOW_START = 0.1
_PROBE_DOUBLING_S = 20.0
_LEAST_CUT = 0.9
"""Near the real quota, a cut steps this far below the rate that drew the 429s."""
_FAR_BELOW = 0.45
"""A service that served less than this share of the admitted rate is far below it: learn it in one step."""
_BELOW_LEARNED = 0.95
"""After a cut, run at this share of the rate the service was seen to serve."""
_MAX_GROWTH = 50.0
"""Cap on growth exponents: e^50 takes any scale from the floor to 1.0 without overflowing."""


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
    """RPM and TPM buckets for one (model, region), with a limiter that tells noise from overload.

    A 429 now and then (a model warming up, a shared endpoint's hiccup) changes nothing: the
    admitted rate is cut only when 429s exceed `noise_share` of the calls admitted in the last
    `window_s` (and number at least `min_throttles`). A cut goes at once to what the service
    really let through in that window, so a quota far below the configured one is learned in a
    step or two, and cuts by at least `decrease_factor`. The rate then climbs back quickly to
    that learned level and probes above it ever faster (doubling speed every 20 quiet seconds),
    so it reaches the configured rate about `recovery_s` (3 min from the floor) after throttling stops.
    """

    def __init__(
        self,
        config: QuotaConfig,
        *,
        clock: Clock = time.monotonic,
        decrease_factor: float = 0.7,
        min_scale: float = 0.01,
        recovery_s: float = 180.0,
        cooldown_s: float = 2.0,
        window_s: float = 10.0,
        min_throttles: int = 3,
        noise_share: float = 0.1,
        slow_start: bool = True,
    ):
        self.config = config
        self._clock = clock
        self._decrease = decrease_factor
        self._min_scale = min_scale
        self._cooldown_s = cooldown_s
        self._window_s = window_s
        self._min_throttles = min_throttles
        self._noise_share = noise_share
        # probe speed p with doubling period T reaches 1 from min_scale in recovery_s: p·T/ln2·(2^(R/T) − 1) = ln(1/min)
        self._probe_per_s = math.log(1.0 / min_scale) * math.log(2) / (_PROBE_DOUBLING_S * (2 ** (recovery_s / _PROBE_DOUBLING_S) - 1))
        self._scale = 1.0
        self._ceiling = 1.0
        self._scale_stamp = clock()
        self._last_decrease = float("-inf")
        self._window_start = clock()
        self._admitted: deque[tuple[float, int]] = deque()
        self._throttles: deque[float] = deque()
        self._settled: deque[float] = deque()
        rps, tps = config.effective_rpm / 60.0, config.tpm / 60.0
        self.requests = TokenBucket(rps, max(1.0, rps * config.burst_s), clock)
        self.tokens = TokenBucket(tps, max(1.0, tps * config.burst_s), clock)
        self.throttle_events = 0
        self.cuts = 0
        """Times the admitted rate was cut (overload seen), as opposed to 429s ignored as noise."""
        if slow_start:  # a tenth of the quota (at least a request a second), doubling every 0.5 s until a 429 says stop
            self._set_scale(min(1.0, max(min_scale, _SLOW_START, 1.0 / rps)))

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
        self._record(self._admitted, (self._clock(), 1))
        return Reservation(tokens=tokens, wait_s=wait)

    def wait_for(self, tokens: int) -> float:
        self._recover()
        tokens = min(tokens, int(self.tokens.capacity))
        return max(self.requests.wait_for(1), self.tokens.wait_for(tokens))

    def cancel(self, reservation: Reservation, *, refund_request: bool) -> None:
        """Give back a reservation that was never used (deadline, cancellation, throttled)."""
        self.tokens.give(reservation.tokens)
        if refund_request:
            self.unused(1)

    def unused(self, requests: int) -> None:
        """Requests taken but never sent go back, and do not count as admitted calls."""
        self.requests.give(requests)
        self._record(self._admitted, (self._clock(), -requests))

    def settle(self, reservation: Reservation, used_tokens: int) -> None:
        """Correct the token reservation with what the model really used (and count the answer)."""
        self.tokens.give(reservation.tokens - used_tokens)
        self._record(self._settled, self._clock())

    def grant(self, requests: int, tokens: int) -> Grant:
        """Hand out a lease of several requests and tokens at once (for the quota actor), capped
        at the buckets' depth as `reserve` is, so one lease can never outrun a whole burst."""
        self._recover()
        requests = min(requests, max(1, int(self.requests.capacity)))
        tokens = min(tokens, int(self.tokens.capacity))
        wait = max(self.requests.take(requests), self.tokens.take(tokens))
        if requests:
            self._record(self._admitted, (self._clock(), requests))
        return Grant(requests=requests, tokens=tokens, wait_s=wait)

    def export_state(self) -> dict[str, float]:
        """What a restarted holder needs to carry on: the back-off level and how far ahead slots
        are already booked (seconds of debt), so a restart hands out neither a fresh burst nor
        slots that were already granted."""
        self._recover()
        return {
            "scale": self._scale,
            "ceiling": self._ceiling,
            "requests_booked_s": max(0.0, -self.requests.level / self.requests.rate),
            "tokens_booked_s": max(0.0, -self.tokens.level / self.tokens.rate),
        }

    def restore_state(self, state: dict[str, float], elapsed_s: float) -> None:
        """Adopt `export_state()` taken `elapsed_s` ago: the back-off level and the learned
        ceiling carry over (recovery resumes now), and both buckets start empty or still in
        debt, never full."""
        now = self._clock()
        self._last_decrease = now - self._cooldown_s  # recovery resumes at once, a new cut needs new evidence
        self._scale_stamp = now
        self._window_start = now
        self._ceiling = min(1.0, max(self._min_scale, float(state.get("ceiling", 1.0))))
        self._set_scale(min(1.0, max(self._min_scale, float(state.get("scale", 1.0)))))
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
        rps, tps = config.effective_rpm / 60.0, config.tpm / 60.0
        self.requests.resize(rps * self._scale, max(1.0, rps * self._scale * config.burst_s))
        self.tokens.resize(tps * self._scale, max(1.0, tps * config.burst_s))
        return True

    def throttled(self) -> None:
        """The service answered 429. Noise is counted; overload (429s above `noise_share` of the
        window's calls) cuts the admitted rate to what the service let through, at most once per
        cool-down."""
        self.throttle_events += 1
        now = self._clock()
        self._recover()
        self._throttles.append(now)
        self._prune(now)
        if now - self._last_decrease < self._cooldown_s:
            return
        # The trigger counts only what happened since the last cut, so one episode cuts once.
        throttles = sum(1 for t in self._throttles if t >= self._last_decrease)
        admitted = sum(n for t, n in self._admitted if t >= self._last_decrease)
        if throttles < self._min_throttles or throttles <= self._noise_share * admitted:
            return
        # Since the window's first 429 the service was saturated: what got through since then is
        # what it serves (the window as a whole would include time this limiter sent less).
        first = self._throttles[0]
        span = max(1.0, now - first)
        if self._settled:  # answers counted where they arrive (this process holds the quota)
            succeeded = sum(1 for t in self._settled if t >= first)
        else:  # the quota actor sees grants and 429s only
            succeeded = max(0, sum(n for t, n in self._admitted if t >= first) - len(self._throttles))
        served = succeeded / span / (self.config.effective_rpm / 60.0)
        if succeeded >= 2 and served < self._scale * _FAR_BELOW:  # far below what was admitted: go there at once
            new = max(self._min_scale, served * _BELOW_LEARNED)
        elif succeeded >= 2 or self.cuts:  # near the real quota: step just below the rate that drew the 429s
            new = max(self._min_scale, self._scale * _LEAST_CUT)
        else:  # nothing measured yet: a plain multiplicative cut
            new = max(self._min_scale, self._scale * self._decrease)
        self._ceiling = new
        self._last_decrease = now
        self.cuts += 1
        self._set_scale(new)

    def _record(self, history: deque[Any], entry: Any) -> None:
        """Append to a window's history, pruning as it goes: a quota that never sees a 429 (days
        of calls) must not keep every call it ever admitted."""
        history.append(entry)
        if len(history) % 256 == 0:
            self._prune(self._clock())

    def _prune(self, now: float) -> None:
        horizon = now - self._window_s
        while self._admitted and self._admitted[0][0] < horizon:
            self._admitted.popleft()
        while self._throttles and self._throttles[0] < horizon:
            self._throttles.popleft()
        while self._settled and self._settled[0] < horizon:
            self._settled.popleft()
        self._window_start = max(self._window_start, horizon)

    def _recover(self) -> None:
        now = self._clock()
        since = max(self._scale_stamp, self._last_decrease + self._cooldown_s)
        self._scale_stamp = now
        if self._scale >= 1.0 or now <= since:
            return
        elapsed, scale = now - since, self._scale
        # Exponents are capped: after a long idle spell exp() would overflow (and fail every call after it).
        if scale < self._ceiling:  # back to the level the service last let through (or slow start): doubles every 0.5 s
            scale = min(self._ceiling, scale * math.exp(min(_MAX_GROWTH, _CATCH_UP_PER_S * elapsed)))
        else:  # probe above it, faster the longer nothing was throttled
            quiet = now - self._last_decrease
            speed = self._probe_per_s * 2 ** min(quiet / _PROBE_DOUBLING_S, _MAX_GROWTH)
            scale *= math.exp(min(_MAX_GROWTH, speed * elapsed))
            self._ceiling = max(self._ceiling, min(1.0, scale))  # the service let this through: the new level
        self._set_scale(min(1.0, scale))

    def _set_scale(self, scale: float) -> None:
        """The admitted rate, and a burst that shrinks with it: a learned 60 rpm must not be
        followed by the configured quota's burst after an idle spell."""
        self._scale = scale
        rps = self.config.effective_rpm / 60.0 * scale
        self.requests.resize(rps, max(1.0, rps * self.config.burst_s))
        self.tokens.set_rate(self.config.tpm / 60.0 * scale)


def time_left(deadline: float, clock: Clock = time.monotonic) -> float | None:
    """Seconds to `deadline` for `asyncio.wait_for`: None (no limit) for an infinite deadline."""
    return None if math.isinf(deadline) else max(0.0, deadline - clock())


async def wait_turn(queue: asyncio.Lock, deadline: float, late: Exception, clock: Clock = time.monotonic) -> None:
    """Take `queue` (first come, first served) or raise `late` if the deadline passes first."""
    try:
        await asyncio.wait_for(queue.acquire(), time_left(deadline, clock))
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
        await wait_turn(queue, deadline, late, self._clock)
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
