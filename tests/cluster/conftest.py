"""Multi-node clusters on one machine. These tests start and stop their own Ray clusters, so
they run before any session-wide cluster (pytest collects `tests/cluster` first)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from farm.emulator import EmulatorSettings, EmulatorThread


@pytest.fixture(scope="package", autouse=True)
def ray_cli_on_path() -> None:
    """AutoscalingCluster shells out to `ray`; make it the one in this interpreter's environment."""
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"


@pytest.fixture
def cluster_emulator() -> Iterator[EmulatorThread]:
    with EmulatorThread(EmulatorSettings(latency_ms=100, latency_sigma=0, rpm=60_000, tpm=100_000_000)) as emu:
        yield emu


def emulator_env(emulator: EmulatorThread) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": emulator.url,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
