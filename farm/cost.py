"""Dollars from tokens: a price table (list prices merged with `prices` in config) and the cost of a call.

Bedrock bills input tokens, output tokens, and with prompt caching tokens read from and written
to the cache at their own rates (Nova: cache reads about 75% below input; writes at the input
rate). An inference profile (`us.amazon.nova-2-lite-v1:0`) is priced as written when the table
has it, else as its base model. The list prices below are US on-demand list prices as published
by AWS and read on 2026-11-29: check them against https://aws.amazon.com/bedrock/pricing/ before
trusting a bill to them, and override them under `prices` in config.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from farm.config import FarmConfig, ModelPrice, base_model_id

__all__ = ["LIST_PRICES", "PRICES_CHECKED", "CallCost", "PriceTable", "Usage"]

PRICES_CHECKED = "2026-11-29"

LIST_PRICES: dict[str, ModelPrice] = {
    "amazon.nova-micro-v1:0": ModelPrice(input_per_1m=0.035, output_per_1m=0.14, cache_read_per_1m=0.00875),
    "amazon.nova-lite-v1:0": ModelPrice(input_per_1m=0.06, output_per_1m=0.24, cache_read_per_1m=0.015),
    "amazon.nova-pro-v1:0": ModelPrice(input_per_1m=0.80, output_per_1m=3.20, cache_read_per_1m=0.20),
    "amazon.nova-premier-v1:0": ModelPrice(input_per_1m=2.50, output_per_1m=12.50, cache_read_per_1m=0.625),
    "amazon.nova-2-lite-v1:0": ModelPrice(input_per_1m=0.33, output_per_1m=2.75, cache_read_per_1m=0.0825),
}
"""USD, US regions, on-demand standard tier. Flex and priority rates are not in this table
(AWS publishes them per model on the pricing page): set `flex_discount` / `priority_premium`."""


@dataclass(frozen=True)
class Usage:
    """Tokens of one call or many: `input_tokens` is input billed as input (not cached)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_read_tokens + other.cache_read_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
        )

    @property
    def prompt_tokens(self) -> int:
        """Every input token the model read, cached or not."""
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens


@dataclass(frozen=True)
class CallCost:
    usd: float
    """What the tokens cost at the tier's rate."""
    uncached_usd: float
    """What the same tokens would cost with every cached token billed as plain input."""


class PriceTable:
    """Model id -> price, list prices overridden by config; unknown models have no price (None)."""

    def __init__(self, prices: Mapping[str, ModelPrice | Mapping[str, Any]] | None = None, *, list_prices: bool = True):
        given = {m: p if isinstance(p, ModelPrice) else ModelPrice.model_validate(p) for m, p in (prices or {}).items()}
        self._prices: dict[str, ModelPrice] = {**(LIST_PRICES if list_prices else {}), **given}

    @classmethod
    def from_config(cls, config: FarmConfig) -> PriceTable:
        return cls(config.prices)

    def price(self, model: str) -> ModelPrice | None:
        return self._prices.get(model) or self._prices.get(base_model_id(model))

    def cost(self, model: str, usage: Usage, service_tier: str = "default") -> CallCost | None:
        """The cost of `usage` on `model` at `service_tier`, or None when the model has no price."""
        price = self.price(model)
        if price is None:
            return None
        factor = _tier_factor(price, service_tier)
        usd = (
            usage.input_tokens * price.per_token("input")
            + usage.output_tokens * price.per_token("output")
            + usage.cache_read_tokens * price.per_token("cache_read")
            + usage.cache_write_tokens * price.per_token("cache_write")
        ) * factor
        uncached = (usage.prompt_tokens * price.per_token("input") + usage.output_tokens * price.per_token("output")) * factor
        return CallCost(usd=usd, uncached_usd=uncached)

    def usd(self, model: str, usage: Usage, service_tier: str = "default") -> float | None:
        cost = self.cost(model, usage, service_tier)
        return None if cost is None else cost.usd


def _tier_factor(price: ModelPrice, service_tier: str) -> float:
    if service_tier == "flex":
        return 1.0 - price.flex_discount
    if service_tier == "priority":
        return 1.0 + price.priority_premium
    return 1.0
