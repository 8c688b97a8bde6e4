"""Regex judge (RLVR): 1 when the response matches a pattern (a format check, a required tag)."""

from __future__ import annotations

import re

from farm.config import RegexJudgeConfig
from farm.judges.base import RuleJudge
from farm.wire import Rollout, Verdict

__all__ = ["RegexJudge"]


class RegexJudge(RuleJudge):
    def __init__(self, config: RegexJudgeConfig):
        self.name = config.name
        self.config = config
        self._pattern = re.compile(config.pattern)

    def check(self, rollout: Rollout) -> Verdict:
        match = self._pattern.fullmatch if self.config.match == "fullmatch" else self._pattern.search
        found = match(rollout.response) is not None
        return Verdict(score=float(found), status="ok", rationale=f"pattern {'matched' if found else 'not matched'}")
