"""Bedrock Converse over aiobotocore: one session, real SigV4, quotas, retries within a deadline.

The endpoint follows botocore's own resolution, so `AWS_ENDPOINT_URL_BEDROCK_RUNTIME` (or
`bedrock.endpoint_url` in config) points the whole farm at the emulator with nothing else
changed. botocore's own retries are switched off: retrying here lets every attempt pass
through the quota and the deadline, and lets a 429 slow the admitted rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import random
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from farm.config import BedrockConfig
from farm.cost import Usage
from farm.deadlines import bounded
from farm.errors import DeadlineError, JudgeTimeoutError, PermanentJudgeError, ThrottledError, TransientJudgeError
from farm.ratelimit import QuotaBackend, Reservation

__all__ = [
    "CACHE_POINT",
    "ClientStats",
    "ConverseClient",
    "ConverseReply",
    "ConverseRequest",
    "RETRYABLE_CODES",
    "SERVICE_TIERS",
    "estimate_tokens",
    "settled_tokens",
]

THROTTLE_CODES = frozenset({"ThrottlingException", "ModelNotReadyException", "TooManyRequestsException"})
RETRYABLE_CODES = THROTTLE_CODES | frozenset(
    {"ModelTimeoutException", "ModelErrorException", "InternalServerException", "ServiceUnavailableException"}
)
RETRYABLE_STATUS = frozenset({408, 424, 429, 500, 502, 503, 504})
_WARM_TTL_S = 240.0
"""How long a written prompt-cache prefix counts as warm here (Bedrock keeps it 5 minutes after its last use)."""
_PATIENT_THROTTLES = 10
"""A patient call retries 429s without using attempts, up to this many times `max_attempts`."""


def settled_tokens(input_tokens: int, output_tokens: int, cache_read: int = 0, cache_write: int = 0) -> int:
    """What a finished call finally counts against tokens per minute: input, cache writes and
    output. Cache reads were reserved at the start (as input) and are released at settlement,
    so caching raises the throughput a tpm quota allows."""
    return input_tokens + cache_write + output_tokens


def estimate_tokens(text: str) -> int:
    """A cheap upper-leaning estimate (≈4 characters a token); `usage` corrects it afterwards."""
    return len(text) // 4 + 1


SERVICE_TIERS = ("default", "flex", "priority")
CACHE_POINT: dict[str, Any] = {"cachePoint": {"type": "default"}}
"""A Converse prompt-caching checkpoint: everything before it is the cached prefix."""


@dataclass(frozen=True)
class ConverseRequest:
    """One Converse call. `user_prefix` is the part of the user turn every call about one
    question shares (question, reference); with `prompt_cache`, cachePoints mark the shared
    prefixes (`cache_points`). `service_tier` `default` sends no tier (Bedrock's standard one)."""

    model: str
    user_text: str
    system_text: str = ""
    max_tokens: int = 512
    temperature: float = 0.0
    tool_name: str | None = None
    tool_description: str = ""
    tool_schema: Mapping[str, Any] | None = None
    user_prefix: str = ""
    service_tier: str = "default"
    prompt_cache: bool = False
    cache_min_tokens: int = 1_000

    def cache_points(self) -> tuple[bool, bool]:
        """(after the system prompt, after the user prefix): where cachePoints go. A point goes
        where the prefix up to it reaches `cache_min_tokens`: the system prompt (the judge's
        instructions, task and criteria: the same for every call of the judge), and the user
        prefix (question and reference: the same for every response to one question)."""
        if not self.prompt_cache:
            return False, False
        system = estimate_tokens(self.system_text) if self.system_text else 0
        prefix = estimate_tokens(self.user_prefix) if self.user_prefix else 0
        return system >= self.cache_min_tokens, bool(self.user_prefix) and system + prefix >= self.cache_min_tokens

    def to_api(self) -> dict[str, Any]:
        after_system, after_prefix = self.cache_points()
        if after_prefix:
            content: list[dict[str, Any]] = [{"text": self.user_prefix}, CACHE_POINT, {"text": self.user_text}]
        else:  # caching: no point here, so one block, the very text an unlayered prompt sends
            content = [{"text": self.user_prefix + self.user_text}]
        body: dict[str, Any] = {
            "modelId": self.model,
            "messages": [{"role": "user", "content": content}],
            "inferenceConfig": {"maxTokens": self.max_tokens, "temperature": self.temperature},
        }
        if self.system_text:
            body["system"] = [{"text": self.system_text}, *([CACHE_POINT] if after_system else [])]
        if self.service_tier != "default":
            body["serviceTier"] = {"type": self.service_tier}
        if self.tool_name is not None:
            body["toolConfig"] = {
                "tools": [
                    {
                        "toolSpec": {
                            "name": self.tool_name,
                            "description": self.tool_description or self.tool_name,
                            "inputSchema": {"json": dict(self.tool_schema or {"type": "object"})},
                        }
                    }
                ],
                "toolChoice": {"tool": {"name": self.tool_name}},
            }
        return body

    def token_estimate(self) -> int:
        """What Bedrock reserves against tokens per minute when the call starts: every input
        token (cached or not) plus `maxTokens`. Settling returns what was not used."""
        schema_chars = len(str(self.tool_schema)) if self.tool_schema else 0
        prefix = estimate_tokens(self.user_prefix) if self.user_prefix else 0
        return estimate_tokens(self.user_text) + prefix + estimate_tokens(self.system_text) + schema_chars // 4 + self.max_tokens


@dataclass(frozen=True)
class ConverseReply:
    text: str
    tool_input: dict[str, Any] | None
    stop_reason: str
    input_tokens: int
    """Input tokens billed at the input price (Bedrock's `inputTokens`: not read from or written to the cache)."""
    output_tokens: int
    latency_ms: float
    attempts: int
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    service_tier: str = "default"


@dataclass
class ClientStats:
    """Counters for one client; `errors` is keyed by error code."""

    calls: int = 0
    attempts: int = 0
    succeeded: int = 0
    throttled: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    usage: dict[tuple[str, str], Usage] = field(default_factory=dict)
    """Tokens of answered calls by (model, service tier): what `farm.cost` prices."""


class ConverseClient:
    """An async Converse client shared by every judge of one process."""

    def __init__(self, config: BedrockConfig, quotas: QuotaBackend, *, patient: bool = False):
        """`patient`: no caller is waiting (offline scoring), so a call waits for quota as long as
        it takes, the deadline bounds each call from the moment the quota admits it, and 429s
        do not use up attempts: offline work never fails on quota alone. Calls in flight are
        capped at `config.concurrency()`: `max_concurrency`, or sized from the quotas."""
        self.config = config
        self.quotas = quotas
        self.patient = patient
        self.stats = ClientStats()
        self.concurrency = config.concurrency()
        self._semaphore = asyncio.Semaphore(self.concurrency)
        self._stack: contextlib.AsyncExitStack | None = None
        self._client: Any = None
        self._lock = asyncio.Lock()
        self._warming: dict[tuple[str, int], asyncio.Future[None]] = {}
        self._warm_until: dict[tuple[str, int], float] = {}

    async def _get_client(self) -> Any:
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                from aiobotocore.config import AioConfig
                from aiobotocore.session import get_session

                botocore_config = AioConfig(
                    max_pool_connections=self.concurrency,
                    connect_timeout=self.config.connect_timeout_s,
                    read_timeout=self.config.read_timeout_s,
                    retries={"total_max_attempts": 1, "mode": "standard"},
                    # requests come from `ConverseRequest.to_api` with config-validated values; Bedrock
                    # validates them again (a 400 ValidationException is a permanent error here too)
                    parameter_validation=False,
                )
                stack = contextlib.AsyncExitStack()
                kwargs: dict[str, Any] = {"region_name": self.config.region, "config": botocore_config}
                if self.config.endpoint_url:
                    kwargs["endpoint_url"] = self.config.endpoint_url
                self._client = await stack.enter_async_context(get_session().create_client("bedrock-runtime", **kwargs))
                self._stack = stack
        return self._client

    async def aclose(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()
        self._stack = None
        self._client = None

    async def converse(self, request: ConverseRequest, *, deadline: float, region: str | None = None) -> ConverseReply:
        """One Converse call with quota, retries and jittered backoff, all inside `deadline` (monotonic).

        A call whose prompt ends a cached prefix (the system prompt, or system + user prefix)
        that this client has not yet written waits (bounded by `cache_warm_wait_s` and the
        deadline) while the first such call writes it: calls sent together (a group's responses,
        a preference group's orders and pairs) would otherwise all pay to write the same prefix,
        and none read it. Prefixes are taken shortest first, so the judge's rules are written
        once and each question's prefix once."""
        if request.prompt_cache and request.cache_min_tokens != self.config.cache_min_tokens:
            request = dataclasses.replace(request, cache_min_tokens=self.config.cache_min_tokens)  # the client's setting wins
        keys = self._warm_keys(request)
        for index, key in enumerate(keys):
            warming = self._warming.get(key)
            if warming is not None:  # another call is writing this prefix: wait for it, then read it
                wait = min(self.config.cache_warm_wait_s, max(0.0, deadline - time.monotonic()))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(warming), wait)
                continue
            if self._warm_until.get(key, 0.0) > time.monotonic():
                continue
            # nobody writes this prefix yet: this call writes it, and every longer one nobody writes
            mine = [k for k in keys[index:] if k not in self._warming]
            loop = asyncio.get_running_loop()
            futures = {k: loop.create_future() for k in mine}
            self._warming.update(futures)
            try:
                reply = await self._converse(request, deadline=deadline, region=region)
                for k in mine:
                    self._warm_until[k] = time.monotonic() + _WARM_TTL_S  # written: later calls go at once
                return reply
            finally:  # answered or failed, the waiting calls go now
                for k, done in futures.items():
                    del self._warming[k]
                    done.set_result(None)
        return await self._converse(request, deadline=deadline, region=region)

    def _warm_keys(self, request: ConverseRequest) -> list[tuple[str, int]]:
        """(model, hash of the cached prefix) per cachePoint of the call that this client has not
        written within the cache's TTL, shortest prefix first; empty: send at once."""
        if self.config.cache_warm_wait_s <= 0:
            return []
        after_system, after_prefix = request.cache_points()
        keys = []
        if after_system:
            keys.append((request.model, hash(request.system_text)))
        if after_prefix:
            keys.append((request.model, hash((request.system_text, request.user_prefix))))
        now = time.monotonic()
        if len(self._warm_until) > 1024:
            self._warm_until = {k: t for k, t in self._warm_until.items() if t > now}
        return [k for k in keys if self._warm_until.get(k, 0.0) <= now]

    async def _converse(self, request: ConverseRequest, *, deadline: float, region: str | None = None) -> ConverseReply:
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, ParamValidationError

        region = region or self.config.region
        if not self.patient:
            deadline = bounded(deadline)  # the request's own deadline, set where it entered the farm
        client = await self._get_client()
        quotas, model = self.quotas, request.model
        api_request = request.to_api()
        retry = self.config.retry
        self.stats.calls += 1
        last_error = ""
        last_throttled = False
        budget = deadline - time.monotonic()
        attempt = throttles = 0
        while attempt < retry.max_attempts:
            attempt += 1
            if self.patient:
                reservation = await self.quotas.acquire(request.model, region, request.token_estimate(), math.inf)
                deadline = max(deadline, time.monotonic() + budget)
            else:
                reservation = await self.quotas.acquire(request.model, region, request.token_estimate(), deadline)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                quotas.cancel(model, region, reservation, refund_request=True)
                raise DeadlineError(
                    f"{request.model}: the deadline passed before attempt {attempt} could be sent (last error: {last_error or 'none'})"
                )
            started = time.monotonic()
            self.stats.attempts += 1
            try:
                async with self._semaphore:
                    response = await asyncio.wait_for(client.converse(**api_request), remaining)
            except asyncio.CancelledError:
                quotas.cancel(model, region, reservation, refund_request=False)  # the caller left; its tokens return
                raise
            except TimeoutError:
                quotas.cancel(model, region, reservation, refund_request=False)
                self.stats.errors["DeadlineExceeded"] += 1
                raise JudgeTimeoutError(
                    f"{request.model}: no answer within the deadline (attempt {attempt}; last error: {last_error or 'none'})"
                ) from None
            except ClientError as exc:
                quotas.cancel(model, region, reservation, refund_request=False)
                error = exc.response.get("Error", {})
                code = str(error.get("Code", "Unknown"))
                status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
                message = str(error.get("Message", ""))
                self.stats.errors[code] += 1
                last_throttled = code in THROTTLE_CODES or status == 429
                if last_throttled:
                    self.stats.throttled += 1
                    quotas.throttled(model, region)
                    throttles += 1
                    if self.patient and throttles <= _PATIENT_THROTTLES * retry.max_attempts:
                        attempt -= 1  # quota, not a fault: an offline call waits instead of giving up
                if code not in RETRYABLE_CODES and status not in RETRYABLE_STATUS:
                    raise PermanentJudgeError(f"{request.model}: {code} ({status}): {message}") from None
                last_error = f"{code} ({status}): {message}"
            except (NoCredentialsError, ParamValidationError) as exc:
                quotas.cancel(model, region, reservation, refund_request=True)
                self.stats.errors[type(exc).__name__] += 1
                raise PermanentJudgeError(f"{request.model}: {exc}") from None
            except BotoCoreError as exc:
                quotas.cancel(model, region, reservation, refund_request=False)
                self.stats.errors[type(exc).__name__] += 1
                last_error = f"{type(exc).__name__}: {exc}"
                last_throttled = False
            else:
                return self._reply(response, region, reservation, started, attempt, model, request.service_tier)
            delay = random.uniform(0, min(retry.max_delay_s, retry.base_delay_s * 2 ** (max(attempt, 1) - 1)))
            if attempt == retry.max_attempts:
                break
            if time.monotonic() + delay >= deadline and not self.patient:
                raise JudgeTimeoutError(f"{request.model}: deadline reached after {attempt} attempt(s); last error: {last_error or 'none'}")
            await asyncio.sleep(delay)
        error_class = ThrottledError if last_throttled else TransientJudgeError
        raise error_class(f"{request.model}: gave up after {retry.max_attempts} attempt(s); last error: {last_error or 'none recorded'}")

    def _reply(
        self,
        response: Mapping[str, Any],
        region: str,
        reservation: Reservation,
        started: float,
        attempt: int,
        model: str,
        sent_tier: str = "default",
    ) -> ConverseReply:
        usage = response.get("usage", {})
        input_tokens = int(usage.get("inputTokens", 0))
        output_tokens = int(usage.get("outputTokens", 0))
        cache_read = int(usage.get("cacheReadInputTokens", 0) or 0)
        cache_write = int(usage.get("cacheWriteInputTokens", 0) or 0)
        self.quotas.settle(model, region, reservation, settled_tokens(input_tokens, output_tokens, cache_read, cache_write))
        self.stats.succeeded += 1
        self.stats.input_tokens += input_tokens
        self.stats.output_tokens += output_tokens
        self.stats.cache_read_tokens += cache_read
        self.stats.cache_write_tokens += cache_write
        tier = str((response.get("serviceTier") or {}).get("type", sent_tier))  # the tier that served it, as Bedrock says
        key = (model, tier)
        self.stats.usage[key] = self.stats.usage.get(key, Usage()) + Usage(input_tokens, output_tokens, cache_read, cache_write)
        texts: list[str] = []
        tool_input: dict[str, Any] | None = None
        for block in response.get("output", {}).get("message", {}).get("content", []):
            if "text" in block:
                texts.append(block["text"])
            elif "toolUse" in block and tool_input is None:
                candidate = block["toolUse"].get("input")
                tool_input = candidate if isinstance(candidate, dict) else None
        return ConverseReply(
            text="".join(texts),
            tool_input=tool_input,
            stop_reason=str(response.get("stopReason", "")),
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            latency_ms=(time.monotonic() - started) * 1000.0,
            attempts=attempt,
            cache_read_tokens=cache_read,
            cache_write_tokens=cache_write,
            service_tier=tier,
        )
