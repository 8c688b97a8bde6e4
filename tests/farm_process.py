"""A `farm serve` subprocess in tests: wait until it says where it serves, and stop its whole
process group (Serve, Ray and the embedded emulator) however it ends."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

__all__ = ["stop_process_group", "wait_until_serving"]

_SERVING = re.compile(r"is serving at (http://\S+)")


def wait_until_serving(proc: subprocess.Popen[str], lines: list[str], timeout_s: float) -> str:
    """Read `proc`'s stderr into `lines` until it prints its URL; fail with the tail of what it said."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stderr.readline()  # type: ignore[union-attr]
        if not line and proc.poll() is not None:
            break
        lines.append(line)
        if "is serving at" in line:
            break
    found = _SERVING.search("".join(lines))
    assert found, "".join(lines)[-3000:]
    return found.group(1)


def stop_process_group(proc: subprocess.Popen[str]) -> None:
    """Ctrl-C for the group (a clean Serve/Ray shutdown), then SIGKILL if it does not end in time."""
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
