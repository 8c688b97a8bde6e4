"""The ingress's door: who is calling (`TokenBook`), whether they may now (per-key rates and Bedrock
shares), and what each key used (metrics). One instance per ingress replica.

Rates are enforced per ingress replica; a fixed `serve.ingress.num_replicas` divides each key's
rate between replicas so that the cluster-wide figure is the configured one.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field

from ray.util.metrics import Counter

from deploy.options import options_of
from farm.auth import ApiKey, AuthConfig, TokenBook
from farm.config import FarmConfig
from farm.errors import ConfigError
from farm.judges import needs_bedrock

__all__ = ["ANONYMOUS", "Door", "Limited", "TokenBucket", "bedrock_rpm_floor"]

ANONYMOUS = "anonymous"
"""The caller's name when auth is off (loopback-only deployments)."""
logger = logging.getLogger("ray.serve")


@dataclass
class TokenBucket:
    """Refills at `rate`/s up to `burst`; a charge may overdraw, so a big request is admitted once
    the bucket is positive and the next wait is longer: the long-run rate holds for any size."""

    rate: float
    burst: float
    level: float = field(default=-1.0)
    stamp: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        if self.level < 0:
            self.level = self.burst

    def wait_s(self, now: float) -> float:
        """0 when a charge may go ahead now; else seconds until it may."""
        self.level = min(self.burst, self.level + (now - self.stamp) * self.rate)
        self.stamp = now
        return 0.0 if self.level >= min(1.0, self.burst) else (min(1.0, self.burst) - self.level) / self.rate

    def charge(self, amount: float) -> None:
        self.level -= amount


class Limited(Exception):
    """A key is over its rate or share; `retry_after_s` says when to come back."""

    def __init__(self, key: str, what: str, retry_after_s: float):
        super().__init__(f"API key {key!r} is over its {what}; retry after {retry_after_s:.1f} s")
        self.retry_after_s = retry_after_s


@dataclass
class _KeyLimits:
    requests: TokenBucket | None
    rollouts: TokenBucket | None


class Door:
    """Authentication and per-key admission for one ingress replica."""

    def __init__(self, config: FarmConfig, book: TokenBook):
        self.book = book
        self._loaded_at = time.monotonic()
        self._refreshing: threading.Thread | None = None
        self.app = config.serve.app_name
        ingress = options_of(config.serve.ingress)
        replicas = ingress.num_replicas if ingress.autoscaling is None else None
        share_of = max(1, replicas or 1)
        floor = bedrock_rpm_floor(config)
        self.limits = {key.name: _limits(key, share_of, floor) for key in config.serve.auth.keys}
        self.requests = Counter("farm_key_requests_total", "Requests per API key by outcome.", tag_keys=("app", "key", "outcome"))
        self.rollouts = Counter("farm_key_rollouts_total", "Rollouts admitted per API key.", tag_keys=("app", "key"))

    @property
    def enabled(self) -> bool:
        return self.book.enabled

    def refresh_due(self, auth: AuthConfig, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        return self.book.enabled and now - self._loaded_at >= auth.refresh_s

    def refresh(self, auth: AuthConfig, now: float | None = None) -> str | None:
        """Re-read the token sources when `auth.refresh_s` has passed (a rotation needs no restart).
        A source that fails keeps the tokens read last; the error (never a token) is returned."""
        now = time.monotonic() if now is None else now
        if not self.refresh_due(auth, now):
            return None
        self._loaded_at = now
        try:
            self.book = TokenBook.load(auth)
        except ConfigError as exc:  # names the source, never a value
            return f"keeping the tokens read before: {exc}"
        except Exception as exc:  # noqa: BLE001 - anything else may carry a secret in its text: its class only
            return f"keeping the tokens read before: {exc.__class__.__name__}"
        return None

    def refresh_in_background(self, auth: AuthConfig) -> bool:
        """`refresh` on a daemon thread when due and none runs, so that the health check never waits on a
        slow secret store (whose calls are bounded anyway, see `farm.auth`). Whether one was started."""
        running = self._refreshing is not None and self._refreshing.is_alive()
        if running or not self.refresh_due(auth):
            return False
        self._refreshing = threading.Thread(target=self._refresh_and_log, args=(auth,), name="farm-token-refresh", daemon=True)
        self._refreshing.start()
        return True

    def _refresh_and_log(self, auth: AuthConfig) -> None:
        problem = self.refresh(auth)
        if problem:
            logger.warning("token refresh failed, %s", problem)

    def caller(self, authorization: str) -> str | None:
        """The caller's name for an `Authorization` header value; None when it is not let in."""
        if not self.book.enabled:
            return ANONYMOUS
        name = self.book.check_header(authorization)
        if name is None:
            self.requests.inc(1, tags={"app": self.app, "key": "unknown", "outcome": "unauthorised"})
        return name

    def admit(self, caller: str, rollouts: int) -> None:
        """Charge a request of `rollouts` rollouts to `caller`, or raise `Limited`."""
        limits = self.limits.get(caller)
        if limits is not None:
            now = time.monotonic()
            for bucket, what in ((limits.requests, "request rate"), (limits.rollouts, "share of the Bedrock quota")):
                if bucket is not None:
                    wait = bucket.wait_s(now)
                    if wait > 0:
                        self.requests.inc(1, tags={"app": self.app, "key": caller, "outcome": "limited"})
                        raise Limited(caller, what, max(0.1, math.ceil(wait * 10) / 10))
            if limits.requests is not None:
                limits.requests.charge(1)
            if limits.rollouts is not None:
                limits.rollouts.charge(rollouts)
        self.requests.inc(1, tags={"app": self.app, "key": caller, "outcome": "admitted"})
        self.rollouts.inc(rollouts, tags={"app": self.app, "key": caller})


def bedrock_rpm_floor(config: FarmConfig) -> float | None:
    """Requests/min of the tightest Bedrock model the ensemble calls (each rollout costs at least one)."""
    rpms = [
        config.quota_for(j.model, config.bedrock.region).effective_rpm
        for j in config.judges
        if needs_bedrock(j) and getattr(j, "model", None)
    ]
    return float(min(rpms)) if rpms else None


def _limits(key: ApiKey, replicas: int, bedrock_rpm: float | None) -> _KeyLimits:
    requests = None
    if key.requests_per_s is not None:
        rate = key.requests_per_s / replicas
        requests = TokenBucket(rate=rate, burst=max(1.0, rate))
    rollouts = None
    if key.bedrock_share is not None and bedrock_rpm is not None:
        rate = key.bedrock_share * bedrock_rpm / 60.0 / replicas
        rollouts = TokenBucket(rate=rate, burst=max(1.0, rate))
    return _KeyLimits(requests, rollouts)
