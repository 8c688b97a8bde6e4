"""The closed vocabularies: flags a result or verdict may carry, and why a verdict is not ok."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["FailureReason", "Flag"]


class Flag(StrEnum):
    """Why a reward deserves a second look. Documented in README's "Flags" table."""

    HIGH_DISAGREEMENT = "high_disagreement"
    """Judges' normalised scores spread more than `aggregation.disagreement_threshold`."""
    JUDGE_FAILED = "judge_failed"
    """At least one judge failed or timed out; its verdict says why."""
    JUDGE_INCOMPLETE = "judge_incomplete"
    """A judge answered from only some of its sub-calls (e.g. comparisons); the result is `partial`."""
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


class FailureReason(StrEnum):
    """Why a verdict is not `ok`: a closed vocabulary carried on `Verdict.reason`, set where the
    verdict is made (from the exception's type, or by the judge that skips) and read by metrics,
    summaries and reports instead of the human `error` text. Documented in README's "Flags" section."""

    TIMEOUT = "timeout"
    """No answer within the judge's deadline."""
    DEADLINE = "deadline"
    """The request's deadline passed before the call could be sent (time spent queued)."""
    THROTTLED = "throttled"
    """The model's quota stayed exhausted (429) through every retry."""
    PARSE = "parse"
    """The judge answered, but not in a form that can be scored."""
    REJECTED = "rejected"
    """Bedrock refused the call (400/403/404); retrying cannot help."""
    UPSTREAM = "upstream"
    """A transient upstream failure (5xx, model error) outlasted the retries."""
    UNAVAILABLE = "unavailable"
    """The judge's replica died or refused work under backpressure."""
    CANCELLED = "cancelled"
    """Work this request shared with another was cancelled."""
    OUT_OF_MEMORY = "out_of_memory"
    """A local model could not fit even one rollout in its device's memory."""
    INPUT = "input"
    """The rollout could not be judged as given."""
    UNEXPECTED = "unexpected"
    """A bug: an exception the farm does not raise on purpose (its traceback is logged once)."""
    OTHER = "other"
    """Read back from an old results file whose error text names no known reason."""
    NO_REFERENCE = "no_reference"
    """Skipped: the judge needs a reference (or a group) the rollout does not carry."""
    EMPTY_RESPONSE = "empty_response"
    """Skipped: the response was empty, so no judge was called."""
    GATED = "gated"
    """Skipped: a cheap gate judge scored 0, so the expensive judges were not called."""
    NOT_NEEDED = "not_needed"
    """Skipped: the cost cascade settled the rollout with cheaper judges (not a failure)."""
    NOT_RUN = "not_run"
    """Skipped for another reason the judge names in `error`."""
