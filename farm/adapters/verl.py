"""verl: `compute_score` functions for `custom_reward_function`, and the failure policy shared with
the farm's reward-loop manager (`farm.adapters.verl_manager.FarmRewardManager`, which is what
sends whole `uid` groups to the preference judge; prefer it).

    reward:
      custom_reward_function: {path: pkg://farm.adapters.verl, name: compute_score}   # or compute_score_async

The farm is found through `FARM_URL` (HTTP, with `FARM_API_TOKEN`) or `FARM_APP` (a Serve app in
the same cluster). verl passes the batched form's columns as numpy arrays; any sequence works.

Failure policy (verl has no way to leave one rollout out of `compute_grpo_outcome_advantage`,
and a NaN score gives the whole group NaN advantages): a rollout the farm could not score gets
the mean score of the scored rollouts of its group (`uid`), else of the call, else 0 — so its
GRPO advantage is 0 and its group's baseline is unchanged — with `farm_failed` 1 in
`reward_extra_info`. If more than `FARM_VERL_MAX_FAILED` (default 0.5) of a call failed, or
`FARM_VERL_ON_FAILURE=raise`, the call raises and the step fails loudly. The one-sample form has
no group to impute from, so a failed sample raises.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from farm.adapters.common import client_from, sample_metrics
from farm.errors import ConfigError, FarmError
from farm.wire import RewardResult

__all__ = ["compute_score", "compute_score_async", "impute_failed", "rollout_from_verl", "verl_outputs"]

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
        rows = _batch_rows(data_sources, solution_strs, ground_truths, extra_infos)
        return verl_outputs(_get_client().score(rows), [r["group"] for r in rows])
    (result,) = _get_client().score([rollout_from_verl(0, data_source, solution_str, ground_truth, extra_info)])
    return _single(result)


async def compute_score_async(
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
    """`compute_score` as a coroutine: verl's reward loop awaits it instead of taking a thread."""
    if solution_strs is not None:
        rows = _batch_rows(data_sources, solution_strs, ground_truths, extra_infos)
        return verl_outputs(await _get_client().score_async(rows), [r["group"] for r in rows])
    (result,) = await _get_client().score_async([rollout_from_verl(0, data_source, solution_str, ground_truth, extra_info)])
    return _single(result)


def _column(values: Sequence[Any] | None, n: int, name: str) -> list[Any]:
    """A batched column as a list: verl passes numpy arrays, whose truth value is ambiguous."""
    if values is None:
        return [None] * n
    out = list(values)
    if len(out) != n:
        raise ConfigError(f"verl passed {len(out)} {name} for {n} solution_strs")
    return out


def _batch_rows(data_sources: Any, solution_strs: Sequence[Any], ground_truths: Any, extra_infos: Any) -> list[dict[str, Any]]:
    n = len(solution_strs)
    sources, truths, extras = (
        _column(data_sources, n, "data_sources"),
        _column(ground_truths, n, "ground_truths"),
        _column(extra_infos, n, "extra_infos"),
    )
    return [rollout_from_verl(i, sources[i], solution_strs[i], truths[i], extras[i]) for i in range(n)]


def rollout_from_verl(
    index: int, data_source: Any, solution: Any, truth: Any, extra: Any, *, uid: Any = None, prompt: Any = None
) -> dict[str, Any]:
    """One verl sample as a farm rollout; `uid` (verl's group id) becomes the group."""
    extra = extra if isinstance(extra, dict) else {}
    if prompt is None:
        prompt = extra.get("question") or extra.get("prompt") or ""
    group = uid if uid is not None else extra.get("group") or extra.get("uid")
    return {
        "id": f"{extra.get('index', 'r')}-{index}",
        "prompt": prompt if isinstance(prompt, str) else [dict(m) for m in prompt] if _is_chat(prompt) else str(prompt),
        "response": solution if isinstance(solution, str) else str(solution),
        "reference": None if truth is None else truth if isinstance(truth, str) else str(truth),
        "group": None if group is None else str(group),
        "metadata": {"data_source": str(data_source)} if data_source is not None else {},
    }


def _is_chat(value: Any) -> bool:
    try:
        return len(value) > 0 and all(isinstance(m, dict) and "role" in m for m in value)
    except TypeError:
        return False


def impute_failed(results: Sequence[RewardResult], groups: Sequence[str | None]) -> list[float]:
    """Scores with every unscored rollout replaced by its group's mean scored reward (else the
    call's, else 0), so that GRPO gives it advantage 0 and leaves its group's baseline as it was."""
    scored = [r.reward for r in results if r.reward is not None]
    overall = sum(scored) / len(scored) if scored else 0.0
    by_group: dict[str | None, list[float]] = {}
    for result, group in zip(results, groups, strict=True):
        if result.reward is not None and group is not None:
            by_group.setdefault(group, []).append(result.reward)
    out = []
    for result, group in zip(results, groups, strict=True):
        if result.reward is not None:
            out.append(float(result.reward))
        else:
            peers = by_group.get(group) if group is not None else None
            out.append(sum(peers) / len(peers) if peers else overall)
    return out


def verl_outputs(results: Sequence[RewardResult], groups: Sequence[str | None]) -> list[dict[str, float]]:
    """The failure policy applied to one call: finite `score`s plus `farm_*` extra info, or a loud error."""
    failed = [r.id for r in results if r.reward is None]
    if failed:
        policy = os.environ.get("FARM_VERL_ON_FAILURE", "impute")
        if policy not in ("impute", "raise"):
            raise ConfigError(f"FARM_VERL_ON_FAILURE must be 'impute' or 'raise', got {policy!r}")
        limit = float(os.environ.get("FARM_VERL_MAX_FAILED", "0.5"))
        if policy == "raise" or len(failed) / len(results) > limit:
            raise FarmError(
                f"the farm could not score {len(failed)} of {len(results)} rollouts "
                f"(limit {limit:.0%} with FARM_VERL_ON_FAILURE={policy}), e.g. {failed[:5]}; "
                "failing the step instead of training on invented rewards"
            )
    scores = impute_failed(results, groups)
    return [{"score": score, **sample_metrics(result)} for score, result in zip(scores, results, strict=True)]


def _single(result: RewardResult) -> dict[str, float]:
    if result.reward is None:
        reasons = {name: v.error or v.status for name, v in result.judges.items() if v.score is None}
        raise FarmError(
            f"the farm could not score rollout {result.id!r} ({reasons}); the one-sample form has no group to impute from, "
            "so the step fails (use farm.adapters.verl_manager.FarmRewardManager)"
        )
    return {"score": float(result.reward), **sample_metrics(result)}
