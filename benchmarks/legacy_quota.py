"""The farm's limiter before the noise-aware one, kept as the baseline the benchmarks measure
against in the same run: every 429 episode halves the admitted rate (at most once per 2 s
cool-down), the rate recovers linearly over 20 s, the bucket starts full, and online callers
give up when the quota would not admit them before their deadline."""

from __future__ import annotations

import time

from farm.config import QuotaConfig
from farm.ratelimit import Clock, ModelQuota, QuotaRegistry

__all__ = ["LegacyAimdQuota", "LegacyRegistry"]


class LegacyAimdQuota(ModelQuota):
    def __init__(self, config: QuotaConfig, *, clock: Clock = time.monotonic):
        super().__init__(config, clock=clock, slow_start=False)
        self._legacy_recovery_per_s = (1.0 - 0.05) / 20.0

    def throttled(self) -> None:
        self.throttle_events += 1
        now = self._clock()
        self._recover()
        if now - self._last_decrease < self._cooldown_s:
            return
        self._last_decrease = now
        self.cuts += 1
        self._legacy_scale(max(0.05, self._scale * 0.5))

    def _recover(self) -> None:
        now = self._clock()
        since = max(self._scale_stamp, self._last_decrease + self._cooldown_s)
        self._scale_stamp = now
        if self._scale < 1.0 and now > since:
            self._legacy_scale(min(1.0, self._scale + (now - since) * self._legacy_recovery_per_s))

    def _legacy_scale(self, scale: float) -> None:
        self._scale = scale
        self.requests.set_rate(self.config.rpm / 60.0 * scale)  # the burst did not shrink
        self.tokens.set_rate(self.config.tpm / 60.0 * scale)


class LegacyRegistry(QuotaRegistry):
    """A `QuotaRegistry` whose quotas use the legacy limiter."""

    def get(self, model: str, region: str) -> ModelQuota:
        key = (model, region)
        if key not in self._quotas:
            super().get(model, region)
            self._quotas[key] = LegacyAimdQuota(self._quota_for(model, region), clock=self._clock)
        return self._quotas[key]
