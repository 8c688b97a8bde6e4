"""OpenRLHF's `--remote_rm_url` format, served by the farm at `POST /openrlhf`.

Request `{"query": [prompt + response, ...], "prompts": [prompt, ...], "labels": [reference, ...]}`;
response `{"rewards": [...], "scores": [...], "extra_logs": {...}}`. A rollout the farm could not
score is `null`: OpenRLHF then fails loudly instead of training on an invented 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from farm.adapters.common import group_key
from farm.errors import InputError
from farm.wire import RewardResult, Rollout, parse_rollout

__all__ = ["openrlhf_response", "rollouts_from_openrlhf"]


def rollouts_from_openrlhf(payload: Mapping[str, Any]) -> list[Rollout]:
    queries = payload.get("query")
    if not isinstance(queries, list):
        raise InputError("must be a list of strings (prompt + response)", field="query")
    prompts = payload.get("prompts")
    labels = payload.get("labels")
    for name, values in (("prompts", prompts), ("labels", labels)):
        if values is not None and (not isinstance(values, list) or len(values) != len(queries)):
            raise InputError(f"must be a list as long as `query` ({len(queries)})", field=name)
    out = []
    for index, query in enumerate(queries):
        if not isinstance(query, str):
            raise InputError("must be a string", field=f"query[{index}]")
        prompt = prompts[index] if prompts is not None else ""
        if not isinstance(prompt, str):
            raise InputError("must be a string", field=f"prompts[{index}]")
        response = query[len(prompt) :] if prompt and query.startswith(prompt) else query
        label = labels[index] if labels is not None else None
        group = group_key(prompt)
        out.append(
            parse_rollout(
                {"id": f"{group}-{index}", "prompt": prompt, "response": response, "reference": label, "group": group},
                where=f"query[{index}]",
            )
        )
    return out


def openrlhf_response(results: Sequence[RewardResult]) -> dict[str, Any]:
    rewards = [r.reward for r in results]
    return {
        "rewards": rewards,
        "scores": rewards,
        "extra_logs": {
            "farm_failed": [1.0 if r.reward is None else 0.0 for r in results],
            "farm_disagreement": [r.disagreement for r in results],
        },
    }
