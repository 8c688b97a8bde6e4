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
    aws_env.update(faults={"hang": 1.0, "hang_s": 5.0})
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
