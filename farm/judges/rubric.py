"""Rubric judge: absolute scores of one response against weighted criteria, on Bedrock."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from farm.bedrock import ConverseClient
from farm.cache import VerdictCache
from farm.config import RubricJudgeConfig
from farm.judges.bedrock_judge import BedrockJudge, Reading, Tool
from farm.parsing import RubricAnswer, parse_rubric
from farm.prompting import RUBRIC_TOOL, rubric_prompt, rubric_schema
from farm.wire import Rollout, Verdict, prompt_text, wants_fresh

__all__ = ["RubricJudge"]


class RubricJudge(BedrockJudge):
    PROMPT_VERSION = "rubric-v1"
    config: RubricJudgeConfig

    def __init__(self, config: RubricJudgeConfig, client: ConverseClient, cache: VerdictCache):
        super().__init__(config, client, cache)
        self._tool = Tool(RUBRIC_TOOL, "Record one grade and rationale per rubric criterion.", rubric_schema(config.criteria))

    async def score(self, rollouts: Sequence[Rollout]) -> list[Verdict]:
        deadline = time.monotonic() + self.config.deadline_s
        return list(await asyncio.gather(*(self._score_one(r, deadline) for r in rollouts)))

    async def _score_one(self, rollout: Rollout, deadline: float) -> Verdict:
        parts = (prompt_text(rollout.prompt), rollout.response, rollout.reference)
        return await self.cached(parts, lambda: self._judge(rollout, deadline), fresh=wants_fresh(rollout))

    async def _judge(self, rollout: Rollout, deadline: float) -> Verdict:
        config = self.config
        return await self.ask_verdict(
            lambda: rubric_prompt(
                task=config.task,
                prompt=prompt_text(rollout.prompt),
                response=rollout.response,
                reference=rollout.reference,
                criteria=config.criteria,
                max_chars=config.max_response_chars,
                structured=self.structured,
            ),
            self._tool,
            lambda payload: parse_rubric(payload, config.criteria),
            _reading,
            deadline,
            "rubric",
        )


def _reading(value: RubricAnswer) -> Reading:
    return Reading(score=value.score, criteria=value.criteria, rationale=value.rationale)
