"""Length judge (RLVR): 1 when the response length lies within bounds; a typical cheap gate."""

from __future__ import annotations

from farm.config import LengthJudgeConfig
from farm.judges.base import RuleJudge
from farm.wire import Rollout, Verdict

__all__ = ["LengthJudge"]


class LengthJudge(RuleJudge):
    def __init__(self, config: LengthJudgeConfig):
        self.name = config.name
        self.config = config

    def check(self, rollout: Rollout) -> Verdict:
        n = len(rollout.response.strip())
        low, high = self.config.min_chars, self.config.max_chars
        ok = n >= low and (high is None or n <= high)
        bounds = f"[{low}, {high if high is not None else '∞'}]"
        return Verdict(score=float(ok), status="ok", rationale=f"{n} characters, bounds {bounds}")
