"""The farm's exception tree.

Errors split by whether retrying can help. Each class names the `FailureReason` a verdict
made from it carries (`reason`), so the reason is a type, never parsed back from text::

    FarmError
    ├── ConfigError              declaration time: bad config, unknown judge; never retried
    ├── InputError               a rollout that cannot be scored as given; names row and field
    └── JudgeError               execution time, carried into a verdict as a state with a reason
        ├── TransientJudgeError  retrying may help: throttled, model timeout, 5xx, bad output
        │   ├── ThrottledError
        │   ├── JudgeTimeoutError
        │   │   └── DeadlineError      the request's deadline passed before a call was sent
        │   ├── JudgeUnavailableError  a judge replica died or is overloaded
        │   │   └── JudgeCancelledError  work shared with another request was cancelled
        │   └── ParseError
        └── PermanentJudgeError  retrying cannot help: 400/403/404 from Bedrock
"""

from __future__ import annotations

from typing import ClassVar

from farm.flags import FailureReason

__all__ = [
    "ConfigError",
    "DeadlineError",
    "FarmError",
    "InputError",
    "JudgeCancelledError",
    "JudgeError",
    "JudgeTimeoutError",
    "JudgeUnavailableError",
    "ParseError",
    "PermanentJudgeError",
    "ThrottledError",
    "TransientJudgeError",
]


class FarmError(Exception):
    """Root of every error the farm raises on purpose."""


class ConfigError(FarmError, ValueError):
    """Configuration is wrong; raised at load or build time, never retried."""


class InputError(FarmError, ValueError):
    """A rollout is malformed. The message names the row (id or line) and the field."""

    reason: ClassVar[FailureReason] = FailureReason.INPUT

    def __init__(self, message: str, *, row: str | None = None, field: str | None = None):
        where = ", ".join(part for part in (f"row {row}" if row else "", f"field `{field}`" if field else "") if part)
        super().__init__(f"{where}: {message}" if where else message)
        self.row = row
        self.field = field


class JudgeError(FarmError):
    """A judge could not produce a verdict."""

    reason: ClassVar[FailureReason] = FailureReason.UPSTREAM


class TransientJudgeError(JudgeError):
    """Retrying within the deadline may succeed."""


class ThrottledError(TransientJudgeError):
    """The model's quota is exhausted (429)."""

    reason: ClassVar[FailureReason] = FailureReason.THROTTLED


class JudgeTimeoutError(TransientJudgeError):
    """The deadline passed before an answer arrived."""

    reason: ClassVar[FailureReason] = FailureReason.TIMEOUT


class JudgeUnavailableError(TransientJudgeError):
    """The judge's replica died, or refused work under backpressure."""

    reason: ClassVar[FailureReason] = FailureReason.UNAVAILABLE


class ParseError(TransientJudgeError):
    """The judge answered, but not in a form that can be scored. Keeps the raw text."""

    reason: ClassVar[FailureReason] = FailureReason.PARSE

    def __init__(self, message: str, raw: str = ""):
        super().__init__(message)
        self.raw = raw


class PermanentJudgeError(JudgeError):
    """Bedrock rejected the call (400/403/404); the message is Bedrock's own."""

    reason: ClassVar[FailureReason] = FailureReason.REJECTED


class DeadlineError(JudgeTimeoutError):
    """The request's deadline passed before the call could be sent: time spent queued, not the model's."""

    reason: ClassVar[FailureReason] = FailureReason.DEADLINE


class JudgeCancelledError(JudgeUnavailableError):
    """Work this request shared with another (a single-flight computation) was cancelled."""

    reason: ClassVar[FailureReason] = FailureReason.CANCELLED
