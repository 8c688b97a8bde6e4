"""What every adapter shares: choosing a client, and the batch metrics each reports to its trainer.

A degraded reward (a `partial` result: fewer judges answered than are configured) keeps its
number, and every adapter reports the share of ok / partial / failed results, the mean
disagreement and each judge's mean to the trainer's own metrics, so a reward whose meaning
drifted (say, both Nova judges down and only `final_answer` left) shows on the training dashboard.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from typing import Any

from farm.client import FarmClient, HttpFarmClient, LocalFarmClient
from farm.errors import ConfigError
from farm.wire import RewardResult

__all__ = ["batch_metrics", "client_from", "group_key", "sample_metrics", "text_of"]

_SCORED = "ok"
_FAILED = frozenset({"failed", "timeout"})


def client_from(
    url: str | None = None, app_name: str | None = None, token: str | None = None, config: Any = None
) -> FarmClient | HttpFarmClient | LocalFarmClient:
    """In-process when `config` is given; else HTTP when a URL is given (or `FARM_URL`); else the
    Serve handle of `app_name` (or `FARM_APP`)."""
    if config is not None:
        return LocalFarmClient(config)
    url = url or os.environ.get("FARM_URL")
    token = token or os.environ.get("FARM_API_TOKEN")
    if url:
        return HttpFarmClient(url, token=token)
    app_name = app_name or os.environ.get("FARM_APP")
    if app_name:
        return FarmClient(app_name)
    raise ConfigError("no farm to call: pass url=, app_name= or config=, or set FARM_URL or FARM_APP")


def text_of(value: Any) -> str:
    """A completion or prompt as text: a string, or chat messages (the last assistant turn's content)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and isinstance(value[-1], dict):
        return str(value[-1].get("content", ""))
    raise ConfigError(f"expected a string or a list of chat messages, got {type(value).__name__}")


def group_key(prompt: Any) -> str:
    return hashlib.sha256(repr(prompt).encode("utf-8", "surrogatepass")).hexdigest()[:16]


def batch_metrics(results: Sequence[RewardResult], prefix: str = "farm/") -> dict[str, float]:
    """Finite numbers only: shares of ok/partial/failed results, mean disagreement (where two or
    more judges answered), and per judge its mean score (where it scored) and its failure share."""
    n = len(results)
    if n == 0:
        return {}
    out = {f"{prefix}{status}": sum(r.status == status for r in results) / n for status in ("ok", "partial", "failed")}
    disagreements = [r.disagreement for r in results if r.disagreement is not None]
    if disagreements:
        out[f"{prefix}disagreement"] = sum(disagreements) / len(disagreements)
    names = sorted({name for r in results for name in r.judges})
    for name in names:
        verdicts = [r.judges[name] for r in results if name in r.judges]
        scores = [v.score for v in verdicts if v.status == _SCORED and v.score is not None]
        if scores:
            out[f"{prefix}judge/{name}"] = sum(scores) / len(scores)
        out[f"{prefix}judge/{name}/failed"] = sum(v.status in _FAILED for v in verdicts) / len(verdicts)
    return out


def sample_metrics(result: RewardResult) -> dict[str, float]:
    """One rollout's status as finite numbers with the same keys for every rollout of a farm (for
    trainers that log per-sample fields and average them: verl's `reward_extra_info`, OpenRLHF's
    `extra_logs`). A judge that did not score reads 0 with `..._scored` 0, so the judge's true mean
    is mean(farm_judge_<name>) / mean(farm_judge_<name>_scored); disagreement is 0 when fewer than
    two judges answered (`farm_partial` / `farm_failed` say why)."""
    out = {
        "farm_failed": 1.0 if result.status == "failed" else 0.0,
        "farm_partial": 1.0 if result.status == "partial" else 0.0,
        "farm_disagreement": 0.0 if result.disagreement is None else float(result.disagreement),
    }
    for name in sorted(result.judges):
        verdict = result.judges[name]
        scored = verdict.status == _SCORED and verdict.score is not None
        out[f"farm_judge_{name}"] = float(verdict.score) if scored else 0.0  # type: ignore[arg-type]
        out[f"farm_judge_{name}_scored"] = 1.0 if scored else 0.0
    return out
