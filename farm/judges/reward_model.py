"""Reward-model judge: a local Hugging Face sequence-classification model scores each rollout.

The chat template is applied when the tokenizer has one (else prompt and response are encoded
as a text pair); inputs are cut to the model's window and flagged `truncated`; raw logits map
to [0, 1] through the configured calibration.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from typing import Any

from farm.config import MinMaxCalibration, RewardModelJudgeConfig, SigmoidCalibration
from farm.flags import Flag
from farm.judges.base import failed_verdict
from farm.judges.local_runtime import OutOfMemoryError, load_model, run_in_buckets
from farm.wire import Message, Rollout, Verdict

__all__ = ["RewardModelJudge", "calibrate", "fit_minmax"]


def calibrate(logit: float, calibration: SigmoidCalibration | MinMaxCalibration) -> float:
    if isinstance(calibration, MinMaxCalibration):
        return min(1.0, max(0.0, (logit - calibration.low) / (calibration.high - calibration.low)))
    z = calibration.scale * (logit - calibration.shift)
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


def fit_minmax(logits: Sequence[float], lower_q: float = 0.01, upper_q: float = 0.99) -> MinMaxCalibration:
    """A min–max calibration from logits of a calibration set, robust to outliers (quantiles)."""
    ordered = sorted(logits)
    if len(ordered) < 2:
        raise ValueError("need at least two logits to fit a calibration")
    low = ordered[int(lower_q * (len(ordered) - 1))]
    high = ordered[int(upper_q * (len(ordered) - 1))]
    if high <= low:
        high = low + 1e-6
    return MinMaxCalibration(method="minmax", low=low, high=high)


class RewardModelJudge:
    def __init__(self, config: RewardModelJudgeConfig):
        loaded = load_model(config, "AutoModelForSequenceClassification", config.model_path)
        self.name = config.name
        self.config = config
        self._torch, self.tokenizer, self.model, self.device = loaded.torch, loaded.tokenizer, loaded.model, loaded.device
        window = getattr(self.model.config, "max_position_embeddings", None) or 512
        tokenizer_max = self.tokenizer.model_max_length if self.tokenizer.model_max_length < 1_000_000 else window
        self.max_length = config.max_length or min(window, tokenizer_max)
        self.chat = bool(getattr(self.tokenizer, "chat_template", None))

    async def aclose(self) -> None:
        return None

    def _inputs(self, rollout: Rollout) -> tuple[str, str | None]:
        if self.chat:
            turns = (
                [{"role": "user", "content": rollout.prompt}]
                if isinstance(rollout.prompt, str)
                else [{"role": m.role, "content": m.content} for m in rollout.prompt if isinstance(m, Message)]
            )
            turns.append({"role": "assistant", "content": rollout.response})
            return self.tokenizer.apply_chat_template(turns, tokenize=False), None
        prompt = rollout.prompt if isinstance(rollout.prompt, str) else "\n\n".join(m.content for m in rollout.prompt)
        return prompt, rollout.response

    def forward(self, inputs: list[tuple[str, str | None]]) -> list[float]:
        """Raw logits (label `label_index`) for a batch; the unit the benchmark calls directly."""
        torch = self._torch
        firsts = [a for a, _ in inputs]
        seconds = [b for _, b in inputs]
        encoded = self.tokenizer(
            firsts,
            seconds if all(s is not None for s in seconds) else None,
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        ).to(self.device)
        with torch.inference_mode():
            logits = self.model(**encoded).logits
        return logits[:, self.config.label_index].float().cpu().tolist()

    def _lengths(self, inputs: list[tuple[str, str | None]]) -> list[int]:
        firsts = [a for a, _ in inputs]
        seconds = [b for _, b in inputs]
        pair = seconds if all(s is not None for s in seconds) else None
        encoded = self.tokenizer(firsts, pair, truncation=False)
        return [len(ids) for ids in encoded["input_ids"]]

    def score_sync(self, rollouts: Sequence[Rollout]) -> list[Verdict]:
        started = time.monotonic()
        inputs = [self._inputs(r) for r in rollouts]
        lengths = self._lengths(inputs)
        keyed = list(zip(inputs, lengths, strict=True))
        on_oom = self._torch.cuda.empty_cache if self.device == "cuda" else (lambda: None)
        logits = run_in_buckets(
            keyed, lambda item: item[1], lambda batch: self.forward([i for i, _ in batch]), self.config.max_batch_size, on_oom
        )
        elapsed_ms = (time.monotonic() - started) * 1000.0
        out = []
        for logit, length in zip(logits, lengths, strict=True):
            if isinstance(logit, OutOfMemoryError):
                out.append(failed_verdict(logit, latency_ms=elapsed_ms))
                continue
            flags = (str(Flag.TRUNCATED),) if length > self.max_length else ()
            out.append(
                Verdict(
                    score=calibrate(logit, self.config.calibration),
                    status="ok",
                    criteria={"logit": logit},
                    rationale=f"reward-model logit {logit:.4f}",
                    latency_ms=round(elapsed_ms, 1),
                    flags=flags,
                )
            )
        return out

    async def score(self, rollouts: Sequence[Rollout]) -> list[Verdict]:
        try:
            return await asyncio.to_thread(self.score_sync, list(rollouts))
        except Exception as exc:  # noqa: BLE001 - a model failure is a failed verdict per rollout, with the reason
            return [failed_verdict(exc) for _ in rollouts]

    def describe(self) -> dict[str, Any]:
        return {"device": self.device, "max_length": self.max_length, "chat_template": self.chat}
