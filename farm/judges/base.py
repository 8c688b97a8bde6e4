"""The one judge protocol, and helpers every judge kind shares."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from farm.errors import JudgeError, JudgeTimeoutError, ParseError
from farm.wire import JudgeStatus, Rollout, Verdict

__all__ = ["Judge", "RuleJudge", "failed_verdict", "failure_reason", "reason_for", "skipped_verdict"]


@runtime_checkable
class Judge(Protocol):
    """Scores a batch of rollouts: one verdict per rollout, in order, never an exception.

    A judge that cannot score a rollout returns a verdict with status `failed`, `timeout` or
    `skipped` and a reason; it never turns a failure into a score.
    """

    name: str

    async def score(self, rollouts: Sequence[Rollout]) -> list[Verdict]: ...

    async def aclose(self) -> None: ...


def failed_verdict(error: BaseException, *, latency_ms: float = 0.0, input_tokens: int = 0, output_tokens: int = 0) -> Verdict:
    """The verdict for a judge error; parse errors keep the judge's raw answer in the reason."""
    status: JudgeStatus = "timeout" if isinstance(error, JudgeTimeoutError) else "failed"
    message = f"{type(error).__name__}: {error}"
    if isinstance(error, ParseError) and error.raw:
        message += f"; raw answer: {error.raw[:1000]!r}"
    elif not isinstance(error, JudgeError):
        message = f"unexpected {message}"
    return Verdict(
        score=None,
        status=status,
        error=message,
        latency_ms=latency_ms,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
    )


_REASONS = {
    "JudgeTimeoutError": "timeout",
    "ThrottledError": "throttled",
    "ParseError": "parse",
    "PermanentJudgeError": "rejected",
    "TransientJudgeError": "upstream",
    "JudgeUnavailableError": "unavailable",
}


def failure_reason(verdict: Verdict) -> str | None:
    """A short, bounded label for why a verdict failed (for metrics); None when it did not."""
    return reason_for(verdict.status, verdict.error)


def reason_for(status: str, error: str | None) -> str | None:
    """`failure_reason` from a verdict's status and error (e.g. read back from a results file)."""
    if status not in ("failed", "timeout"):
        return None
    if status == "timeout":
        return "timeout"
    head = (error or "").split(":", 1)[0].strip()
    return _REASONS.get(head, "other")


def skipped_verdict(reason: str) -> Verdict:
    return Verdict(score=None, status="skipped", error=reason)


class RuleJudge:
    """Base for cheap deterministic judges: implement `check` for one rollout."""

    name: str

    def check(self, rollout: Rollout) -> Verdict:
        raise NotImplementedError

    async def score(self, rollouts: Sequence[Rollout]) -> list[Verdict]:
        out = []
        for rollout in rollouts:
            try:
                out.append(self.check(rollout))
            except Exception as exc:  # noqa: BLE001 - a rule bug must surface as a state, not kill the batch
                out.append(failed_verdict(exc))
        return out

    async def aclose(self) -> None:
        return None
