"""`maxTokens` sized from what a judge really writes, per kind of call.

Bedrock reserves a call's input plus its `maxTokens` against tokens per minute when the call
starts and gives back what was not used when it ends, so a limit far above the answer holds
quota that other calls could use. `OutputSizer` keeps the output tokens of the latest answers
per kind of call (rubric, pairwise, listwise of n items) and, after a warm-up at the ceiling,
sends the configured quantile of them times a margin. An answer cut off by a sized limit is
asked again at the ceiling (`converse_call.ask`), and counted here, so a short limit costs a
retry, never a score. A pinned `max_tokens` is sent as it is, and measured all the same, so
`farm score`'s summary says what to pin it to.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from farm.config import MaxTokensAuto

__all__ = ["OutputSizer", "output_report", "quantile"]

_RESIZE_EVERY = 16
"""Answers between two recomputations of a sized limit (sorting the window on every call costs CPU)."""


def quantile(values: Iterable[int], q: float) -> int:
    """The nearest-rank `q` quantile (0 for no values)."""
    ordered = sorted(values)
    if not ordered:
        return 0
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


@dataclass
class _Kind:
    seen: deque[int]
    answers: int = 0
    cut_off: int = 0
    retries: int = 0
    at_ceiling: int = 0
    """Calls sent with the ceiling (warm-up, pinned, retries)."""
    sent_tokens: int = 0
    """Sum of the `maxTokens` sent: what the calls reserved for output."""
    limit: int | None = None
    """The sized limit; None until the warm-up is over."""
    warming: int = 0
    """Calls sent at the ceiling during the warm-up."""
    waiters: list[asyncio.Future[None]] = field(default_factory=list)
    """Calls waiting for the warm-up's answers."""
    patient: bool = True
    """False once a wait for the warm-up timed out: later calls go at the ceiling at once."""


class OutputSizer:
    """The `maxTokens` to send for each kind of call of one judge, and what was seen."""

    def __init__(self, ceiling: int, auto: MaxTokensAuto | None):
        """`auto` None: `maxTokens` is pinned at `ceiling` (only measured)."""
        self.ceiling = ceiling
        self.auto = auto
        self._kinds: dict[str, _Kind] = {}

    @classmethod
    def for_judge(cls, config: Any) -> OutputSizer:
        """From a Bedrock judge's config (`max_tokens`, `max_tokens_auto`)."""
        auto = config.max_tokens_auto if config.max_tokens == "auto" else None
        return cls(config.max_tokens_ceiling, auto)

    def _kind(self, kind: str) -> _Kind:
        state = self._kinds.get(kind)
        if state is None:
            state = self._kinds[kind] = _Kind(deque(maxlen=self.auto.window if self.auto else 2_000))
        return state

    def max_tokens(self, kind: str) -> int:
        """What to send now for a call of `kind`."""
        state = self._kind(kind)
        return self.ceiling if state.limit is None else state.limit

    async def limit(self, kind: str, deadline: float) -> int:
        """What to send for a call of `kind` about to go out. During the warm-up the first
        `warmup_calls` calls go at the ceiling and the rest wait (up to `warmup_wait_s`, within
        `deadline`) for their answers, so a burst sent at once is not all sent at the ceiling."""
        state = self._kind(kind)
        auto = self.auto
        if auto is None or state.limit is not None:
            return self.max_tokens(kind)
        if state.warming < auto.warmup_calls or not state.patient or auto.warmup_wait_s <= 0:
            state.warming += 1
            return self.ceiling
        wait = min(auto.warmup_wait_s, deadline - time.monotonic())
        if wait > 0:
            waiter = asyncio.get_running_loop().create_future()
            state.waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, wait)
            except TimeoutError:
                state.patient = False  # the warm-up's answers are not coming soon: stop holding calls back
            finally:
                with contextlib.suppress(ValueError):
                    state.waiters.remove(waiter)
        return self.max_tokens(kind)

    def observe(self, kind: str, output_tokens: int, *, sent: int, cut_off: bool) -> None:
        """One answer of `kind` arrived, `output_tokens` long, asked with `maxTokens` = `sent`.
        A cut-off answer is counted, not kept."""
        state = self._kind(kind)
        state.at_ceiling += sent >= self.ceiling
        state.sent_tokens += sent
        if cut_off:  # says only that the judge wanted more than `sent`; the retry at the ceiling measures it
            state.cut_off += 1
            return
        state.seen.append(output_tokens)
        state.answers += 1
        if self.auto is None or state.answers < self.auto.warmup_calls:
            return
        if state.limit is None or output_tokens * self.auto.margin > state.limit or state.answers % _RESIZE_EVERY == 0:
            self._resize(state)  # the warm-up is over, an answer came near the limit, or it is time

    def retried(self, kind: str) -> None:
        """An answer cut off by a sized limit is being asked again at the ceiling."""
        self._kind(kind).retries += 1

    def _resize(self, state: _Kind) -> None:
        auto = self.auto
        assert auto is not None
        wanted = math.ceil(quantile(state.seen, auto.quantile) * auto.margin)
        state.limit = max(min(auto.floor, self.ceiling), min(self.ceiling, wanted))
        for waiter in state.waiters:  # the warm-up is over: the calls held back go now, sized
            if not waiter.done():
                waiter.set_result(None)
        state.waiters.clear()

    def limits(self) -> dict[str, dict[str, int]]:
        """Per kind of call: the limit sent now and the retries at the ceiling so far (cheap: for metrics per request)."""
        return {kind: {"max_tokens": self.max_tokens(kind), "retried_at_ceiling": state.retries} for kind, state in self._kinds.items()}

    def report(self) -> dict[str, dict[str, Any]]:
        """Per kind of call: answers seen, output tokens p50/p99/max over the window, the limit
        sent now, the ceiling, answers cut off, and retries at the ceiling."""
        out: dict[str, dict[str, Any]] = {}
        for kind, state in sorted(self._kinds.items()):
            seen = list(state.seen)
            out[kind] = {
                "answers": state.answers,
                "p50": quantile(seen, 0.5),
                "p99": quantile(seen, 0.99),
                "max": max(seen, default=0),
                "max_tokens": self.max_tokens(kind),
                "ceiling": self.ceiling,
                "mode": "auto" if self.auto is not None else "pinned",
                "cut_off": state.cut_off,
                "retried_at_ceiling": state.retries,
                "calls_at_ceiling": state.at_ceiling,
                "mean_max_tokens_sent": round(state.sent_tokens / max(1, state.answers + state.cut_off), 1),
            }
        return out


def output_report(judges: Iterable[tuple[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """`OutputSizer.report()` of every (name, judge) that has a sizer (Bedrock judges), by judge name."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for name, judge in judges:
        sizer = getattr(judge, "output_sizer", None)
        if isinstance(sizer, OutputSizer):
            report = sizer.report()
            if report:
                out[name] = report
    return out
