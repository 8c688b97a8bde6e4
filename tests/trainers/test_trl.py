"""TRL 1.16's `GRPOTrainer`, two steps on CPU, a tiny random-init model and the test's own
tokenizer: rewards from `farm serve` over HTTP and from the in-process mode."""

from __future__ import annotations

import math
from typing import Any

import pytest

from tests.trainers.conftest import NOVA_DOWN, TOKEN, farm_config

pytest.importorskip("trl")
pytestmark = [pytest.mark.trainers, pytest.mark.integration, pytest.mark.slow]

ROWS = [
    ("What is 2 + 3? End with #### and the number.", "5"),
    ("Natalia sold 48 clips in April and half as many in May. How many in total?", "72"),
]


def _train(tokenizer_path, reward: Any, tmp_path) -> list[dict[str, Any]]:
    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
    from trl import GRPOConfig, GRPOTrainer

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=2,
            max_position_embeddings=256,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    )
    dataset = Dataset.from_dict({"prompt": [q for q, _ in ROWS] * 2, "answer": [a for _, a in ROWS] * 2})
    args = GRPOConfig(
        output_dir=str(tmp_path / "grpo"),
        max_steps=2,
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=12,
        learning_rate=1e-4,
        logging_steps=1,
        report_to=[],
        use_cpu=True,
        bf16=False,
        save_strategy="no",
        seed=0,
        dataloader_num_workers=0,
    )
    trainer = GRPOTrainer(model=model, reward_funcs=[reward], args=args, train_dataset=dataset, processing_class=tokenizer)
    trainer.train()
    return [entry for entry in trainer.state.log_history if "loss" in entry or "reward" in entry]


def test_grpo_trains_two_steps_on_farm_rewards_over_http(farm_http, tiny_tokenizer, nova, tmp_path):
    from farm.adapters.trl import FarmReward

    reward = FarmReward(url=farm_http["url"], token=TOKEN, reference_column="answer")
    logs = _train(tiny_tokenizer, reward, tmp_path)
    assert len(logs) >= 2
    for entry in logs[:2]:
        assert math.isfinite(entry["rewards/farm_reward/mean"])
        assert entry["farm/ok"] + entry["farm/partial"] + entry["farm/failed"] == pytest.approx(1.0)
        assert "farm/judge/rubric" in entry and "farm/judge/final_answer" in entry


def test_grpo_in_process_mode_shows_failing_judges(tiny_tokenizer, nova, tmp_path, monkeypatch):
    """No Serve: `FarmReward(config=...)`. With the only judge (Nova) down every reward is None,
    which TRL reads as NaN (its documented 'unscorable') and the farm's metrics say why."""
    from farm.adapters.trl import AsyncFarmReward, FarmReward

    monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", nova.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    rubric_only = farm_config([farm_config()["judges"][1]])
    async_reward = AsyncFarmReward(config=rubric_only, reference_column="answer")  # TRL awaits it
    healthy = _train(tiny_tokenizer, async_reward, tmp_path)
    async_reward._client.close()
    assert all(entry["farm/ok"] == 1.0 and math.isfinite(entry["rewards/farm_reward/mean"]) for entry in healthy[:2])
    nova.update(**NOVA_DOWN)
    failing = FarmReward(config=rubric_only, reference_column="answer")
    logs = _train(tiny_tokenizer, failing, tmp_path)
    for entry in logs[:2]:
        assert entry["farm/failed"] == 1.0 and entry["farm/judge/rubric/failed"] == 1.0
        mean = entry["rewards/farm_reward/mean"]  # None -> NaN (logged as None), never an invented 0
        assert mean is None or math.isnan(mean)
        assert math.isfinite(entry["loss"])
    failing._client.close()
