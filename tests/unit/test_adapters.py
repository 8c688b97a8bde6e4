"""Adapters' pure parts: request/response shapes and failure handling, without a farm."""

import pytest

from farm.adapters.nova_rft import rft_output
from farm.adapters.openrlhf import openrlhf_response, rollouts_from_openrlhf
from farm.adapters.trl import FarmReward
from farm.errors import ConfigError, FarmError, InputError
from farm.wire import RewardResult, Verdict


def result(rid: str, reward: float | None) -> RewardResult:
    verdict = Verdict(score=reward, status="ok" if reward is not None else "failed", error=None if reward is not None else "x")
    return RewardResult(id=rid, reward=reward, status="ok" if reward is not None else "failed", judges={"j": verdict})


def test_openrlhf_request_splits_prompt_from_query():
    rollouts = rollouts_from_openrlhf({"query": ["Q?\nA: 5", "other"], "prompts": ["Q?\n", "Q?\n"], "labels": ["5", None]})
    assert [r.response for r in rollouts] == ["A: 5", "other"]
    assert rollouts[0].group == rollouts[1].group and rollouts[0].reference == "5"


@pytest.mark.parametrize(
    ("payload", "field"),
    [({"query": "x"}, "query"), ({"query": ["a"], "prompts": ["a", "b"]}, "prompts"), ({"query": [3]}, "query[0]")],
)
def test_openrlhf_bad_requests_name_the_field(payload, field):
    with pytest.raises(InputError) as info:
        rollouts_from_openrlhf(payload)
    assert info.value.field == field


def test_openrlhf_response_keeps_failures_null():
    body = openrlhf_response([result("a", 0.5), result("b", None)])
    assert body["rewards"] == [0.5, None] and body["extra_logs"]["farm_failed"] == [0.0, 1.0]


def test_nova_rft_output_refuses_to_invent_zero():
    with pytest.raises(FarmError, match=r"could not score 1 sample\(s\): \['b'\]"):
        rft_output([result("a", 0.5), result("b", None)])
    out = rft_output([result("b", None)], on_failure="zero")
    assert out[0]["aggregate_reward_score"] == 0.0
    assert {"name": "farm_failed", "value": 1.0, "type": "Metric"} in out[0]["metrics_list"]


def test_trl_reward_checks_its_inputs():
    reward = FarmReward(url="http://127.0.0.1:9", reference_column="answer")
    with pytest.raises(ConfigError, match="reference column 'answer' is not in the batch"):
        reward(prompts=["p"], completions=["c"], solution=["x"])
    with pytest.raises(ConfigError, match="2 prompts and 1 completions"):
        reward(prompts=["p", "q"], completions=["c"])
