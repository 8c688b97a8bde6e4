"""Exact-match judge (RLVR): the whole response against the reference, whitespace-normalised."""

from __future__ import annotations

import re

from farm.config import ExactMatchJudgeConfig
from farm.flags import FailureReason
from farm.judges.base import RuleJudge, skipped_verdict
from farm.wire import Rollout, Verdict

__all__ = ["ExactMatchJudge"]


class ExactMatchJudge(RuleJudge):
    def __init__(self, config: ExactMatchJudgeConfig):
        self.name = config.name
        self.config = config

    def _normalise(self, text: str) -> str:
        text = re.sub(r"\s+", " ", text.strip())
        return text if self.config.case_sensitive else text.casefold()

    def check(self, rollout: Rollout) -> Verdict:
        if rollout.reference is None:
            return skipped_verdict("exact-match judging needs a reference", FailureReason.NO_REFERENCE)
        equal = self._normalise(rollout.response) == self._normalise(rollout.reference)
        return Verdict(score=float(equal), status="ok", rationale="matches the reference" if equal else "differs from the reference")
