"""OpenRLHF 0.11.2's own reward fetch and experience code on the farm's `/openrlhf` route.

`SingleTurnAgentExecutor.execute` (its HTTP reward fetch, the query decoded with special tokens
and the chat-templated prompt) and `SamplesGenerator._process_response_into_experience` +
`make_experience_batch` (where a null in `extra_logs` used to crash the batch) run unchanged.
The vLLM engine is the one part replaced: a stand-in that returns fixed token ids (vLLM needs
a GPU), plus import stubs for the `vllm` names that OpenRLHF's modules import.
"""

from __future__ import annotations

import asyncio
import math
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest

from tests.trainers.conftest import NOVA_DOWN, post_json

pytest.importorskip("openrlhf")
pytestmark = [pytest.mark.trainers, pytest.mark.integration, pytest.mark.ray, pytest.mark.slow]

QUESTION = "What is 2 + 3?"


def _import_samples_generator() -> Any:
    """OpenRLHF's `SamplesGenerator`, imported with stand-ins for the `vllm` names its modules
    import; the stand-ins leave `sys.modules` again at once (TRL probes for a real vLLM)."""
    module = sys.modules.get("openrlhf.trainer.ppo_utils.samples_generator")
    if module is not None:
        return module.SamplesGenerator
    vllm = types.ModuleType("vllm")
    vllm.SamplingParams = type("SamplingParams", (), {})  # type: ignore[attr-defined]
    vllm.__version__ = "0.29.0"  # type: ignore[attr-defined]
    inputs = types.ModuleType("vllm.inputs")
    inputs.TokensPrompt = dict  # type: ignore[attr-defined]
    utils = types.ModuleType("vllm.utils")
    utils.random_uuid = lambda: "0"  # type: ignore[attr-defined]
    stubs = {"vllm": vllm, "vllm.inputs": inputs, "vllm.utils": utils}
    sys.modules.update(stubs)
    try:
        from openrlhf.trainer.ppo_utils.samples_generator import SamplesGenerator
    finally:
        for name in stubs:
            sys.modules.pop(name, None)
    return SamplesGenerator


class FixedEngine:
    """Stands in for OpenRLHF's vLLM engine: 'generates' the token ids of a fixed answer."""

    def __init__(self, token_ids: list[int]):
        self.token_ids = token_ids

    async def generate(self, prompt_token_ids: list[int], params: Any, multi_modal_data: Any = None) -> Any:
        output = types.SimpleNamespace(token_ids=self.token_ids, finish_reason="stop", logprobs=None)
        return types.SimpleNamespace(outputs=[output])


def _rollout(url: str, tokenizer_path: Path, answer: str, label: str | None) -> tuple[dict[str, Any], Any]:
    """One OpenRLHF rollout through its own executor and experience code."""
    SamplesGenerator = _import_samples_generator()  # noqa: N806
    from openrlhf.utils.agent import SingleTurnAgentExecutor
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": QUESTION}], tokenize=False, add_generation_prompt=True)
    answer_ids = tokenizer(answer + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
    executor = SingleTurnAgentExecutor(remote_rm_url=url)
    params = types.SimpleNamespace(max_tokens=64, logprobs=None)
    response = asyncio.run(executor.execute(prompt, label, params, 256, tokenizer, FixedEngine(answer_ids)))
    experience = SamplesGenerator._process_response_into_experience(object.__new__(SamplesGenerator), response, max_len=256)
    return response, experience


def test_openrlhf_scores_with_the_route_key_and_strips_the_template(farm_http, tiny_tokenizer, nova):
    from openrlhf.trainer.ppo_utils.experience import make_experience_batch

    url = f"{farm_http['url']}/openrlhf/{farm_http['key']}"
    good, good_exp = _rollout(url, tiny_tokenizer, "2 + 3 = 5. #### 5", "5")
    bad, bad_exp = _rollout(url, tiny_tokenizer, "2 + 3 = 6. #### 6", "5")
    assert isinstance(good["reward"], list) and good["reward"][0] > bad["reward"][0]
    assert good["extra_logs"]["farm_failed"] == [0.0] and good["extra_logs"]["farm_judge_rubric_scored"] == [1.0]
    batch = make_experience_batch([good_exp, bad_exp])
    assert batch.rewards.shape[0] == 2 and bool(batch.rewards.isfinite().all())
    # the judges saw the question, not ChatML markup: the rubric judge's prompt carries no special token
    status, body = post_json(
        f"{farm_http['url']}/score",
        {"rollouts": [{"id": "x", "prompt": QUESTION, "response": "2 + 3 = 5. #### 5", "reference": "5"}]},
        farm_http["token"],
    )
    assert status == 200 and body["results"][0]["judges"]["rubric"]["score"] == good["extra_logs"]["farm_judge_rubric"][0]


def test_openrlhf_survives_one_judge_and_failed_judges(farm_http, tiny_tokenizer, nova):
    """Nova down: one judge left (disagreement undefined), then no judge at all (no label)."""
    from openrlhf.trainer.ppo_utils.experience import make_experience_batch

    nova.update(**NOVA_DOWN)
    url = f"{farm_http['url']}/openrlhf/{farm_http['key']}"
    one_judge, one_exp = _rollout(url, tiny_tokenizer, "Two plus three: 5. #### 5", "5")  # not in the farm's cache
    failed, failed_exp = _rollout(url, tiny_tokenizer, "Two plus three makes 5. #### 5", None)
    assert one_judge["reward"] == [1.0] and one_judge["extra_logs"]["farm_partial"] == [1.0]
    assert one_judge["extra_logs"]["farm_disagreement"] == [0.0] and one_judge["extra_logs"]["farm_judge_rubric_scored"] == [0.0]
    assert failed["reward"] == [0.0] and failed["extra_logs"]["farm_failed"] == [1.0]
    batch = make_experience_batch([one_exp, failed_exp])  # crashed on `null` before: "Could not infer dtype of NoneType"
    assert [float(t.flatten()[0]) for t in batch.info["farm_failed"]] == [0.0, 1.0]
    assert all(math.isfinite(float(t.flatten()[0])) for values in batch.info.values() for t in values)


def test_openrlhf_auth_needs_the_key(farm_http, tiny_tokenizer, nova, caplog):
    body = {"query": ["x"], "prompts": [""], "labels": ["5"]}
    assert post_json(f"{farm_http['url']}/openrlhf", body)[0] == 401  # the bearer token is required without the key
    assert post_json(f"{farm_http['url']}/openrlhf/wrong-key", body)[0] == 401  # checked as a bearer token is
    assert post_json(f"{farm_http['url']}/openrlhf/{farm_http['key']}", body)[0] == 200
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as info:  # a GET with the right key: 404 that does not echo the key
        urllib.request.urlopen(f"{farm_http['url']}/openrlhf/{farm_http['key']}", timeout=60)
    assert info.value.code == 404 and farm_http["key"] not in info.value.read().decode()
    # OpenRLHF's own client on a wrong key: it retries, then gives up and leaves the reward unset
    import openrlhf.utils.agent as agent

    async def no_sleep(_: float) -> None:
        return None

    original = agent.asyncio.sleep
    agent.asyncio.sleep = no_sleep  # its retry loop sleeps 1 s between 5 tries
    try:
        response, _ = _rollout(f"{farm_http['url']}/openrlhf/wrong-key", tiny_tokenizer, "#### 5", "5")
    finally:
        agent.asyncio.sleep = original
    assert response["reward"] is None
    time.sleep(1.0)  # the replicas' and proxy's access logs are written as requests finish
    logs = [path for path in farm_http["ray_tmp"].rglob("*") if path.is_file() and path.suffix in (".log", ".out", ".err")]
    assert any("openrlhf" in p.name or "proxy" in p.name or "replica" in p.name or p.suffix == ".log" for p in logs)
    leaked = [str(path) for path in logs if farm_http["key"] in path.read_text(errors="replace")]
    assert leaked == [], f"the OpenRLHF key appears in {leaked}"
