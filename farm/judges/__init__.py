"""Judge kinds. Each lives in its own module and implements `Judge`; `build_judge` maps config to kind."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeGuard

from farm.bedrock import ConverseClient
from farm.cache import VerdictCache
from farm.config import (
    ExactMatchJudgeConfig,
    FinalAnswerJudgeConfig,
    JsonSchemaJudgeConfig,
    JudgeConfig,
    LengthJudgeConfig,
    PreferenceJudgeConfig,
    RegexJudgeConfig,
    RewardModelJudgeConfig,
    RubricJudgeConfig,
    SimilarityJudgeConfig,
)
from farm.errors import ConfigError
from farm.judges.base import Judge, RuleJudge, failed_verdict, skipped_verdict
from farm.judges.exact_match import ExactMatchJudge
from farm.judges.final_answer import FinalAnswerJudge
from farm.judges.json_schema import JsonSchemaJudge
from farm.judges.length import LengthJudge
from farm.judges.preference import PreferenceJudge
from farm.judges.regex import RegexJudge
from farm.judges.reward_model import RewardModelJudge
from farm.judges.rubric import RubricJudge
from farm.judges.similarity import SimilarityJudge

__all__ = [
    "ExactMatchJudge",
    "FinalAnswerJudge",
    "JsonSchemaJudge",
    "Judge",
    "LengthJudge",
    "PreferenceJudge",
    "RegexJudge",
    "RewardModelJudge",
    "RubricJudge",
    "RuleJudge",
    "build_judge",
    "SimilarityJudge",
    "failed_verdict",
    "is_local",
    "needs_bedrock",
    "skipped_verdict",
]

_RULES: dict[type[Any], Callable[[Any], Judge]] = {
    FinalAnswerJudgeConfig: FinalAnswerJudge,
    ExactMatchJudgeConfig: ExactMatchJudge,
    RegexJudgeConfig: RegexJudge,
    JsonSchemaJudgeConfig: JsonSchemaJudge,
    LengthJudgeConfig: LengthJudge,
    # local torch judges: built like rules (no Bedrock client), but they own a model
    RewardModelJudgeConfig: RewardModelJudge,
    SimilarityJudgeConfig: SimilarityJudge,
}
_LOCAL = (RewardModelJudgeConfig, SimilarityJudgeConfig)
_BEDROCK: dict[type[Any], Callable[[Any, ConverseClient, VerdictCache], Judge]] = {
    RubricJudgeConfig: RubricJudge,
    PreferenceJudgeConfig: PreferenceJudge,
}


def is_local(config: JudgeConfig) -> TypeGuard[RewardModelJudgeConfig | SimilarityJudgeConfig]:
    """A judge that runs a model in the replica (torch): batched, and maybe on a GPU."""
    return isinstance(config, _LOCAL)


def needs_bedrock(config: JudgeConfig) -> TypeGuard[RubricJudgeConfig | PreferenceJudgeConfig]:
    return type(config) in _BEDROCK


def build_judge(config: JudgeConfig, client: ConverseClient | None, cache: VerdictCache) -> Judge:
    """The judge for one config entry; Bedrock judges need the process's shared client."""
    kind = type(config)
    if kind in _RULES:
        return _RULES[kind](config)
    if kind in _BEDROCK:
        if client is None:
            raise ConfigError(f"judge {config.name!r} calls Bedrock but no Bedrock client was given")
        return _BEDROCK[kind](config, client, cache)
    raise ConfigError(f"judge {getattr(config, 'name', '?')!r}: unknown kind {getattr(config, 'kind', kind.__name__)!r}")
