"""Final-answer judge (RLVR): the response's final answer against the reference's; a response that
marks more than one distinct final answer (a hedge) scores 0 with `multiple_answers`."""

from __future__ import annotations

from farm.answers import answers_match, distinct_final_answers, extract_final_answer
from farm.config import FinalAnswerJudgeConfig
from farm.flags import FailureReason, Flag
from farm.judges.base import RuleJudge, skipped_verdict
from farm.wire import Rollout, Verdict

__all__ = ["FinalAnswerJudge"]


class FinalAnswerJudge(RuleJudge):
    def __init__(self, config: FinalAnswerJudgeConfig):
        self.name = config.name
        self.config = config

    def check(self, rollout: Rollout) -> Verdict:
        if rollout.reference is None:
            return skipped_verdict("final-answer judging needs a reference", FailureReason.NO_REFERENCE)
        expected = extract_final_answer(rollout.reference, fallback_last_number=True) or rollout.reference.strip()
        got = extract_final_answer(rollout.response, fallback_last_number=self.config.fallback_last_number)
        if got is None:
            return Verdict(score=0.0, status="ok", criteria={"correct": 0.0}, rationale=f"no final answer found; expected {expected!r}")
        hedged = distinct_final_answers(rollout.response, tolerance=self.config.tolerance)
        if len(hedged) > 1:
            return Verdict(
                score=0.0,
                status="ok",
                criteria={"correct": 0.0, "final_answers": float(len(hedged))},
                rationale=f"{len(hedged)} different final answers {hedged[:5]!r}: a hedge scores 0",
                flags=(str(Flag.MULTIPLE_ANSWERS),),
            )
        correct = answers_match(got, expected, tolerance=self.config.tolerance)
        return Verdict(
            score=1.0 if correct else 0.0,
            status="ok",
            criteria={"correct": 1.0 if correct else 0.0},
            rationale=f"final answer {got!r} {'matches' if correct else 'does not match'} expected {expected!r}",
        )
