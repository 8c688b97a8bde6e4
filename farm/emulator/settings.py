"""The emulator's settings: quotas, latency, faults and the simulated judge, per model or for all."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from farm.emulator.simjudge import JudgeProfile

__all__ = ["FAULT_KINDS", "SERVICE_TIERS", "EmulatorSettings", "FaultRates", "ModelSettings", "NOVA_MODELS"]

Tier = Literal["priority", "default", "flex", "reserved"]
SERVICE_TIERS = ("priority", "default", "flex", "reserved")
"""The values Converse's `serviceTier.type` takes; any other is a ValidationException."""

NOVA_MODELS: dict[str, int] = {
    "amazon.nova-micro-v1:0": 128_000,
    "amazon.nova-lite-v1:0": 300_000,
    "amazon.nova-pro-v1:0": 300_000,
    "amazon.nova-premier-v1:0": 1_000_000,
    "amazon.nova-2-lite-v1:0": 1_000_000,
}
"""Model id -> context window in tokens. Inference profiles (`us.`, `eu.`, `apac.`, `global.`) map onto these."""

FAULT_KINDS = (
    "throttle",
    "not_ready",
    "model_timeout",
    "model_error",
    "internal",
    "unavailable",
    "hang",
    "malformed",
    "broken_json",
    "truncated",
)


class FaultRates(BaseModel):
    """Probability of each fault per request (independent draws, checked in this order)."""

    model_config = ConfigDict(extra="forbid")

    throttle: float = Field(default=0.0, ge=0, le=1)
    """429 ThrottlingException, not counted against the quota."""
    not_ready: float = Field(default=0.0, ge=0, le=1)
    """429 ModelNotReadyException."""
    model_timeout: float = Field(default=0.0, ge=0, le=1)
    """408 ModelTimeoutException."""
    model_error: float = Field(default=0.0, ge=0, le=1)
    """424 ModelErrorException."""
    internal: float = Field(default=0.0, ge=0, le=1)
    """500 InternalServerException."""
    unavailable: float = Field(default=0.0, ge=0, le=1)
    """503 ServiceUnavailableException."""
    hang: float = Field(default=0.0, ge=0, le=1)
    """Hold the connection for `hang_s` before answering (a client read timeout)."""
    malformed: float = Field(default=0.0, ge=0, le=1)
    """Answer prose instead of the tool call or JSON: not repairable."""
    broken_json: float = Field(default=0.0, ge=0, le=1)
    """Answer JSON text with trailing commas and single quotes: repairable."""
    truncated: float = Field(default=0.0, ge=0, le=1)
    """Cut the answer in half with stopReason `max_tokens`."""
    hang_s: float = Field(default=30.0, ge=0)


class ModelSettings(BaseModel):
    """Overrides for one model id; unset fields take the emulator-wide value."""

    model_config = ConfigDict(extra="forbid")

    rpm: int | None = Field(default=None, gt=0)
    tpm: int | None = Field(default=None, gt=0)
    latency_ms: float | None = Field(default=None, ge=0)
    faults: FaultRates | None = None
    judge: JudgeProfile | None = None
    access: Literal["granted", "denied", "not_found"] = "granted"
    """`denied`: 403 AccessDeniedException (no model access); `not_found`: 404 ResourceNotFoundException."""
    service_tiers: list[Tier] | None = None
    """Tiers this model serves; a request for another is a 400 ValidationException."""


class EmulatorSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rpm: int = Field(default=600, gt=0)
    tpm: int = Field(default=2_000_000, gt=0)
    burst_s: float = Field(default=2.0, gt=0)
    """Seconds of quota the service lets through at once (its bucket's depth)."""
    latency_ms: float = Field(default=200.0, ge=0)
    latency_sigma: float = Field(default=0.25, ge=0, le=2)
    """Log-normal shape of the latency distribution; 0 makes every call take `latency_ms`."""
    max_output_tokens: int = Field(default=10_000, gt=0)
    faults: FaultRates = FaultRates()
    judge: JudgeProfile = JudgeProfile()
    models: dict[str, ModelSettings] = Field(default_factory=dict)
    service_tiers: list[Tier] = Field(default_factory=lambda: list[Tier](["default", "flex", "priority"]))
    """Tiers every model serves unless its `models` entry says otherwise (`reserved` needs a reservation)."""
    flex_latency_factor: float = Field(default=2.0, ge=1)
    """A `flex` call takes this many times the latency of a default one."""
    cache_min_tokens: int = Field(default=1_000, ge=1)
    """A cachePoint after a shorter prefix caches nothing (Nova's minimum is about 1,000 tokens)."""
    cache_ttl_s: float = Field(default=300.0, gt=0)
    """How long a cached prefix lives after its last use (Bedrock: 5 minutes)."""
    seed: int = 0
    check_signature: bool = True
    """Reject calls without a SigV4 Authorization header scoped to the `bedrock` service."""

    def for_model(self, model: str) -> tuple[int, int, float, FaultRates, JudgeProfile, str]:
        override = self.models.get(model) or ModelSettings()
        return (
            override.rpm or self.rpm,
            override.tpm or self.tpm,
            self.latency_ms if override.latency_ms is None else override.latency_ms,
            override.faults or self.faults,
            override.judge or self.judge,
            override.access,
        )

    def tiers_for(self, model: str) -> list[str]:
        override = self.models.get(model)
        tiers = override.service_tiers if override is not None and override.service_tiers is not None else self.service_tiers
        return list(tiers)

    def merged(self, patch: dict[str, Any]) -> EmulatorSettings:
        """These settings with a (deep) partial update applied, validated."""
        return EmulatorSettings.model_validate(_deep_merge(self.model_dump(), patch))


def _deep_merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out
