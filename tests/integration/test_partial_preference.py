"""Partial is partial, and preference cost grows linearly with the group."""

from __future__ import annotations

import asyncio

import pytest

from farm.ensemble import Ensemble
from farm.flags import Flag
from farm.judges.preference import opponent_pairs
from farm.wire import parse_rollouts
from tests.conftest import PREFERENCE, RUBRIC, gsm8k_rollouts, make_config

PAIRWISE = {**PREFERENCE, "comparison": "pairwise", "anchor": "none"}  # the default before listwise

pytestmark = pytest.mark.integration

MICRO = "amazon.nova-micro-v1:0"


def score(config, rows):
    async def main():
        ensemble = Ensemble.from_config(config)
        try:
            return await ensemble.score(parse_rollouts(rows))
        finally:
            await ensemble.aclose()

    return asyncio.run(main())


def test_a_verdict_missing_some_comparisons_is_flagged_and_the_result_is_partial(aws_env):
    """A failed comparison used to leave an `ok` verdict with no flag: the reward silently
    rested on fewer comparisons and the summary counted it as ok."""
    aws_env.update(faults={"malformed": 0.3}, seed=11)
    config = make_config([{**PAIRWISE, "parse_retries": 0}, RUBRIC])
    results = score(config, gsm8k_rollouts(limit=4))
    incomplete = 0
    for result in results:
        verdict = result.judges["preference"]
        missing = verdict.status == "ok" and verdict.error is not None and "comparisons failed" in verdict.error
        assert (Flag.JUDGE_INCOMPLETE in verdict.flags) == missing, verdict
        if missing:
            incomplete += 1
            assert Flag.JUDGE_INCOMPLETE in result.flags and result.status == "partial"
            assert verdict.criteria["comparisons"] < 3
        elif result.status == "ok":
            assert verdict.criteria["comparisons"] == 3 and not {Flag.JUDGE_FAILED, Flag.JUDGE_INCOMPLETE} & set(result.flags)
    assert incomplete > 0  # the faults did hit some comparisons


def test_comparisons_per_rollout_are_capped():
    for size in range(2, 40):
        for cap in (2, 3, 4, 7):
            pairs = opponent_pairs(size, cap)
            degree = [0] * size
            for a, b in pairs:
                assert 0 <= a < b < size
                degree[a] += 1
                degree[b] += 1
            assert max(degree) <= cap and min(degree) >= min(cap - 1, size - 1)
            assert len(pairs) == len(set(pairs)) <= size * cap // 2
            reached, frontier = {0}, [0]  # connected: Bradley-Terry can rank the whole group
            while frontier:
                node = frontier.pop()
                for a, b in pairs:
                    for x, y in ((a, b), (b, a)):
                        if x == node and y not in reached:
                            reached.add(y)
                            frontier.append(y)
            assert reached == set(range(size))
    assert len(opponent_pairs(5, 4)) == 10  # small groups: every pair


def test_a_group_of_16_costs_linear_calls(aws_env):
    rows = [
        {"id": f"r{i}", "prompt": "What is 9*2?", "response": f"9*2 = {18 + i % 3}\nA: {18 + i % 3} ({i})", "group": "g"} for i in range(16)
    ]
    results = score(make_config([PAIRWISE]), rows)  # default max_comparisons = 4
    assert all(r.status == "ok" and r.judges["preference"].criteria["comparisons"] == 4 for r in results)
    assert aws_env.stats()[MICRO].admitted == 16 * 4  # 32 pairs x 2 orders, not 240
