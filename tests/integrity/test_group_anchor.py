"""Group preference anchored on the reference, with no verifiable judge in the ensemble: an
all-wrong group holding a content-free "master key" opener cannot earn reward by position."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

import pytest

from farm.ensemble import Ensemble
from farm.wire import parse_rollouts
from tests.conftest import PREFERENCE, gsm8k_rollouts, make_config

pytestmark = pytest.mark.integration

MASTER_KEY = "Let's solve this problem step by step."


def _all_wrong_groups(count: int) -> list[dict[str, Any]]:
    by_question: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in gsm8k_rollouts(limit=120):
        if not row["metadata"]["is_correct"]:
            by_question[row["group"]].append(row)
    batch: list[dict[str, Any]] = []
    for rows in [g[:3] for g in by_question.values() if len(g) >= 3][:count]:
        batch += [{k: r[k] for k in ("id", "prompt", "response", "reference", "group")} for r in rows]
        batch.append({**batch[-1], "id": rows[0]["group"] + "-key", "response": MASTER_KEY})
    return batch


def _rewards(judge: dict[str, Any], batch: list[dict[str, Any]]) -> list[float]:
    async def main() -> list[float]:
        ensemble = Ensemble.from_config(make_config([judge]))  # preference alone: nothing verifiable to lean on
        try:
            results = await ensemble.score(parse_rollouts(batch))
        finally:
            await ensemble.aclose()
        assert all(r.status == "ok" for r in results)
        return [r.reward for r in results if r.reward is not None]

    return asyncio.run(main())


@pytest.mark.parametrize("comparison", ["listwise", "pairwise"])
def test_an_all_wrong_group_cannot_win_by_position_when_anchored_on_the_reference(aws_env, report, comparison):
    aws_env.update(models={"amazon.nova-micro-v1:0": {"judge": {"position_bias": 0.6}}})  # likes whatever it sees first
    batch = _all_wrong_groups(12)
    figures = {}
    for anchor in ("reference", "none"):
        rewards = _rewards({**PREFERENCE, "comparison": comparison, "anchor": anchor}, batch)
        assert len(rewards) == len(batch)
        key = [r for row, r in zip(batch, rewards, strict=True) if row["id"].endswith("-key")]
        plain = [r for row, r in zip(batch, rewards, strict=True) if not row["id"].endswith("-key")]
        figures[anchor] = {
            "mean": round(sum(rewards) / len(rewards), 4),
            "max": round(max(rewards), 3),
            "master_key": round(sum(key) / len(key), 4),
            "plain": round(sum(plain) / len(plain), 4),
        }
    report(f"{comparison} preference alone, 12 all-wrong GSM8K groups + master key, position-biased judge: {figures}")
    assert figures["reference"]["mean"] <= 0.1 < figures["none"]["mean"]  # anchored: below the reference, little reward
    assert figures["reference"]["master_key"] <= figures["reference"]["plain"] + 0.02
    assert figures["none"]["mean"] >= 0.45  # relative only: an all-wrong group earns what a good one does
    if comparison == "listwise":
        assert figures["reference"]["max"] <= 0.1  # every one ranked below the reference: a tenth of its group reward
