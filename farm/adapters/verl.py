"""verl: a custom `compute_score` for `custom_reward_function.path` (single and batched managers).

    custom_reward_function:
      path: /path/to/site-packages/farm/adapters/verl.py
      name: compute_score

The farm is found through `FARM_URL` (HTTP) or `FARM_APP` (a Serve app in the same cluster). An
unscorable rollout returns `score` NaN with `farm_failed` 1, never a silent 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from farm.adapters.common import client_from
from farm.wire import RewardResult

__all__ = ["compute_score"]

_client: Any = None


def _get_client() -> Any:
    global _client
    if _client is None:
        _client = client_from()
    return _client


def compute_score(
    data_source: Any = None,
    solution_str: Any = None,
    ground_truth: Any = None,
    extra_info: Any = None,
    *,
    data_sources: Sequence[Any] | None = None,
    solution_strs: Sequence[str] | None = None,
    ground_truths: Sequence[Any] | None = None,
    extra_infos: Sequence[Any] | None = None,
    **_: Any,
) -> dict[str, float] | list[dict[str, float]]:
    """verl's `(data_source, solution_str, ground_truth, extra_info)`, or the batched plural form."""
    if solution_strs is not None:
        n = len(solution_strs)
        rows = [
            _rollout(i, (data_sources or [None] * n)[i], solution_strs[i], (ground_truths or [None] * n)[i], (extra_infos or [None] * n)[i])
            for i in range(n)
        ]
        return [_score(r) for r in _get_client().score(rows)]
    (result,) = _get_client().score([_rollout(0, data_source, solution_str, ground_truth, extra_info)])
    return _score(result)


def _rollout(index: int, data_source: Any, solution: Any, truth: Any, extra: Any) -> dict[str, Any]:
    extra = extra if isinstance(extra, dict) else {}
    prompt = extra.get("question") or extra.get("prompt") or ""
    return {
        "id": str(extra.get("index", index)) + f"-{index}",
        "prompt": prompt if isinstance(prompt, str | list) else str(prompt),
        "response": solution if isinstance(solution, str) else str(solution),
        "reference": None if truth is None else truth if isinstance(truth, str) else str(truth),
        "group": extra.get("group") or (str(extra["uid"]) if "uid" in extra else None),
        "metadata": {"data_source": str(data_source)} if data_source is not None else {},
    }


def _score(result: RewardResult) -> dict[str, float]:
    out = {
        "score": math.nan if result.reward is None else result.reward,
        "farm_failed": 1.0 if result.reward is None else 0.0,
        "farm_disagreement": math.nan if result.disagreement is None else result.disagreement,
    }
    for name, verdict in result.judges.items():
        out[f"judge_{name}"] = math.nan if verdict.score is None else verdict.score
    return out
