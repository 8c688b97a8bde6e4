"""The base of every judge that asks a Bedrock model: request, parse, retry, verdict, cache.

A subclass says only what it asks (a `Prompt` and the `Tool` it wants filled in) and how it reads
the answer (a parser and a `Reading`); this base builds the `ConverseRequest` from the judge's
config, retries a parse failure with a fresh prompt (`converse_call.ask`), turns errors into
failed verdicts with the usage they spent, and puts verdicts through the cache.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from farm.bedrock import ConverseClient, ConverseRequest
from farm.cache import VerdictCache, content_key
from farm.config import PreferenceJudgeConfig, RubricJudgeConfig
from farm.judges.base import failed_verdict
from farm.judges.converse_call import AskError, ask
from farm.maxtokens import OutputSizer
from farm.prompting import Prompt
from farm.wire import Verdict

__all__ = ["BedrockJudge", "Reading", "Tool"]

T = TypeVar("T")
BedrockJudgeConfig = RubricJudgeConfig | PreferenceJudgeConfig


@dataclass(frozen=True)
class Tool:
    """The forced tool a structured answer fills in (ignored with `structured_output: text`)."""

    name: str
    description: str
    schema: Mapping[str, Any]


@dataclass(frozen=True)
class Reading:
    """What a judge read from one parsed answer: the verdict's score, criteria and rationale."""

    score: float | None
    criteria: dict[str, float] = field(default_factory=dict)
    rationale: str = ""


class BedrockJudge:
    """Shared scaffolding; subclasses set `PROMPT_VERSION` and `UNSCORED` (config fields that do not
    change what the model is asked, so they stay out of the cache fingerprint)."""

    PROMPT_VERSION = "bedrock-judge-v1"
    UNSCORED: frozenset[str] = frozenset({"name", "weight", "deadline_s", "gate", "max_tokens_auto"})

    def __init__(self, config: BedrockJudgeConfig, client: ConverseClient, cache: VerdictCache):
        self.name = config.name
        self.config = config
        self._client = client
        self._cache = cache
        self.output_sizer = OutputSizer.for_judge(config)
        """`maxTokens` per kind of call, sized from the answers seen (`max_tokens: auto`) or pinned."""
        self.fingerprint = content_key(self.PROMPT_VERSION, config.model_dump(exclude=set(self.UNSCORED)))

    async def aclose(self) -> None:
        return None

    @property
    def structured(self) -> bool:
        return self.config.structured_output == "tool"

    def request(self, prompt: Prompt, tool: Tool) -> ConverseRequest:
        """THE one place a `ConverseRequest` is built from judge config, so every Bedrock judge gets
        the per-judge request settings at once: the service tier, and a prompt-cache point after
        the shared start of the user turn (`prompt.prefix`) when it is long enough."""
        config = self.config
        return ConverseRequest(
            model=config.model,
            user_text=prompt.user,
            user_prefix=prompt.prefix,
            system_text=prompt.system,
            service_tier=config.service_tier,
            prompt_cache=config.prompt_cache,
            max_tokens=config.max_tokens_ceiling,  # `ask` sends the sized limit (`output_sizer`)
            tool_name=tool.name if self.structured else None,
            tool_description=tool.description,
            tool_schema=tool.schema if self.structured else None,
        )

    async def ask_verdict(
        self,
        render: Callable[[], Prompt],
        tool: Tool,
        parse: Callable[[Mapping[str, Any]], T],
        read: Callable[[T], Reading],
        deadline: float,
        kind: str = "call",
    ) -> Verdict:
        """One question to the model: `render` makes a fresh prompt (new fence tag) per attempt;
        a parse failure is retried `parse_retries` times; any judge error becomes a failed verdict.
        `kind` names the kind of call for `maxTokens` sizing (answers of one kind are alike in length)."""

        def build() -> tuple[Prompt, ConverseRequest]:
            prompt = render()
            return prompt, self.request(prompt, tool)

        try:
            answer = await ask(
                self._client,
                build,
                parse,
                parse_retries=self.config.parse_retries,
                deadline=deadline,
                region=self.config.region,
                sizer=self.output_sizer,
                kind=kind,
            )
        except AskError as exc:
            return exc.verdict()
        reading = read(answer.value)
        return Verdict(
            score=reading.score,
            status="ok",
            criteria=reading.criteria,
            rationale=reading.rationale,
            latency_ms=answer.latency_ms,
            input_tokens=answer.input_tokens,
            output_tokens=answer.output_tokens,
            flags=tuple(sorted(map(str, answer.flags))),
            cache_read_tokens=answer.cache_tokens[0],
            cache_write_tokens=answer.cache_tokens[1],
        )

    async def cached(self, parts: tuple[str | None, ...], compute: Callable[[], Awaitable[Verdict]], *, fresh: bool) -> Verdict:
        """The verdict for this content, computed once (single flight); an unexpected error in one
        call becomes that call's failed verdict instead of failing the batch."""
        key = content_key(self.fingerprint, *parts)
        try:
            return await self._cache.get_or_compute(key, compute, fresh=fresh)
        except Exception as exc:  # noqa: BLE001 - one broken call fails its rollout or comparison, not the batch
            return failed_verdict(exc)
