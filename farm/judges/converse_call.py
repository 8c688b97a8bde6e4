"""Ask a Bedrock model for structured output, parse it, and retry a parse failure once."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from farm.bedrock import ConverseClient, ConverseRequest
from farm.errors import JudgeError, ParseError
from farm.flags import Flag
from farm.judges.base import failed_verdict
from farm.maxtokens import OutputSizer
from farm.parsing import extract_json
from farm.prompting import Prompt
from farm.wire import Verdict

__all__ = ["Answer", "AskError", "ask"]

T = TypeVar("T")


@dataclass
class Answer(Generic[T]):
    value: T
    input_tokens: int = 0
    output_tokens: int = 0
    latency_ms: float = 0.0
    flags: set[str] = field(default_factory=set)
    cache_tokens: tuple[int, int] = (0, 0)  # bedrock: (cache read, cache write) prompt tokens


class AskError(JudgeError):
    """A judge error that carries the usage spent before it happened."""

    def __init__(self, cause: JudgeError, input_tokens: int, output_tokens: int, latency_ms: float, cache_tokens: tuple[int, int] = (0, 0)):
        super().__init__(str(cause))
        self.cause = cause
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens
        self.latency_ms = latency_ms
        self.cache_tokens = cache_tokens  # caching: (read, write) prompt tokens the failed attempts were billed for

    def verdict(self) -> Verdict:
        return failed_verdict(
            self.cause,
            latency_ms=self.latency_ms,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cache_tokens=self.cache_tokens,
        )


async def ask(
    client: ConverseClient,
    build: Callable[[], tuple[Prompt, ConverseRequest]],
    parse: Callable[[Mapping[str, Any]], T],
    *,
    parse_retries: int,
    deadline: float,
    region: str | None,
    sizer: OutputSizer | None = None,
    kind: str = "",
) -> Answer[T]:
    """`build` makes a fresh prompt (new fence tag) for every attempt; raises `AskError`.

    With a `sizer`, each call is sent the `maxTokens` it gives for `kind` and its answer's
    length is recorded; an answer cut off by a limit below the sizer's ceiling (stopReason
    `max_tokens`) is asked again once at the ceiling, outside the parse retries, so a limit
    sized too short costs one call, never a truncated or failed verdict."""
    started = time.monotonic()
    budget = deadline - started
    patient = getattr(client, "patient", False)
    answer: Answer[None] = Answer(value=None)
    last_parse_error: ParseError | None = None
    at_ceiling = False
    attempts = 0
    while attempts <= parse_retries:
        if patient:  # offline, a call may wait for quota past the judge's deadline: a retry gets the budget again
            deadline = max(deadline, time.monotonic() + budget)
        prompt, request = build()
        if sizer is not None:
            limit = sizer.ceiling if at_ceiling else await sizer.limit(kind, deadline)
            if limit != request.max_tokens:  # the quota reservation follows the limit sent (`token_estimate`)
                request = dataclasses.replace(request, max_tokens=limit)
        if prompt.truncated:
            answer.flags.add(Flag.TRUNCATED)
        try:
            reply = await client.converse(request, deadline=deadline, region=region)
        except JudgeError as exc:
            raise AskError(exc, answer.input_tokens, answer.output_tokens, _ms(started), answer.cache_tokens) from exc
        answer.input_tokens += reply.input_tokens
        answer.output_tokens += reply.output_tokens
        answer.cache_tokens = (answer.cache_tokens[0] + reply.cache_read_tokens, answer.cache_tokens[1] + reply.cache_write_tokens)
        cut_off = reply.stop_reason == "max_tokens"
        if sizer is not None:
            sizer.observe(kind, reply.output_tokens, sent=request.max_tokens, cut_off=cut_off)
            if cut_off and not at_ceiling and request.max_tokens < sizer.ceiling:
                sizer.retried(kind)
                at_ceiling = True
                continue  # not a parse attempt: the same question again with room to answer
        attempts += 1
        try:
            if reply.tool_input is not None:
                payload, repaired = reply.tool_input, False
            else:
                payload, repaired = extract_json(reply.text)
            value = parse(payload)
        except ParseError as exc:
            raw = exc.raw or reply.text or repr(reply.tool_input)
            last_parse_error = ParseError(str(exc) + (" (output hit maxTokens)" if cut_off else ""), raw=raw)
            continue
        if cut_off:
            answer.flags.add(Flag.TRUNCATED)
        if repaired:
            answer.flags.add(Flag.PARSE_REPAIRED)
        return Answer(value, answer.input_tokens, answer.output_tokens, _ms(started), answer.flags, answer.cache_tokens)
    assert last_parse_error is not None
    raise AskError(last_parse_error, answer.input_tokens, answer.output_tokens, _ms(started), answer.cache_tokens)


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000.0, 1)
