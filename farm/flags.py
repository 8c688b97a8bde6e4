"""The closed vocabulary of flags a result or verdict may carry."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Flag"]


class Flag(StrEnum):
    """Why a reward deserves a second look. Documented in README's "Flags" table."""

    HIGH_DISAGREEMENT = "high_disagreement"
    """Judges' normalised scores spread more than `aggregation.disagreement_threshold`."""
    JUDGE_FAILED = "judge_failed"
    """At least one judge failed or timed out; its verdict says why."""
    QUORUM_MISSED = "quorum_missed"
    """Fewer judges answered than `aggregation.quorum`; the reward is null."""
    POSITION_INCONSISTENT = "position_inconsistent"
    """A preference verdict flipped when the two responses swapped places; counted as a tie."""
    INJECTION_SUSPECTED = "injection_suspected"
    """The response seems to address the judge."""
    TRUNCATED = "truncated"
    """Input was cut to fit the judge, or the judge's output hit `maxTokens`."""
    PARSE_REPAIRED = "parse_repaired"
    """The judge's JSON was malformed and was repaired before scoring."""
    EMPTY_RESPONSE = "empty_response"
    """The response was empty or whitespace; it scores 0 without calling any judge."""
    GATE_FAILED = "gate_failed"
    """A cheap gate judge scored 0, so the expensive judges were skipped."""
    MULTIPLE_ANSWERS = "multiple_answers"  # more than one distinct final answer (a hedge): scored 0
    JUDGE_CONTRADICTION = "judge_contradiction"  # a verifiable judge says wrong, an LLM judge clearly right
