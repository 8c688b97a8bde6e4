"""Progress for long commands: a live line on a terminal, plain periodic lines in logs and pipes.

On a TTY the line is redrawn in place (rate, ETA, 429s, failed verdicts) a few times a second; when
stderr is a file or a pipe, one plain line is written every `interval_s` seconds (no carriage
returns to garble CI logs), and a last line when the work ends.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

__all__ = ["Progress"]


class Progress:
    """Counts units of work and reports them; `throttled` reads the 429 count when it redraws."""

    def __init__(
        self,
        label: str,
        total: int | None = None,
        *,
        unit: str = "rollouts",
        stream: TextIO | None = None,
        interval_s: float | None = None,
        throttled: Callable[[], int] | None = None,
    ):
        self.label, self.total, self.unit = label, total, unit
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval_s = interval_s if interval_s is not None else (0.2 if self.tty else 10.0)
        self.throttled = throttled
        self.done = 0
        self.failed = 0
        self.counts_failures = throttled is not None
        """Whether failed verdicts are known (results seen, or a scorer that counts them)."""
        self._started = time.monotonic()
        self._last = self._started
        self._drawn = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def __enter__(self) -> Progress:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Redraw every `interval_s` from a background thread, so the line moves while a batch is out."""
        if self.tty:
            self._draw()
        self._ticker = threading.Thread(target=self._tick, name="farm-progress", daemon=True)
        self._ticker.start()

    def _tick(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._draw()

    def advance(self, count: int = 1, failed: int = 0) -> None:
        self.done += count
        self.failed += failed
        self._maybe_draw()

    def results(self, results: Sequence[Any]) -> None:
        """Advance by a batch of `RewardResult`s, counting failed or timed-out verdicts."""
        failed = sum(1 for r in results for v in r.judges.values() if v.status in ("failed", "timeout"))
        self.counts_failures = True
        self.advance(len(results), failed)

    def set(self, done: int, total: int | None = None) -> None:
        self.done = done
        if total:
            self.total = total
        self._maybe_draw()

    def close(self) -> None:
        """Draw the final state; on a terminal, end the live line."""
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=5)
        if self._drawn or not self.tty:
            self._draw()
        if self.tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()

    def line(self) -> str:
        elapsed = max(time.monotonic() - self._started, 1e-9)
        rate = self.done / elapsed
        of = f"/{self.total}" if self.total else ""
        parts = [f"{self.label} {self.done}{of} {self.unit}", f"{rate:.1f}/s"]
        if self.total and rate > 0 and self.done < self.total:
            parts.append(f"ETA {_duration((self.total - self.done) / rate)}")
        elif self.total and self.done >= self.total:
            parts.append(f"done in {_duration(elapsed)}")
        if self.throttled is not None:
            parts.append(f"429s {self.throttled()}")
        if self.counts_failures:
            parts.append(f"failed verdicts {self.failed}")
        return ", ".join(parts)

    def _maybe_draw(self) -> None:
        if self._ticker is not None:
            return  # the ticker draws
        now = time.monotonic()
        if now - self._last >= self.interval_s:
            self._last = now
            self._draw()

    def _draw(self) -> None:
        with self._lock:
            self._write()

    def _write(self) -> None:
        if self.tty:
            self.stream.write("\r" + self.line() + "\x1b[K")
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()
        self._drawn = True


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
