"""The one judge protocol, and helpers every judge kind shares: the verdict for a failure or a
skip, carrying its typed `FailureReason`."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from farm.errors import JudgeTimeoutError, ParseError
from farm.flags import FailureReason
from farm.wire import JudgeStatus, Rollout, Verdict

__all__ = ["Judge", "RuleJudge", "failed_verdict", "failure_reason", "reason_for", "reason_of", "skipped_verdict"]

log = logging.getLogger(__name__)


@runtime_checkable
class Judge(Protocol):
    """Scores a batch of rollouts: one verdict per rollout, in order, never an exception.

    A judge that cannot score a rollout returns a verdict with status `failed`, `timeout` or
    `skipped` and a reason; it never turns a failure into a score.
    """

    name: str

    async def score(self, rollouts: Sequence[Rollout]) -> list[Verdict]: ...

    async def aclose(self) -> None: ...


def reason_of(error: BaseException) -> FailureReason:
    """The typed reason for an exception: the farm's errors name their own (`reason`); a bare
    timeout or cancellation is what it says; anything else is a bug (`unexpected`)."""
    reason = getattr(type(error), "reason", None)
    if isinstance(reason, FailureReason):
        return reason
    if isinstance(error, TimeoutError):
        return FailureReason.TIMEOUT
    if isinstance(error, asyncio.CancelledError):
        return FailureReason.CANCELLED
    return FailureReason.UNEXPECTED


_logged: set[type[BaseException]] = set()
_logged_lock = threading.Lock()


def _log_first(error: BaseException) -> None:
    """Log the traceback of the first exception of each unexpected type in this process: a bug
    shows its stack once, and a flood of the same bug does not flood the log."""
    kind = type(error)
    with _logged_lock:
        if kind in _logged:
            return
        _logged.add(kind)
    log.error(
        "unexpected %s in a judge (reported once per process; every verdict it causes says `unexpected`)",
        kind.__qualname__,
        exc_info=(kind, error, error.__traceback__),
    )


def failed_verdict(
    error: BaseException,
    *,
    latency_ms: float = 0.0,
    input_tokens: int = 0,
    output_tokens: int = 0,
    cache_tokens: tuple[int, int] = (0, 0),
) -> Verdict:
    """The verdict for a judge error, with the reason its type names and the usage its attempts
    were billed for (`cache_tokens`: read, write); parse errors keep the judge's raw answer in the
    human text."""
    reason = reason_of(error)
    status: JudgeStatus = "timeout" if isinstance(error, JudgeTimeoutError | TimeoutError) else "failed"
    message = f"{type(error).__name__}: {error}"
    if isinstance(error, ParseError) and error.raw:
        message += f"; raw answer: {error.raw[:1000]!r}"
    elif reason is FailureReason.UNEXPECTED:
        message = f"unexpected {message}"
        _log_first(error)
    return Verdict(
        score=None,
        status=status,
        error=message,
        reason=reason,
        latency_ms=latency_ms,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=cache_tokens[0],
        cache_write_tokens=cache_tokens[1],
    )


def skipped_verdict(message: str, reason: FailureReason = FailureReason.NOT_RUN) -> Verdict:
    """A judge that does not apply to this rollout: `message` for people, `reason` for metrics."""
    return Verdict(score=None, status="skipped", error=message, reason=reason)


def failure_reason(verdict: Verdict) -> str | None:
    """A short, bounded label for why a verdict failed (for metrics); None when it did not."""
    return reason_for(verdict.status, verdict.error, verdict.reason)


_OLD_REASONS = {  # error-text heads in results written before `Verdict.reason` existed
    "JudgeTimeoutError": FailureReason.TIMEOUT,
    "ThrottledError": FailureReason.THROTTLED,
    "ParseError": FailureReason.PARSE,
    "PermanentJudgeError": FailureReason.REJECTED,
    "TransientJudgeError": FailureReason.UPSTREAM,
    "JudgeUnavailableError": FailureReason.UNAVAILABLE,
}


def reason_for(status: str, error: str | None, reason: str | None = None) -> str | None:
    """`failure_reason` from a verdict's fields as read back from a results file: the stored
    `reason` when there is one; else (a file written before the field existed) the error text's
    exception name. None for ok and skipped verdicts."""
    if status not in ("failed", "timeout"):
        return None
    if reason:
        return str(reason)
    if status == "timeout":
        return FailureReason.TIMEOUT.value
    head = (error or "").split(":", 1)[0].strip()
    if head.startswith("unexpected "):
        return FailureReason.UNEXPECTED.value
    return _OLD_REASONS.get(head, FailureReason.OTHER).value


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
