"""Rubric judge: absolute scores of one response against weighted criteria, on Bedrock."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from farm.bedrock import ConverseClient, ConverseRequest
from farm.cache import VerdictCache, content_key
from farm.config import RubricJudgeConfig
from farm.judges.base import failed_verdict
from farm.judges.converse_call import AskError, ask
from farm.parsing import RubricAnswer, parse_rubric
from farm.prompting import RUBRIC_TOOL, Prompt, rubric_prompt, rubric_schema
from farm.wire import Rollout, Verdict, prompt_text, wants_fresh

__all__ = ["RubricJudge"]

PROMPT_VERSION = "rubric-v1"


class RubricJudge:
    def __init__(self, config: RubricJudgeConfig, client: ConverseClient, cache: VerdictCache):
        self.name = config.name
        self.config = config
        self._client = client
        self._cache = cache
        self._schema = rubric_schema(config.criteria)
        scoring = config.model_dump(exclude={"name", "weight", "deadline_s", "gate"})
        self.fingerprint = content_key(PROMPT_VERSION, scoring)

    async def score(self, rollouts: Sequence[Rollout]) -> list[Verdict]:
        deadline = time.monotonic() + self.config.deadline_s
        return list(await asyncio.gather(*(self._score_one(r, deadline) for r in rollouts)))

    async def aclose(self) -> None:
        return None

    async def _score_one(self, rollout: Rollout, deadline: float) -> Verdict:
        key = content_key(self.fingerprint, prompt_text(rollout.prompt), rollout.response, rollout.reference)
        try:
            return await self._cache.get_or_compute(key, lambda: self._judge(rollout, deadline), fresh=wants_fresh(rollout))
        except Exception as exc:  # noqa: BLE001 - one broken call fails its rollout, not (via gather) the batch
            return failed_verdict(exc)

    async def _judge(self, rollout: Rollout, deadline: float) -> Verdict:
        config = self.config
        structured = config.structured_output == "tool"

        def build() -> tuple[Prompt, ConverseRequest]:
            prompt = rubric_prompt(
                task=config.task,
                prompt=prompt_text(rollout.prompt),
                response=rollout.response,
                reference=rollout.reference,
                criteria=config.criteria,
                max_chars=config.max_response_chars,
                structured=structured,
            )
            request = ConverseRequest(
                model=config.model,
                user_text=prompt.user,
                user_prefix=prompt.prefix,  # bedrock: the shared, cacheable start of the user turn
                system_text=prompt.system,
                max_tokens=config.max_tokens,
                tool_name=RUBRIC_TOOL if structured else None,
                tool_description="Record one grade and rationale per rubric criterion.",
                tool_schema=self._schema if structured else None,
                service_tier=config.service_tier,  # bedrock: tier and prompt cache from judge config
                prompt_cache=config.prompt_cache,
            )
            return prompt, request

        try:
            answer = await ask(
                self._client,
                build,
                lambda payload: parse_rubric(payload, config.criteria),
                parse_retries=config.parse_retries,
                deadline=deadline,
                region=config.region,
            )
        except AskError as exc:
            return exc.verdict()
        value: RubricAnswer = answer.value
        return Verdict(
            score=value.score,
            status="ok",
            criteria=value.criteria,
            rationale=value.rationale,
            latency_ms=answer.latency_ms,
            input_tokens=answer.input_tokens,
            output_tokens=answer.output_tokens,
            flags=tuple(sorted(map(str, answer.flags))),
            cache_read_tokens=answer.cache_tokens[0],  # bedrock: prompt-cache usage
            cache_write_tokens=answer.cache_tokens[1],
        )
