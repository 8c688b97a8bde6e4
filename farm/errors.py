"""The farm's exception tree.

Errors split by whether retrying can help::

    FarmError
    ├── ConfigError              declaration time: bad config, unknown judge; never retried
    ├── InputError               a rollout that cannot be scored as given; names row and field
    └── JudgeError               execution time, carried into a verdict as a state with a reason
        ├── TransientJudgeError  retrying may help: throttled, model timeout, 5xx, bad output
        │   ├── ThrottledError
        │   ├── JudgeTimeoutError
        │   ├── JudgeUnavailableError  a judge replica died or is overloaded
        │   └── ParseError
        └── PermanentJudgeError  retrying cannot help: 400/403/404 from Bedrock
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "FarmError",
    "InputError",
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

    def __init__(self, message: str, *, row: str | None = None, field: str | None = None):
        where = ", ".join(part for part in (f"row {row}" if row else "", f"field `{field}`" if field else "") if part)
        super().__init__(f"{where}: {message}" if where else message)
        self.row = row
        self.field = field


class JudgeError(FarmError):
    """A judge could not produce a verdict."""


class TransientJudgeError(JudgeError):
    """Retrying within the deadline may succeed."""


class ThrottledError(TransientJudgeError):
    """The model's quota is exhausted (429)."""


class JudgeTimeoutError(TransientJudgeError):
    """The deadline passed before an answer arrived."""


class JudgeUnavailableError(TransientJudgeError):
    """The judge's replica died, or refused work under backpressure."""


class ParseError(TransientJudgeError):
    """The judge answered, but not in a form that can be scored. Keeps the raw text."""

    def __init__(self, message: str, raw: str = ""):
        super().__init__(message)
        self.raw = raw


class PermanentJudgeError(JudgeError):
    """Bedrock rejected the call (400/403/404); the message is Bedrock's own."""
