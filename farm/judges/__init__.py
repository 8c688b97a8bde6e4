"""Judge kinds. Each lives in its own module and implements `Judge`; `build_judge` maps config to kind."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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
    RubricJudgeConfig,
)
from farm.errors import ConfigError
from farm.judges.base import Judge, RuleJudge, failed_verdict, skipped_verdict
from farm.judges.exact_match import ExactMatchJudge
from farm.judges.final_answer import FinalAnswerJudge
from farm.judges.json_schema import JsonSchemaJudge
from farm.judges.length import LengthJudge
from farm.judges.preference import PreferenceJudge
from farm.judges.regex import RegexJudge
from farm.judges.rubric import RubricJudge

__all__ = [
    "ExactMatchJudge",
    "FinalAnswerJudge",
    "JsonSchemaJudge",
    "Judge",
    "LengthJudge",
    "PreferenceJudge",
    "RegexJudge",
    "RubricJudge",
    "RuleJudge",
    "build_judge",
    "failed_verdict",
    "needs_bedrock",
    "skipped_verdict",
]

_RULES: dict[type[Any], Callable[[Any], Judge]] = {
    FinalAnswerJudgeConfig: FinalAnswerJudge,
    ExactMatchJudgeConfig: ExactMatchJudge,
    RegexJudgeConfig: RegexJudge,
    JsonSchemaJudgeConfig: JsonSchemaJudge,
    LengthJudgeConfig: LengthJudge,
}
_BEDROCK: dict[type[Any], Callable[[Any, ConverseClient, VerdictCache], Judge]] = {
    RubricJudgeConfig: RubricJudge,
    PreferenceJudgeConfig: PreferenceJudge,
}


def needs_bedrock(config: JudgeConfig) -> bool:
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
