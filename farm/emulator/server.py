"""The Bedrock emulator: a real HTTP server that speaks the Converse wire protocol.

Unchanged boto3/aiobotocore clients talk to it: rest-json bodies, the AWS error JSON with the
`x-amzn-ErrorType` header, `usage`, `metrics.latencyMs`, `stopReason` and tool-use blocks.
It enforces per-model RPM/TPM quotas, simulates latency, injects faults, and answers judge
prompts with the simulated judge. Admin endpoints under `/_emulator/` let tests change
settings at runtime and read what the "service" saw.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from farm.config import base_model_id
from farm.emulator.schema_input import instance_for, is_valid
from farm.emulator.settings import FAULT_KINDS, NOVA_MODELS, SERVICE_TIERS, EmulatorSettings, FaultRates
from farm.emulator.simjudge import answer_request
from farm.ratelimit import TokenBucket

__all__ = ["EmulatorServer", "EmulatorThread", "ModelStats"]

_ERROR_NAMESPACE = ":http://internal.amazon.com/coral/com.amazon.bedrock/"
_FAULT_ERRORS = {
    "throttle": (429, "ThrottlingException", "Too many requests, please wait before trying again."),
    "not_ready": (429, "ModelNotReadyException", "Model is not ready to serve inference requests."),
    "model_timeout": (408, "ModelTimeoutException", "Model has timed out in processing the request."),
    "model_error": (424, "ModelErrorException", "The model returned an error."),
    "internal": (500, "InternalServerException", "The server encountered an internal error."),
    "unavailable": (503, "ServiceUnavailableException", "The service is unavailable. Try again later."),
}


class _ApiError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass
class ModelStats:
    received: int = 0
    admitted: int = 0
    throttled: int = 0
    """429s from the quota (not injected)."""
    errors: Counter[str] = field(default_factory=Counter)
    """Every error answered, by code, injected or not."""
    faults: Counter[str] = field(default_factory=Counter)
    input_tokens: int = 0
    """Input tokens billed as input (Bedrock's `inputTokens`: neither read from nor written to the cache)."""
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    tiers: Counter[str] = field(default_factory=Counter)
    """Admitted calls by service tier."""
    admitted_at: list[float] = field(default_factory=list)
    """Monotonic seconds since the emulator started, one per admitted request."""

    def peak_in_window(self, window_s: float) -> int:
        times, best, start = self.admitted_at, 0, 0
        for end, t in enumerate(times):
            while t - times[start] >= window_s:
                start += 1
            best = max(best, end - start + 1)
        return best

    def as_dict(self, with_times: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "received": self.received,
            "admitted": self.admitted,
            "throttled": self.throttled,
            "errors": dict(self.errors),
            "faults": dict(self.faults),
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_read_tokens": self.cache_read_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "tiers": dict(self.tiers),
            "peak_admitted_60s": self.peak_in_window(60.0),
            "peak_admitted_1s": self.peak_in_window(1.0),
        }
        if with_times:
            out["admitted_at"] = self.admitted_at
        return out


class _Quota:
    def __init__(self, rpm: int, tpm: int, burst_s: float):
        self.requests = TokenBucket(rpm / 60.0, max(1.0, rpm / 60.0 * burst_s))
        self.tokens = TokenBucket(tpm / 60.0, max(1.0, tpm / 60.0 * burst_s))
        self.key = (rpm, tpm, burst_s)

    def admit(self, tokens: int) -> bool:
        tokens = min(tokens, int(self.tokens.capacity))
        if self.requests.level < 1.0 or self.tokens.level < tokens:
            return False
        self.requests.take(1)
        self.tokens.take(tokens)
        return True


class EmulatorServer:
    """The aiohttp application and its state; run it with `start()` inside an event loop."""

    def __init__(self, settings: EmulatorSettings | None = None):
        self.settings = settings or EmulatorSettings()
        self.stats: dict[str, ModelStats] = {}
        self._quotas: dict[str, _Quota] = {}
        self._prompt_cache: dict[tuple[str, str], tuple[float, float]] = {}
        """(base model, prefix text) -> (readable from, expires): Bedrock's prompt cache, per model."""
        self._rng = random.Random(self.settings.seed)
        self._started = time.monotonic()
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.app = web.Application(client_max_size=64 * 1024 * 1024)
        self.app.router.add_post("/model/{model_id:.+}/converse", self._converse)
        self.app.router.add_get("/_emulator/stats", self._get_stats)
        self.app.router.add_get("/_emulator/settings", self._get_settings)
        self.app.router.add_post("/_emulator/settings", self._patch_settings)
        self.app.router.add_post("/_emulator/reset", self._reset)
        self.app.router.add_get("/ping", self._ping)
        from farm.emulator.batch import BatchJobs  # the batch inference control plane (service `bedrock`)

        self.batch = BatchJobs(self)
        self.batch.register(self.app.router)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, backlog=1024)
        await site.start()
        bound = site._server.sockets[0].getsockname()  # type: ignore[union-attr]
        self.url = f"http://{host}:{bound[1]}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def reset(self) -> None:
        self.stats.clear()
        self._quotas.clear()
        self._prompt_cache.clear()
        self._rng = random.Random(self.settings.seed)
        self._started = time.monotonic()

    # --- admin ---------------------------------------------------------------------------

    async def _ping(self, _request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "emulator": True})

    async def _get_stats(self, request: web.Request) -> web.Response:
        with_times = request.query.get("times") == "1"
        return web.json_response({model: s.as_dict(with_times) for model, s in self.stats.items()})

    async def _get_settings(self, _request: web.Request) -> web.Response:
        return web.json_response(self.settings.model_dump())

    async def _patch_settings(self, request: web.Request) -> web.Response:
        try:
            patch = await request.json()
            self.settings = self.settings.merged(patch)
        except (ValueError, ValidationError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(self.settings.model_dump())

    async def _reset(self, _request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"ok": True})

    # --- Converse ------------------------------------------------------------------------

    async def _converse(self, request: web.Request) -> web.Response:
        model = request.match_info["model_id"]
        stats = self.stats.setdefault(model, ModelStats())
        stats.received += 1
        try:
            return await self._handle(request, model, stats)
        except _ApiError as exc:
            stats.errors[exc.code] += 1
            return _error(exc.status, exc.code, exc.message)

    async def _handle(self, request: web.Request, model: str, stats: ModelStats) -> web.Response:
        self._check_auth(request)
        base_model = _base_model(model)
        if base_model is None:
            raise _ApiError(400, "ValidationException", "The provided model identifier is invalid.")
        rpm, tpm, latency_ms, faults, profile, access = self.settings.for_model(model)
        if access == "denied":
            raise _ApiError(403, "AccessDeniedException", "You don't have access to the model with the specified model ID.")
        if access == "not_found":
            raise _ApiError(
                404,
                "ResourceNotFoundException",
                "The requested resource could not be found: model is end of life or unavailable in this region.",
            )
        try:
            body = json.loads(await request.read() or b"{}")
        except json.JSONDecodeError:
            raise _ApiError(400, "SerializationException", "Could not parse the request body as JSON.") from None
        parsed = _validate(body, self.settings.max_output_tokens)
        tiers = self.settings.tiers_for(model)
        if parsed.service_tier not in tiers:
            raise _ApiError(
                400,
                "ValidationException",
                f"The provided service tier '{parsed.service_tier}' is not supported for model {model}. Supported: {', '.join(tiers)}.",
            )
        input_tokens = _count_tokens(parsed.all_text)
        if input_tokens > NOVA_MODELS[base_model]:
            raise _ApiError(400, "ValidationException", "Input is too long for requested model.")
        fault = self._draw_fault(faults)
        if fault in _FAULT_ERRORS:
            stats.faults[fault] += 1
            raise _ApiError(*_FAULT_ERRORS[fault])
        quota = self._quota(model, rpm, tpm)
        if not quota.admit(input_tokens + parsed.max_tokens):
            stats.throttled += 1
            raise _ApiError(429, "ThrottlingException", "Too many requests, please wait before trying again.")
        stats.admitted += 1
        stats.tiers[parsed.service_tier] += 1
        stats.admitted_at.append(time.monotonic() - self._started)
        started = time.monotonic()
        delay = self._latency(latency_ms) * (self.settings.flex_latency_factor if parsed.service_tier == "flex" else 1.0)
        cache_read, cache_write = self._cache(base_model, parsed.cached_prefixes, ready_in=delay)
        if fault == "hang":
            stats.faults[fault] += 1
            delay = max(delay, faults.hang_s)
        if delay > 0:
            await asyncio.sleep(delay)
        # the judge's rules (criteria) may sit in the system prompt, the material in the user turn
        answer = answer_request(parsed.system_text + "\n" + parsed.user_text, parsed.tool_name, profile, model)
        if parsed.tool_schema is not None and (answer.payload is None or not is_valid(answer.payload, parsed.tool_schema)):
            # Not one of the farm's judge prompts (or an answer that does not fit this tool): Bedrock
            # still answers a forced tool call with input that fits the tool's schema.
            payload = instance_for(parsed.tool_schema, seed=hash(parsed.user_text) & 0xFFFF)
            answer = type(answer)(answer.kind, payload, json.dumps(payload))
        content, stop_reason, text = self._render(answer, parsed.tool_name, fault, stats)
        output_tokens = _count_tokens(text)
        if output_tokens > parsed.max_tokens:
            content = [{"text": text[: parsed.max_tokens * 4]}]
            output_tokens, stop_reason = parsed.max_tokens, "max_tokens"
        # Settle as Bedrock does: unused maxTokens come back, and so do cache reads (reserved as input).
        quota.tokens.give(parsed.max_tokens - output_tokens + cache_read)
        billed_input = input_tokens - cache_read - cache_write
        stats.input_tokens += billed_input
        stats.output_tokens += output_tokens
        stats.cache_read_tokens += cache_read
        stats.cache_write_tokens += cache_write
        usage = {"inputTokens": billed_input, "outputTokens": output_tokens, "totalTokens": input_tokens + output_tokens}
        if parsed.cached_prefixes:
            usage.update(cacheReadInputTokens=cache_read, cacheWriteInputTokens=cache_write)
        body_out: dict[str, Any] = {
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": stop_reason,
            "usage": usage,
            "metrics": {"latencyMs": int((time.monotonic() - started) * 1000)},
        }
        if parsed.tier_sent:
            body_out["serviceTier"] = {"type": parsed.service_tier}
        return web.json_response(body_out, headers={"x-amzn-RequestId": str(uuid.uuid4())})

    def _cache(self, base_model: str, prefixes: tuple[str, ...], ready_in: float) -> tuple[int, int]:
        """(cache read, cache write) tokens for a request with cachePoints ending `prefixes`
        (shortest first). Only prefixes of at least `cache_min_tokens` are cached (shorter ones
        are plain input, as on Bedrock). The longest cached prefix within its TTL is read (and its
        TTL renewed); what lies between it and the last cachePoint is written, readable once the
        writing call has finished (`ready_in` seconds), so calls sent together all write."""
        now = time.monotonic()
        eligible = [(p, _count_tokens(p)) for p in prefixes if _count_tokens(p) >= self.settings.cache_min_tokens]
        if not eligible:
            return 0, 0
        read = 0
        for prefix, tokens in eligible:
            entry = self._prompt_cache.get((base_model, prefix))
            if entry is not None and entry[0] <= now < entry[1]:
                read = tokens
                self._prompt_cache[(base_model, prefix)] = (entry[0], now + self.settings.cache_ttl_s)
        for prefix, _tokens in eligible:
            entry = self._prompt_cache.get((base_model, prefix))
            if entry is None or entry[1] <= now:
                self._prompt_cache[(base_model, prefix)] = (now + ready_in, now + ready_in + self.settings.cache_ttl_s)
        if len(self._prompt_cache) > 10_000:  # forget the expired ones now and then
            self._prompt_cache = {k: t for k, t in self._prompt_cache.items() if t[1] > now}
        return read, eligible[-1][1] - read

    def _render(self, answer: Any, tool_name: str | None, fault: str | None, stats: ModelStats) -> tuple[list[dict[str, Any]], str, str]:
        if fault == "malformed":
            stats.faults[fault] += 1
            text = "I have carefully considered the response and I think it is quite good overall."
            return [{"text": text}], "end_turn", text
        if fault == "broken_json" and answer.payload is not None:
            stats.faults[fault] += 1
            text = "Here are my grades:\n```json\n" + _break_json(answer.payload) + "\n```"
            return [{"text": text}], "end_turn", text
        if fault == "truncated":
            stats.faults[fault] += 1
            text = answer.text[: max(1, len(answer.text) // 2)]
            return [{"text": text}], "max_tokens", text
        if tool_name is not None and answer.payload is not None:
            block = {"toolUse": {"toolUseId": f"tooluse_{uuid.uuid4().hex[:22]}", "name": tool_name, "input": answer.payload}}
            return [block], "tool_use", json.dumps(answer.payload)
        return [{"text": answer.text}], "end_turn", answer.text

    def _check_auth(self, request: web.Request) -> None:
        if not self.settings.check_signature:
            return
        header = request.headers.get("Authorization", "")
        if not header.startswith("AWS4-HMAC-SHA256 Credential="):
            raise _ApiError(403, "UnrecognizedClientException", "Missing or malformed SigV4 Authorization header.")
        scope = header.split("Credential=", 1)[1].split(",", 1)[0].split("/")
        if len(scope) != 5 or scope[3] != "bedrock" or scope[4] != "aws4_request":
            raise _ApiError(
                403, "InvalidSignatureException", f"Credential scope must name the service 'bedrock', got {'/'.join(scope[1:])!r}."
            )

    def _draw_fault(self, faults: FaultRates) -> str | None:
        for kind in FAULT_KINDS:
            rate = getattr(faults, kind)
            if rate > 0 and self._rng.random() < rate:
                return kind
        return None

    def _quota(self, model: str, rpm: int, tpm: int) -> _Quota:
        key = (rpm, tpm, self.settings.burst_s)
        quota = self._quotas.get(model)
        if quota is None or quota.key != key:
            quota = self._quotas[model] = _Quota(rpm, tpm, self.settings.burst_s)
        return quota

    def _latency(self, mean_ms: float) -> float:
        if mean_ms <= 0:
            return 0.0
        sigma = self.settings.latency_sigma
        if sigma == 0:
            return mean_ms / 1000.0
        return self._rng.lognormvariate(math.log(mean_ms) - sigma * sigma / 2, sigma) / 1000.0


@dataclass(frozen=True)
class _Parsed:
    user_text: str
    all_text: str
    max_tokens: int
    tool_name: str | None
    system_text: str = ""
    tool_schema: dict[str, Any] | None = None
    """The forced tool's input schema."""
    cached_prefixes: tuple[str, ...] = ()
    """The prompt text before each cachePoint (system blocks, then message blocks), shortest first."""
    service_tier: str = "default"
    tier_sent: bool = False


def _blocks(blocks: Any, where: str) -> list[tuple[str, bool]]:
    """(text, is_cache_point) per content block; a cachePoint must be `{"type": "default"}`."""
    out: list[tuple[str, bool]] = []
    for block in blocks if isinstance(blocks, list) else []:
        if not isinstance(block, dict):
            continue
        if "cachePoint" in block:
            point = block["cachePoint"]
            if not isinstance(point, dict) or point.get("type") != "default":
                raise _ApiError(400, "ValidationException", f"{where}: cachePoint.type must be 'default'.")
            out.append(("", True))
        else:
            out.append((str(block.get("text", "")), False))
    return out


def _validate(body: Any, max_output_tokens: int) -> _Parsed:
    if not isinstance(body, dict):
        raise _ApiError(400, "ValidationException", "The request body must be a JSON object.")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _ApiError(
            400,
            "ValidationException",
            "1 validation error detected: Value at 'messages' failed to satisfy constraint: Member must not be null",
        )
    texts: list[str] = []
    last_user = ""
    # Bedrock's prefix order: system first, then the messages; the cache covers up to the last cachePoint.
    ordered: list[tuple[str, bool]] = _blocks(body.get("system"), "system")
    for index, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        expected = "user" if index % 2 == 0 else "assistant"
        if role != expected:
            raise _ApiError(
                400,
                "ValidationException",
                "A conversation must start with a user message and alternate between user and assistant roles.",
            )
        content = message.get("content")
        if not isinstance(content, list) or not content:
            raise _ApiError(400, "ValidationException", f"The content field in message {index} is empty.")
        blocks = _blocks(content, f"messages[{index}].content")
        ordered.extend(blocks)
        text = "".join(t for t, _ in blocks)
        texts.append(text)
        if role == "user":
            last_user = text
    system_text = "".join(t for t, _ in _blocks(body.get("system"), "system"))
    texts.append(system_text)
    cached_prefixes = tuple("".join(t for t, _ in ordered[:i]) for i, (_, point) in enumerate(ordered) if point)
    tier_sent = "serviceTier" in body
    tier = body.get("serviceTier")
    if tier_sent and (not isinstance(tier, dict) or not isinstance(tier.get("type"), str)):
        raise _ApiError(400, "ValidationException", "serviceTier must be an object with a string `type`.")
    service_tier = str(tier["type"]) if isinstance(tier, dict) else "default"
    if service_tier not in SERVICE_TIERS:
        raise _ApiError(
            400,
            "ValidationException",
            f"1 validation error detected: Value '{service_tier}' at 'serviceTier.type' failed to satisfy constraint: "
            f"Member must satisfy enum value set: [{', '.join(SERVICE_TIERS)}]",
        )
    config = body.get("inferenceConfig") or {}
    max_tokens = config.get("maxTokens", 1024)
    if not isinstance(max_tokens, int) or not 1 <= max_tokens <= max_output_tokens:
        raise _ApiError(400, "ValidationException", f"maxTokens must be between 1 and {max_output_tokens}.")
    temperature = config.get("temperature", 0.7)
    if not isinstance(temperature, int | float) or not 0 <= temperature <= 1:
        raise _ApiError(400, "ValidationException", "temperature must be between 0 and 1.")
    tool_name = None
    tool_schema: dict[str, Any] | None = None
    tool_config = body.get("toolConfig")
    if tool_config is not None:
        specs = {t["toolSpec"].get("name"): t["toolSpec"] for t in tool_config.get("tools", []) if isinstance(t, dict) and "toolSpec" in t}
        if not specs:
            raise _ApiError(400, "ValidationException", "toolConfig.tools must contain at least one tool.")
        texts.append(json.dumps(tool_config))
        choice = tool_config.get("toolChoice") or {"auto": {}}
        if "tool" in choice:
            tool_name = choice["tool"].get("name")
            if tool_name not in specs:
                raise _ApiError(400, "ValidationException", f"toolChoice names a tool that is not defined: {tool_name!r}.")
        elif "any" in choice:
            tool_name = next(iter(specs))
        if tool_name is not None:
            schema = (specs[tool_name].get("inputSchema") or {}).get("json")
            tool_schema = schema if isinstance(schema, dict) else {"type": "object"}
    return _Parsed(
        user_text=last_user,
        system_text=system_text,
        all_text="\n".join(texts),
        max_tokens=max_tokens,
        tool_name=tool_name,
        tool_schema=tool_schema,
        cached_prefixes=cached_prefixes,
        service_tier=service_tier,
        tier_sent=tier_sent,
    )


def _base_model(model: str) -> str | None:
    base = base_model_id(model)
    return base if base in NOVA_MODELS else None


def _count_tokens(text: str) -> int:
    return len(text) // 4 + 1


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response(
        {"message": message},
        status=status,
        headers={"x-amzn-ErrorType": code + _ERROR_NAMESPACE, "x-amzn-RequestId": str(uuid.uuid4())},
    )


def _break_json(payload: dict[str, Any]) -> str:
    """Valid content, broken syntax: single quotes and trailing commas, as models sometimes write."""
    text = json.dumps(payload, indent=1).replace('"', "'")
    return text.replace("\n}", ",\n}")


class EmulatorThread:
    """Runs an emulator on its own event loop in a background thread (tests, the CLI scorer)."""

    def __init__(self, settings: EmulatorSettings | None = None, host: str = "127.0.0.1", port: int = 0):
        self.server = EmulatorServer(settings)
        self._host, self._port = host, port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="bedrock-emulator", daemon=True)
        self.url = ""

    def __enter__(self) -> EmulatorThread:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def start(self) -> str:
        self._thread.start()
        self.url = asyncio.run_coroutine_threadsafe(self.server.start(self._host, self._port), self._loop).result(timeout=30)
        return self.url

    def stop(self) -> None:
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop).result(timeout=30)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)

    def update(self, **patch: Any) -> None:
        """Change settings at runtime; returns once they apply."""

        async def apply() -> None:
            self.server.settings = self.server.settings.merged(patch)

        asyncio.run_coroutine_threadsafe(apply(), self._loop).result(timeout=10)

    def replace_settings(self, settings: EmulatorSettings) -> None:
        """Swap all settings at once; returns once they apply."""

        async def apply() -> None:
            self.server.settings = settings

        asyncio.run_coroutine_threadsafe(apply(), self._loop).result(timeout=10)

    def reset(self) -> None:
        """Forget stats and quota state; returns once done."""

        async def reset() -> None:
            self.server.reset()

        asyncio.run_coroutine_threadsafe(reset(), self._loop).result(timeout=10)

    def stats(self) -> dict[str, ModelStats]:
        return self.server.stats
