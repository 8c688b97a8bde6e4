"""One rollout whose call breaks unexpectedly gets a failed verdict; the batch's others keep theirs."""

from __future__ import annotations

import asyncio
from typing import Any

from farm.cache import VerdictCache
from farm.config import RubricJudgeConfig
from farm.judges.rubric import RubricJudge
from farm.wire import Rollout, Verdict, parse_rollout


class _OneBroken(RubricJudge):
    async def _judge(self, rollout: Rollout, deadline: float) -> Verdict:
        if rollout.response == "broken":
            raise RuntimeError("unexpected failure in one call")
        await asyncio.sleep(0.01)  # the others are still running when the broken one raises
        return Verdict(score=1.0, status="ok", rationale="fine")


def test_an_unexpected_error_costs_one_verdict_not_the_batch() -> None:
    config = RubricJudgeConfig(
        name="rubric", kind="rubric", model="amazon.nova-lite-v1:0", criteria=[{"name": "c", "description": "Correct."}]
    )
    judge = _OneBroken(config, client=Any, cache=VerdictCache())  # type: ignore[arg-type]
    rollouts = [parse_rollout({"id": f"r{i}", "prompt": "p", "response": "broken" if i == 1 else f"r{i}"}) for i in range(4)]
    verdicts = asyncio.run(judge.score(rollouts))
    assert [v.status for v in verdicts] == ["ok", "failed", "ok", "ok"]
    assert "RuntimeError: unexpected failure in one call" in (verdicts[1].error or "")
