"""verl 0.9.1's reward loop with the farm's reward manager, and its own GRPO advantage on the output.

`RewardLoopWorker` (verl's code: config → `load_reward_manager` → `compute_score_batch`, one
`run_single` task per sample) runs in this process instead of as a Ray actor; the scores are
assembled with verl's `assemble_rm_scores` and fed to `compute_grpo_outcome_advantage`.
"""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest

from tests.trainers.conftest import NOVA_DOWN

pytest.importorskip("verl")
pytestmark = [pytest.mark.trainers, pytest.mark.integration, pytest.mark.ray, pytest.mark.slow]

PREFERENCE_MODEL = "amazon.nova-micro-v1:0"
GROUP = 4


def _config(tokenizer_path):
    from omegaconf import OmegaConf

    return OmegaConf.create(
        {
            "actor_rollout_ref": {"model": {"path": str(tokenizer_path), "tokenizer_path": None}, "rollout": {"n": GROUP}},
            "reward": {
                "num_workers": 1,
                "custom_reward_function": {"path": None, "name": None},
                "reward_model": {"enable": False},
                "reward_manager": {
                    "source": "importlib",
                    "name": "FarmRewardManager",
                    "module": {"path": "pkg://farm.adapters.verl_manager"},
                },
                "sandbox_fusion": None,
            },
            "trainer": {"experiment_name": "farm-test"},
        }
    )


def _batch(tokenizer_path, questions: list[tuple[str, str | None, list[str]]]):
    """A DataProto as verl's trainer hands it to the reward loop: left-padded prompts, right-padded
    responses, `uid` per prompt repeated over its samples."""
    import torch
    from transformers import AutoTokenizer
    from verl import DataProto

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    rows = [(q, truth, uid, answer) for uid, (q, truth, answers) in enumerate(questions) for answer in answers]
    prompts = [tokenizer(q, add_special_tokens=False)["input_ids"] for q, *_ in rows]
    responses = [tokenizer(a + tokenizer.eos_token, add_special_tokens=False)["input_ids"] for *_, a in rows]
    p_len, r_len = max(map(len, prompts)), max(map(len, responses))
    pad = tokenizer.pad_token_id
    prompt_ids = torch.tensor([[pad] * (p_len - len(p)) + p for p in prompts])
    response_ids = torch.tensor([r + [pad] * (r_len - len(r)) for r in responses])
    mask = torch.tensor(
        [[0] * (p_len - len(p)) + [1] * len(p) + [1] * len(r) + [0] * (r_len - len(r)) for p, r in zip(prompts, responses, strict=True)]
    )
    return DataProto.from_dict(
        tensors={"prompts": prompt_ids, "responses": response_ids, "attention_mask": mask},
        non_tensors={
            "data_source": np.array(["gsm8k"] * len(rows), dtype=object),
            "reward_model": np.array([{"ground_truth": truth} for _, truth, _, _ in rows], dtype=object),
            "extra_info": np.array([{"question": q, "index": uid} for q, _, uid, _ in rows], dtype=object),
            "raw_prompt": np.array([[{"role": "user", "content": q}] for q, *_ in rows] + [None], dtype=object)[:-1],
            "uid": np.array([f"uid-{uid}" for _, _, uid, _ in rows], dtype=object),
        },
    )


def _run_reward_loop(config, data):
    from verl.experimental.reward_loop.reward_loop import RewardLoopWorker
    from verl.trainer.ppo.core_algos import compute_grpo_outcome_advantage

    worker = RewardLoopWorker(config, None)
    outputs = asyncio.run(worker.compute_score_batch(data))
    scores = [o["reward_score"] for o in outputs]
    rm_scores = type(worker.reward_manager).assemble_rm_scores(data, scores)  # what RewardLoopManager does
    response_mask = data.batch["attention_mask"][:, data.batch["prompts"].shape[1] :]
    advantages, _ = compute_grpo_outcome_advantage(rm_scores, response_mask, data.non_tensor_batch["uid"])
    return worker, outputs, advantages


QUESTIONS = [
    (
        "Natalia sold 48 clips in April and half as many in May. How many in total?",
        "72",
        ["48 + 24 = 72. #### 72", "48 + 48 = 96. #### 96", "She sold 72. #### 72", "#### 70"],
    ),
    ("What is 2 + 3?", "5", ["2 + 3 = 5. #### 5", "It is 6. #### 6", "The answer is 5", "#### 4"]),
]


def test_verl_reward_loop_sends_whole_groups(farm_http, tiny_tokenizer, nova, monkeypatch):
    monkeypatch.setenv("FARM_URL", farm_http["url"])
    monkeypatch.setenv("FARM_API_TOKEN", farm_http["token"])
    data = _batch(tiny_tokenizer, QUESTIONS)
    worker, outputs, advantages = _run_reward_loop(_config(tiny_tokenizer), data)
    assert worker.reward_manager.gatherer.calls == [2 * GROUP]  # one farm call, both uid groups whole
    # the preference judge ranked each whole group (listwise, the default: 2 shuffled orders per group),
    # not each sample against a label
    assert nova.server.stats[PREFERENCE_MODEL].received >= 2 * 2
    scores = [o["reward_score"] for o in outputs]
    assert scores[0] > scores[1] and scores[4] > scores[5]
    assert {"farm_failed", "farm_partial", "farm_judge_preference"} <= set(outputs[0]["reward_extra_info"])
    assert bool(advantages.isfinite().all())


def test_verl_failed_rollouts_never_poison_their_group(farm_http, tiny_tokenizer, nova, monkeypatch):
    """Nova down and no reference for two samples of a group: nothing can judge them."""
    monkeypatch.setenv("FARM_URL", farm_http["url"])
    monkeypatch.setenv("FARM_API_TOKEN", farm_http["token"])
    nova.update(**NOVA_DOWN)
    data = _batch(tiny_tokenizer, [(q + " Please.", truth, answers) for q, truth, answers in QUESTIONS])
    data.non_tensor_batch["reward_model"][2] = {"ground_truth": None}
    data.non_tensor_batch["reward_model"][3] = {"ground_truth": None}
    _, outputs, advantages = _run_reward_loop(_config(tiny_tokenizer), data)
    failed = [o["reward_extra_info"]["farm_failed"] for o in outputs]
    assert failed == [0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    assert all(math.isfinite(o["reward_score"]) for o in outputs)
    assert bool(advantages.isfinite().all())  # a NaN score gave the whole group NaN advantages before
    per_sample = advantages.abs().amax(dim=1)
    assert per_sample[2] == 0 and per_sample[3] == 0  # the unscored rollouts get no gradient
    assert per_sample[0] > 0 and per_sample[4] > 0  # the scored ones keep their signal
    assert all(o["reward_extra_info"]["farm_partial"] == 1.0 for i, o in enumerate(outputs) if i not in (2, 3))
