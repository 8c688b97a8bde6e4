"""Adapters' pure parts: request/response shapes, failure policies and metrics, without a farm."""

import math
import sys
import tomllib
import types
from pathlib import Path

import numpy as np
import pytest

from farm.adapters.common import batch_metrics, sample_metrics
from farm.adapters.nova_rft import rft_output
from farm.adapters.openrlhf import openrlhf_response, rollouts_from_openrlhf, split_chat_template
from farm.adapters.trl import AsyncFarmReward, FarmReward
from farm.adapters.verl import compute_score, impute_failed, verl_outputs
from farm.client import SERVER_RAY_VERSION, FarmClient, check_ray_version
from farm.errors import ConfigError, FarmError, InputError
from farm.wire import RewardResult, Verdict

REPO = Path(__file__).resolve().parents[2]


def result(rid: str, reward: float | None, *, status: str | None = None, disagreement: float | None = None) -> RewardResult:
    verdict = Verdict(score=reward, status="ok" if reward is not None else "failed", error=None if reward is not None else "x")
    status = status or ("ok" if reward is not None else "failed")
    return RewardResult(id=rid, reward=reward, status=status, judges={"j": verdict}, disagreement=disagreement)  # type: ignore[arg-type]


def test_openrlhf_request_splits_prompt_from_query():
    rollouts = rollouts_from_openrlhf({"query": ["Q?\nA: 5", "other"], "prompts": ["Q?\n", "Q?\n"], "labels": ["5", None]})
    assert [r.response for r in rollouts] == ["A: 5", "other"]
    assert rollouts[0].group == rollouts[1].group and rollouts[0].reference == "5"


def test_openrlhf_queries_without_prompts_are_not_one_group():
    """Older OpenRLHF sends only `query`: unrelated samples must not reach the preference judge as one group."""
    rollouts = rollouts_from_openrlhf({"query": ["Q1? A: 5", "Q2? A: 7"]})
    assert [r.group for r in rollouts] == [None, None] and len({r.id for r in rollouts}) == 2


def test_openrlhf_chat_template_is_stripped_unless_disabled():
    prompt = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is 2+3?<|im_end|>\n<|im_start|>assistant\n"
    payload = {"query": [prompt + "It is 5.<|im_end|><|endoftext|>"], "prompts": [prompt], "labels": ["5"]}
    (rollout,) = rollouts_from_openrlhf(payload)
    assert rollout.response == "It is 5."
    assert [(m.role, m.content) for m in rollout.prompt] == [("system", "Be brief."), ("user", "What is 2+3?")]
    (raw,) = rollouts_from_openrlhf(payload, strip_template=False)
    assert raw.response == "It is 5.<|im_end|><|endoftext|>" and raw.prompt == prompt


def test_llama3_and_gemma_templates_become_messages():
    llama = "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    assert split_chat_template(llama) == [{"role": "user", "content": "Hi?"}]
    gemma = "<bos><start_of_turn>user\nHi?<end_of_turn>\n<start_of_turn>model\n"
    assert split_chat_template(gemma) == [{"role": "user", "content": "Hi?"}]
    assert split_chat_template("plain text") is None


@pytest.mark.parametrize(
    ("payload", "field"),
    [({"query": "x"}, "query"), ({"query": ["a"], "prompts": ["a", "b"]}, "prompts"), ({"query": [3]}, "query[0]")],
)
def test_openrlhf_bad_requests_name_the_field(payload, field):
    with pytest.raises(InputError) as info:
        rollouts_from_openrlhf(payload)
    assert info.value.field == field


def test_openrlhf_response_is_numbers_only():
    body = openrlhf_response([result("a", 0.5, disagreement=0.1), result("b", None)], failed_reward=-1.0)
    assert body["rewards"] == [0.5, -1.0] and body["scores"] == [0.5, -1.0]
    logs = body["extra_logs"]
    assert logs["farm_failed"] == [0.0, 1.0] and logs["farm_disagreement"] == [0.1, 0.0]
    assert logs["farm_judge_j"] == [0.5, 0.0] and logs["farm_judge_j_scored"] == [1.0, 0.0]
    for values in logs.values():
        assert all(isinstance(v, float) and math.isfinite(v) for v in values)


def test_nova_rft_output_refuses_to_invent_zero():
    with pytest.raises(FarmError, match=r"could not score 1 sample\(s\): \['b'\]"):
        rft_output([result("a", 0.5), result("b", None)])
    out = rft_output([result("b", None)], on_failure="zero")
    assert out[0]["aggregate_reward_score"] == 0.0
    assert {"name": "farm_failed", "value": 1.0, "type": "Metric"} in out[0]["metrics_list"]


def test_nova_rft_output_keeps_id_types_and_reports_partial():
    out = rft_output([result("7", 0.5, status="partial")], ids={"7": 7})
    assert out[0]["id"] == 7
    assert {"name": "farm_partial", "value": 1.0, "type": "Metric"} in out[0]["metrics_list"]


def test_trl_reward_checks_its_inputs():
    reward = FarmReward(url="http://127.0.0.1:9", reference_column="answer")
    with pytest.raises(ConfigError, match="reference column 'answer' is not in the batch"):
        reward(prompts=["p"], completions=["c"], solution=["x"])
    with pytest.raises(ConfigError, match="2 prompts and 1 completions"):
        reward(prompts=["p", "q"], completions=["c"])


def test_trl_async_reward_is_a_coroutine_function():
    import inspect

    assert inspect.iscoroutinefunction(AsyncFarmReward(url="http://x").__call__)


def test_batch_metrics_report_degradation():
    metrics = batch_metrics([result("a", 1.0, status="partial"), result("b", 0.0, disagreement=0.4), result("c", None)])
    assert metrics["farm/partial"] == pytest.approx(1 / 3) and metrics["farm/failed"] == pytest.approx(1 / 3)
    assert metrics["farm/disagreement"] == 0.4 and metrics["farm/judge/j"] == 0.5
    assert metrics["farm/judge/j/failed"] == pytest.approx(1 / 3)
    assert set(sample_metrics(result("a", 1.0))) == {
        "farm_failed",
        "farm_partial",
        "farm_disagreement",
        "farm_judge_j",
        "farm_judge_j_scored",
    }


def test_verl_imputes_group_mean_and_never_nan(monkeypatch):
    monkeypatch.delenv("FARM_VERL_ON_FAILURE", raising=False)
    results = [result("a", 1.0), result("b", 0.0), result("c", None), result("d", None), result("e", 0.2)]
    groups = ["g1", "g1", "g1", "g2", None]
    assert impute_failed(results, groups) == [1.0, 0.0, 0.5, pytest.approx(0.4), 0.2]
    outputs = verl_outputs(results[:3], groups[:3])
    assert [o["score"] for o in outputs] == [1.0, 0.0, 0.5] and [o["farm_failed"] for o in outputs] == [0.0, 0.0, 1.0]
    with pytest.raises(FarmError, match="2 of 3 rollouts"):
        verl_outputs([result("a", 1.0), result("b", None), result("c", None)], ["g", "g", "g"])
    monkeypatch.setenv("FARM_VERL_ON_FAILURE", "raise")
    with pytest.raises(FarmError, match="failing the step"):
        verl_outputs(results[:3], groups[:3])


def test_verl_batched_form_takes_numpy_columns(monkeypatch):
    seen = []

    class Client:
        def score(self, rows):
            seen.extend(rows)
            return [result(r["id"], 1.0) for r in rows]

    monkeypatch.setattr("farm.adapters.verl._client", Client())
    out = compute_score(
        data_sources=np.array(["gsm8k", "gsm8k"], dtype=object),
        solution_strs=["a", "b"],
        ground_truths=np.array(["1", "2"], dtype=object),
        extra_infos=np.array([{"uid": "u1", "question": "q"}, {"uid": "u1", "question": "q"}], dtype=object),
    )
    assert [o["score"] for o in out] == [1.0, 1.0]
    assert [r["group"] for r in seen] == ["u1", "u1"] and seen[0]["reference"] == "1"


def test_handle_client_names_both_ray_versions(monkeypatch):
    check_ray_version(SERVER_RAY_VERSION)
    with pytest.raises(FarmError, match=r"needs Ray 2\.60\.0 .* has Ray 2\.55\.0"):
        check_ray_version("2.55.0", "2.60.0")
    fake_ray = types.ModuleType("ray")
    fake_ray.__version__ = "2.55.0"  # a trainer's Ray (OpenRLHF's pin) in this process
    monkeypatch.setitem(sys.modules, "ray", fake_ray)
    with pytest.raises(FarmError, match=rf"needs Ray {SERVER_RAY_VERSION} .* has Ray 2\.55\.0"):
        FarmClient("reward-farm").score([{"id": "a", "prompt": "p", "response": "r"}])


def test_server_extra_pins_the_ray_the_handle_client_states():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert f"ray[default,serve,data]=={SERVER_RAY_VERSION}" in project["optional-dependencies"]["server"]
    assert not any(dep.startswith("ray") for dep in project["dependencies"]), "the base (trainer) install must not pin Ray"


def test_trainer_facing_modules_import_without_ray_or_aiobotocore():
    import subprocess

    code = (
        "import sys, farm.client, farm.wire, farm.adapters.trl, farm.adapters.verl, farm.adapters.verl_manager, "
        "farm.adapters.openrlhf, farm.adapters.nova_rft\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'aiobotocore', 'botocore', 'boto3', 'torch', 'verl'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_verl_gatherer_sends_concurrent_samples_as_one_call_of_whole_groups():
    import asyncio

    from farm.adapters.verl_manager import GroupGatherer

    sent: list[list[str]] = []

    async def score(rows):
        sent.append([r["group"] for r in rows])
        return [{"score": float(i)} for i in range(len(rows))]

    async def run() -> list[dict[str, float]]:
        gatherer = GroupGatherer(score, group_size=2, gather_s=5.0)
        return await asyncio.gather(*(gatherer.submit({"id": str(i), "group": g}) for i, g in enumerate("aabb")))

    outputs = asyncio.run(asyncio.wait_for(run(), timeout=2.0))  # complete groups flush at once, not after gather_s
    assert sent == [["a", "a", "b", "b"]] and [o["score"] for o in outputs] == [0.0, 1.0, 2.0, 3.0]

    async def incomplete() -> list[dict[str, float]]:
        gatherer = GroupGatherer(score, group_size=4, gather_s=0.05)
        return await asyncio.gather(*(gatherer.submit({"id": str(i), "group": "c"}) for i in range(3)))

    assert len(asyncio.run(incomplete())) == 3 and sent[-1] == ["c", "c", "c"]  # a short group still goes, after the wait
