"""The Converse client against the emulator over loopback HTTP, through real aiobotocore."""

import asyncio
import time

import aiohttp
import boto3
import pytest

from farm.bedrock import ConverseClient, ConverseRequest
from farm.config import RetryConfig
from farm.errors import JudgeTimeoutError, PermanentJudgeError, ThrottledError, TransientJudgeError
from farm.ratelimit import QuotaRegistry
from tests.conftest import fast_bedrock

pytestmark = pytest.mark.integration

MODEL = "amazon.nova-lite-v1:0"


def client_for(**overrides) -> ConverseClient:
    config = fast_bedrock(**overrides)
    return ConverseClient(config, QuotaRegistry(lambda m, r: config.default_quota))


def call(request: ConverseRequest, deadline_s: float = 10.0, **overrides):
    async def main():
        client = client_for(**overrides)
        try:
            return await client.converse(request, deadline=time.monotonic() + deadline_s), client
        finally:
            await client.aclose()

    return asyncio.run(main())


def test_converse_returns_text_usage_and_latency(aws_env):
    reply, client = call(ConverseRequest(model=MODEL, user_text="hello", max_tokens=100))
    assert "emulator" in reply.text
    assert reply.input_tokens > 0 and reply.output_tokens > 0
    assert reply.stop_reason == "end_turn" and reply.attempts == 1 and reply.latency_ms > 0
    assert client.stats.succeeded == 1 and client.stats.input_tokens == reply.input_tokens
    assert aws_env.stats()[MODEL].received == 1


def test_inference_profile_ids_work(aws_env):
    reply, _ = call(ConverseRequest(model="us.amazon.nova-2-lite-v1:0", user_text="hi"))
    assert reply.output_tokens > 0


@pytest.mark.parametrize(
    ("fault", "code", "status"),
    [
        ("throttle", "ThrottlingException", 429),
        ("not_ready", "ModelNotReadyException", 429),
        ("model_timeout", "ModelTimeoutException", 408),
        ("model_error", "ModelErrorException", 424),
        ("internal", "InternalServerException", 500),
        ("unavailable", "ServiceUnavailableException", 503),
    ],
)
def test_retryable_errors_are_retried_up_to_max_attempts(aws_env, fault, code, status):
    aws_env.update(faults={fault: 1.0})
    expected = ThrottledError if status == 429 else TransientJudgeError
    with pytest.raises(expected, match=f"gave up after 3 attempt.*{code} \\({status}\\)"):
        call(ConverseRequest(model=MODEL, user_text="x"), retry=RetryConfig(max_attempts=3, base_delay_s=0.01, max_delay_s=0.02))
    stats = aws_env.stats()[MODEL]
    assert stats.received == 3 and stats.errors[code] == 3


def test_intermittent_faults_are_retried_to_success(aws_env):
    aws_env.update(faults={"throttle": 0.3, "internal": 0.2, "unavailable": 0.1})

    async def main():
        client = client_for(retry=RetryConfig(max_attempts=10, base_delay_s=0.005, max_delay_s=0.02))
        try:
            replies = await asyncio.gather(
                *(client.converse(ConverseRequest(model=MODEL, user_text=f"q{i}"), deadline=time.monotonic() + 30) for i in range(40))
            )
        finally:
            await client.aclose()
        return replies, client

    replies, client = asyncio.run(main())
    assert len(replies) == 40
    assert client.stats.attempts > 40 and client.stats.succeeded == 40
    assert sum(aws_env.stats()[MODEL].errors.values()) == client.stats.attempts - 40


@pytest.mark.parametrize(
    ("model", "settings", "code", "status"),
    [
        ("amazon.nova-giant-v9:0", {}, "ValidationException", 400),
        (MODEL, {"models": {MODEL: {"access": "denied"}}}, "AccessDeniedException", 403),
        (MODEL, {"models": {MODEL: {"access": "not_found"}}}, "ResourceNotFoundException", 404),
    ],
)
def test_non_retryable_errors_surface_with_message(aws_env, model, settings, code, status):
    if settings:
        aws_env.update(**settings)
    with pytest.raises(PermanentJudgeError, match=f"{code} \\({status}\\): .+") as info:
        call(ConverseRequest(model=model, user_text="x"))
    assert "invalid" in str(info.value) or "access" in str(info.value) or "not be found" in str(info.value)
    assert aws_env.stats()[model].received == 1  # not retried


def test_validation_errors_from_bad_requests(aws_env):
    with pytest.raises(PermanentJudgeError, match="maxTokens must be between"):
        call(ConverseRequest(model=MODEL, user_text="x", max_tokens=50_000))


def test_hang_becomes_timeout_within_deadline(aws_env):
    aws_env.update(faults={"hang": 1.0, "hang_s": 3.0})  # past the deadline: waiting it out would answer, not raise
    started = time.monotonic()
    with pytest.raises((JudgeTimeoutError, TransientJudgeError)):
        call(ConverseRequest(model=MODEL, user_text="x"), deadline_s=1.5, read_timeout_s=0.5)
    assert time.monotonic() - started < 4.0


def test_emulator_requires_sigv4_scoped_to_bedrock(aws_env):
    async def raw_post():
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{aws_env.url}/model/{MODEL}/converse", json={"messages": []}) as response:
                return response.status, response.headers.get("x-amzn-ErrorType", ""), await response.json()

    status, error_type, body = asyncio.run(raw_post())
    assert status == 403 and error_type.startswith("UnrecognizedClientException:")
    assert "SigV4" in body["message"]


def test_unchanged_boto3_client_uses_tool_output(aws_env):
    """The plain synchronous boto3 client, configured only by environment variables."""
    client = boto3.client("bedrock-runtime", region_name="us-east-1")
    schema = {"type": "object", "properties": {"winner": {"type": "string"}}, "required": ["winner"]}
    text = (
        "<<<BEGIN TASK ab12>>>\n2+2?\n<<<END TASK ab12>>>\n<<<BEGIN RESPONSE_A ab12>>>\nA: 4\n<<<END RESPONSE_A ab12>>>\n"
        "<<<BEGIN RESPONSE_B ab12>>>\nA: 5\n<<<END RESPONSE_B ab12>>>\n"
        "<<<BEGIN REFERENCE ab12>>>\nA: 4\n<<<END REFERENCE ab12>>>"
    )
    response = client.converse(
        modelId=MODEL,
        messages=[{"role": "user", "content": [{"text": text}]}],
        inferenceConfig={"maxTokens": 200, "temperature": 0},
        toolConfig={"tools": [{"toolSpec": {"name": "pick", "inputSchema": {"json": schema}}}], "toolChoice": {"tool": {"name": "pick"}}},
    )
    assert response["stopReason"] == "tool_use"
    tool_use = response["output"]["message"]["content"][0]["toolUse"]
    assert tool_use["name"] == "pick" and tool_use["input"]["winner"] == "A"
    assert response["usage"]["totalTokens"] == response["usage"]["inputTokens"] + response["usage"]["outputTokens"]
    assert response["metrics"]["latencyMs"] >= 0
    with pytest.raises(client.exceptions.ValidationException):
        client.converse(modelId=MODEL, messages=[{"role": "assistant", "content": [{"text": "x"}]}])


def _boto3():
    return boto3.client("bedrock-runtime", region_name="us-east-1")


def test_plain_boto3_forced_tool_call_gets_schema_valid_input(aws_env):
    """A forced tool call outside the farm's prompt format is answered like Bedrock would:
    input that fits the tool's schema (types, required, enums, bounds), never `{}`."""
    import jsonschema

    schema = {
        "type": "object",
        "properties": {
            "sentiment": {"type": "string", "enum": ["positive", "negative", "neutral"]},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "stars": {"type": "integer", "minimum": 1, "maximum": 5},
            "topics": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3},
            "flagged": {"type": "boolean"},
        },
        "required": ["sentiment", "confidence", "stars", "topics", "flagged"],
    }
    response = _boto3().converse(
        modelId="us.amazon.nova-2-lite-v1:0",
        messages=[{"role": "user", "content": [{"text": "Classify: the soup was lovely but cold."}]}],
        inferenceConfig={"maxTokens": 300},
        toolConfig={
            "tools": [{"toolSpec": {"name": "classify", "inputSchema": {"json": schema}}}],
            "toolChoice": {"tool": {"name": "classify"}},
        },
    )
    assert response["stopReason"] == "tool_use"
    tool_input = response["output"]["message"]["content"][0]["toolUse"]["input"]
    jsonschema.validate(tool_input, schema)
    assert set(tool_input) == set(schema["required"])


def test_service_tier_is_sent_validated_and_echoed(aws_env):
    client = _boto3()
    message = [{"role": "user", "content": [{"text": "hi"}]}]
    flex = client.converse(modelId=MODEL, messages=message, serviceTier={"type": "flex"})
    assert flex["serviceTier"] == {"type": "flex"}
    with pytest.raises(client.exceptions.ValidationException, match="service tier 'reserved' is not supported"):
        client.converse(modelId=MODEL, messages=message, serviceTier={"type": "reserved"})
    aws_env.update(models={MODEL: {"service_tiers": ["default"]}})
    with pytest.raises(client.exceptions.ValidationException, match="'flex' is not supported"):
        client.converse(modelId=MODEL, messages=message, serviceTier={"type": "flex"})
    # the farm's client: a judge's tier goes out as serviceTier; an unsupported one is permanent, not retried
    with pytest.raises(PermanentJudgeError, match=r"ValidationException \(400\).*'flex' is not supported"):
        call(ConverseRequest(model=MODEL, user_text="x", service_tier="flex"))
    reply, client_ = call(ConverseRequest(model="amazon.nova-micro-v1:0", user_text="x", service_tier="priority"))
    assert reply.service_tier == "priority" and ("amazon.nova-micro-v1:0", "priority") in client_.stats.usage
    stats = aws_env.stats()
    assert stats[MODEL].tiers == {"flex": 1} and stats[MODEL].errors["ValidationException"] == 3
    assert stats["amazon.nova-micro-v1:0"].tiers == {"priority": 1}


def test_cache_point_writes_then_reads_the_shared_prefix(aws_env):
    """The first call with a long shared prefix writes it to the cache, the next reads it:
    `inputTokens` counts only the rest, and the farm's client accounts both."""
    prefix = "Grade against this rubric and reference. " * 120  # ~1,200 tokens
    client = _boto3()

    def send(tail: str, point: bool = True):
        content = [{"text": prefix}, *([{"cachePoint": {"type": "default"}}] if point else []), {"text": tail}]
        return client.converse(modelId=MODEL, messages=[{"role": "user", "content": content}], inferenceConfig={"maxTokens": 64})["usage"]

    first, second, plain = send("response one"), send("response two"), send("response three", point=False)
    prefix_tokens = len(prefix) // 4 + 1
    assert first["cacheWriteInputTokens"] == prefix_tokens and first["cacheReadInputTokens"] == 0
    assert second["cacheReadInputTokens"] == prefix_tokens and second["cacheWriteInputTokens"] == 0
    assert second["inputTokens"] < 20 < plain["inputTokens"]
    assert "cacheReadInputTokens" not in plain
    with pytest.raises(client.exceptions.ValidationException, match="cachePoint.type"):
        client.converse(modelId=MODEL, messages=[{"role": "user", "content": [{"text": "x"}, {"cachePoint": {"type": "forever"}}]}])

    request = ConverseRequest(model=MODEL, user_text="response four", user_prefix=prefix, prompt_cache=True)
    reply, farm_client = call(request)
    assert reply.cache_read_tokens == prefix_tokens and reply.input_tokens < 20
    usage = farm_client.stats.usage[(MODEL, "default")]
    assert usage.cache_read_tokens == prefix_tokens and usage.prompt_tokens == reply.input_tokens + prefix_tokens
    assert aws_env.stats()[MODEL].cache_read_tokens == 2 * prefix_tokens


def test_emulator_throttles_by_tokens_reserved_with_max_tokens(aws_env):
    """Like Bedrock, the emulator reserves input + maxTokens at the start: with the same
    tokens-per-minute quota, calls asking for a big maxTokens are throttled sooner."""
    from concurrent.futures import ThreadPoolExecutor

    from botocore.config import Config

    aws_env.update(rpm=100_000, tpm=60_000, burst_s=1.0, latency_ms=300)  # 1,000 tokens in the bucket; calls overlap
    client = boto3.client("bedrock-runtime", region_name="us-east-1", config=Config(retries={"total_max_attempts": 1}))
    message = [{"role": "user", "content": [{"text": "hi"}]}]

    def one(max_tokens: int) -> bool:
        try:
            client.converse(modelId=MODEL, messages=message, inferenceConfig={"maxTokens": max_tokens})
        except client.exceptions.ThrottlingException:
            return False
        return True

    def burst(max_tokens: int) -> int:
        aws_env.reset()
        with ThreadPoolExecutor(8) as pool:
            return sum(pool.map(one, [max_tokens] * 8))

    small, big = burst(40), burst(400)
    assert big <= 3 < small


def test_score_summary_counts_prompt_cache_and_dollars(aws_env, tmp_path):
    """`farm score`'s summary, end to end: a rubric judge on a long shared prompt sends a
    cachePoint, the emulator reads the prefix back from the second call on, and the summary
    prices the run below what the same tokens cost uncached."""
    import json

    from farm.scorefile import score_file
    from tests.conftest import make_config

    question = "Read the following policy and answer the question at the end. " + "The policy text goes on. " * 180
    rows = [{"id": f"r{i}", "prompt": question, "response": f"The answer is {i}.", "reference": "The answer is 3."} for i in range(6)]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    criteria = [{"name": "c", "description": "Correct."}]
    rubric = {"name": "rubric", "kind": "rubric", "model": "us.amazon.nova-2-lite-v1:0", "criteria": criteria}
    config = make_config([rubric], batch_size=1)
    summary = asyncio.run(score_file(source, tmp_path / "out.jsonl", config, concurrency=1))  # one call at a time
    assert summary.status == {"ok": 6}
    assert summary.cache_write_tokens > 1_000 and summary.cache_read_tokens == 5 * summary.cache_write_tokens
    assert summary.cost_usd is not None and summary.cost_without_prompt_cache_usd is not None
    assert 0 < summary.cost_usd < summary.cost_without_prompt_cache_usd
    assert summary.cost_per_rollout_usd == pytest.approx(summary.cost_usd / 6, rel=1e-3)
    verdicts = [json.loads(line)["judges"]["rubric"] for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert sum(v["cache_read_tokens"] for v in verdicts) == summary.cache_read_tokens


def test_a_second_question_reads_the_cached_rules_and_writes_its_own_prefix(aws_env):
    rules = "Grading rules and criteria. " * 200  # ~1,400 tokens, the same for every call
    point = {"cachePoint": {"type": "default"}}
    client = _boto3()

    def send(question: str) -> dict:
        return client.converse(
            modelId=MODEL,
            system=[{"text": rules}, point],
            messages=[{"role": "user", "content": [{"text": question}, point, {"text": "the response"}]}],
            inferenceConfig={"maxTokens": 64},
        )["usage"]

    rules_tokens = len(rules) // 4 + 1
    first = send("Question one. " * 100)
    second = send("Question two. " * 100)
    assert first["cacheReadInputTokens"] == 0 and first["cacheWriteInputTokens"] > rules_tokens
    assert second["cacheReadInputTokens"] == rules_tokens  # the rules, from the first call
    assert second["cacheWriteInputTokens"] == first["cacheWriteInputTokens"] - rules_tokens  # only its own question


@pytest.mark.parametrize("warm_wait_s", [5.0, 0.0])
def test_calls_sent_together_let_the_first_write_the_shared_rules(aws_env, warm_wait_s):
    """Six calls at once with the same long system prompt: the first writes it and the others
    wait for it, then read it (one write, five reads); without the wait all six write."""
    aws_env.update(latency_ms=100)
    rules = "Grading rules and criteria. " * 200

    async def main():
        client = client_for(cache_warm_wait_s=warm_wait_s)
        try:
            requests = [ConverseRequest(model=MODEL, user_text=f"r{i}", system_text=rules, prompt_cache=True) for i in range(6)]
            await asyncio.gather(*(client.converse(r, deadline=time.monotonic() + 10) for r in requests))
        finally:
            await client.aclose()
        return client.stats

    stats = asyncio.run(main())
    rules_tokens = len(rules) // 4 + 1
    if warm_wait_s:
        assert (stats.cache_write_tokens, stats.cache_read_tokens) == (rules_tokens, 5 * rules_tokens)
    else:
        assert (stats.cache_write_tokens, stats.cache_read_tokens) == (6 * rules_tokens, 0)
