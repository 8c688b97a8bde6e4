"""Shared fixtures: a fresh Bedrock emulator per test, and this process pointed at it."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from farm.config import BedrockConfig, FarmConfig, QuotaConfig, RetryConfig, parse_config
from farm.emulator import EmulatorSettings, EmulatorThread

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
REPO = Path(__file__).resolve().parents[1]


def max_in_window(times: list[float], window: float) -> int:
    """The most events (sorted timestamps) inside any closed window of `window` seconds."""
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] > window:
            start += 1
        best = max(best, end - start + 1)
    return best


def shared_file(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.exists():
        pytest.fail(f"shared data file missing: {path} (CI lays ../shared beside the clone)")
    return path


def gsm8k_rollouts(limit: int | None = None) -> list[dict]:
    """The labelled GSM8K rollouts as farm rollout dicts: one group per question."""
    keys = ("6b_finetuning", "6b_verification", "175b_finetuning", "175b_verification")
    out = []
    with shared_file("gsm8k_model_solutions.jsonl").open(encoding="utf-8") as handle:
        for index, line in enumerate(handle):
            if limit is not None and index >= limit:
                break
            row = json.loads(line)
            for key in keys:
                out.append(
                    {
                        "id": f"q{index}-{key}",
                        "prompt": row["question"],
                        "response": row[key]["solution"],
                        "reference": row["ground_truth"],
                        "group": f"q{index}",
                        "metadata": {"is_correct": row[key]["is_correct"]},
                    }
                )
    return out


@pytest.fixture
def emulator() -> Iterator[EmulatorThread]:
    """A fresh emulator with near-zero latency; tests change its settings with `.update(...)`."""
    with EmulatorThread(EmulatorSettings(latency_ms=2, latency_sigma=0, rpm=60_000, tpm=100_000_000)) as emu:
        yield emu


@pytest.fixture
def aws_env(emulator: EmulatorThread, monkeypatch: pytest.MonkeyPatch) -> EmulatorThread:
    """Point botocore at the emulator the standard way: env vars only, no code changes."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", emulator.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return emulator


def fast_bedrock(**overrides: object) -> BedrockConfig:
    """Bedrock settings for tests: generous quotas, quick retries."""
    values: dict[str, object] = {
        "region": "us-east-1",
        "retry": RetryConfig(max_attempts=4, base_delay_s=0.01, max_delay_s=0.05),
        "default_quota": QuotaConfig(rpm=60_000, tpm=100_000_000),
        "read_timeout_s": 10.0,
    }
    values.update(overrides)
    return BedrockConfig(**values)  # type: ignore[arg-type]


def make_config(judges: list[dict], **sections: object) -> FarmConfig:
    data: dict[str, object] = {"judges": judges, "bedrock": fast_bedrock().model_dump()}
    data.update(sections)
    return parse_config(data)


RUBRIC = {
    "name": "rubric",
    "kind": "rubric",
    "model": "amazon.nova-lite-v1:0",
    "criteria": [
        {"name": "correctness", "description": "The final answer is correct.", "weight": 2},
        {"name": "answered", "description": "States a final answer.", "scale": "boolean"},
    ],
}
PREFERENCE = {"name": "preference", "kind": "preference", "model": "amazon.nova-micro-v1:0"}

os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")

_FIGURES: list[str] = []


@pytest.fixture
def report() -> Callable[[str], None]:
    """Record a measured figure; all of them are printed at the end of the test run."""
    return _FIGURES.append


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _FIGURES:
        terminalreporter.section("measured figures")
        for line in _FIGURES:
            terminalreporter.write_line(line)
