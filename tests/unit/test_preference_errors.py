"""One comparison that breaks unexpectedly costs that comparison, not the whole batch's verdicts."""

from __future__ import annotations

import asyncio
from typing import Any

from farm.cache import VerdictCache
from farm.config import PreferenceJudgeConfig
from farm.flags import Flag
from farm.judges.preference import PreferenceJudge
from farm.wire import Verdict, parse_rollout


class _OneBrokenPair(PreferenceJudge):
    """Answers every ordered comparison "A wins", except one pair whose call raises a bug."""

    async def _ask(self, prompt: str, a: str, b: str, deadline: float, reference: str | None) -> Verdict:
        if {a, b} == {"r0", "r1"}:
            raise RuntimeError("unexpected failure inside one comparison")
        return Verdict(score=1.0, status="ok", criteria={"winner_A": 1.0}, rationale="A is better")


def test_an_unexpected_error_in_one_comparison_leaves_the_other_groups_ok() -> None:
    config = PreferenceJudgeConfig(
        name="preference", kind="preference", model="amazon.nova-micro-v1:0", mode="group", comparison="pairwise"
    )
    judge = _OneBrokenPair(config, client=Any, cache=VerdictCache())  # type: ignore[arg-type]
    rollouts = [parse_rollout({"id": f"r{i}", "prompt": "p", "response": f"r{i}", "group": "g1" if i < 3 else "g2"}) for i in range(6)]
    verdicts = asyncio.run(judge.score(rollouts))
    assert [v.status for v in verdicts] == ["ok"] * 6  # every rollout still has comparisons that worked
    assert all(str(Flag.JUDGE_INCOMPLETE) in v.flags for v in verdicts[:2])  # r0 and r1 lost one comparison each
    assert "RuntimeError: unexpected failure inside one comparison" in (verdicts[0].error or "")
    assert all(str(Flag.JUDGE_INCOMPLETE) not in v.flags and v.error is None for v in verdicts[3:])
