"""The first hour with the `farm` command: one error style (exact first lines), exit codes that tell
the truth, no overwritten outputs, progress on a terminal. Real subprocesses, files on disk."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.integration

RULES_ONLY = "judges:\n  - {name: answer, kind: final_answer}\n"
ROWS = [
    {"id": "a", "prompt": "2+2?", "response": "A: 4", "reference": "4"},
    {"id": "b", "prompt": "3+3?", "response": "A: 5", "reference": "6"},
    {"id": "c", "prompt": "1+1?", "response": "A: 2", "reference": "2"},
]


def fresh_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FARM_", "RAY_ADDRESS"))}
    env.update({"HOME": str(tmp_path), "AWS_EC2_METADATA_DISABLED": "true", "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)})
    env.update(extra)
    return env


def farm(tmp_path: Path, *args: str, timeout: float = 180, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "farm.cli", *args],
        capture_output=True,
        text=True,
        env=fresh_env(tmp_path, **env),
        timeout=timeout,
        cwd=tmp_path,
    )


def errors(proc: subprocess.CompletedProcess) -> list[str]:
    """The `Error:` line and the hint under it."""
    lines = proc.stderr.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("Error: "))
    return lines[at : at + 2]


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, Path]:
    rows = tmp_path / "in.jsonl"
    rows.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    config = tmp_path / "rules.yaml"
    config.write_text(RULES_ONLY)
    return rows, config


def test_out_is_never_overwritten_without_force_and_stale_companions_go(tmp_path: Path, inputs):
    rows, config = inputs
    first = farm(tmp_path, "score", "in.jsonl", "--out", "out.jsonl", "--config", "rules.yaml")
    assert first.returncode == 0, first.stderr
    assert first.stderr.splitlines()[0] == "backend: none (no Bedrock judges); config: rules.yaml"
    stale = tmp_path / "out.jsonl.errors.jsonl"
    stale.write_text('{"line": 9, "error": "from an older run"}\n')
    again = farm(tmp_path, "score", "in.jsonl", "--out", "out.jsonl", "--config", "rules.yaml")
    assert again.returncode == 1
    assert errors(again) == ["Error: out.jsonl already exists", "  pass --force to overwrite it, or choose another output path"]
    forced = farm(tmp_path, "score", "in.jsonl", "--out", "out.jsonl", "--config", "rules.yaml", "--force")
    assert forced.returncode == 0, forced.stderr
    assert not stale.exists()
    summary = json.loads((tmp_path / "out.jsonl.summary.json").read_text())
    assert summary["errors_file"] is None and summary["degraded"] == "no degraded rollouts: all 3 ok"
    assert "scored 3 rollouts -> out.jsonl: no degraded rollouts: all 3 ok" in forced.stderr


def test_out_in_a_missing_folder_is_one_line_not_a_traceback(tmp_path: Path, inputs):
    proc = farm(tmp_path, "score", "in.jsonl", "--out", "nope/out.jsonl", "--config", "rules.yaml")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert errors(proc) == ["Error: folder nope does not exist (for nope/out.jsonl)", "  create it first: mkdir -p nope"]


def test_empty_input_is_an_error_not_none_per_second(tmp_path: Path, inputs):
    (tmp_path / "empty.jsonl").write_text("")
    proc = farm(tmp_path, "score", "empty.jsonl", "--out", "out.jsonl", "--config", "rules.yaml")
    assert proc.returncode == 1 and "None" not in proc.stderr
    assert errors(proc)[0] == "Error: empty.jsonl holds no rollouts"


def test_env_override_typo_is_named_as_such(tmp_path: Path, inputs):
    proc = farm(tmp_path, "score", "in.jsonl", "--out", "out.jsonl", FARM_AGGREGATION__QUORAM="2")
    assert proc.returncode == 1
    assert errors(proc) == [
        "Error: environment variable FARM_AGGREGATION__QUORAM: unknown key `quoram` in aggregation (did you mean `quorum`?)",
        "  unset it, or fix its name: FARM_<SECTION>__<KEY>, e.g. FARM_BEDROCK__REGION",
    ]
    section = farm(tmp_path, "score", "in.jsonl", "--out", "out.jsonl", FARM_AGREGATION__QUORUM="1")
    assert (
        errors(section)[0]
        == "Error: environment variable FARM_AGREGATION__QUORUM: unknown config section `agregation` (did you mean `aggregation`?)"
    )


def test_bedrock_without_credentials_exits_3_with_the_reason(tmp_path: Path, inputs):
    proc = farm(tmp_path, "score", "in.jsonl", "--out", "out.jsonl", FARM_BACKEND="bedrock")
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.splitlines()[0].startswith(
        "backend: Amazon Bedrock, region us-east-1 (credentials: none in the environment or ~/.aws"
    )
    summary_first = next(line for line in proc.stderr.splitlines() if line.startswith("scored "))
    assert summary_first.startswith("scored 3 rollouts -> out.jsonl: judge rubric failed on every rollout (3 of 3): ")
    assert "Unable to locate credentials" in summary_first
    assert errors(proc)[0].startswith("Error: degraded run: judge rubric failed on every rollout (3 of 3): ")
    assert len(Path(tmp_path / "out.jsonl").read_text().splitlines()) == 3  # results are still written
    assert json.loads((tmp_path / "out.jsonl.summary.json").read_text())["degraded_over_limit"] is True
    relaxed = farm(tmp_path, "score", "in.jsonl", "--out", "out.jsonl", "--force", "--max-degraded", "1", FARM_BACKEND="bedrock")
    assert relaxed.returncode == 0, relaxed.stderr


def test_embedded_default_names_the_emulator_and_the_config_source(tmp_path: Path, inputs):
    proc = farm(tmp_path, "score", "in.jsonl", "--out", "out.jsonl")
    assert proc.returncode == 0, proc.stderr
    first = proc.stderr.splitlines()[0]
    assert first.startswith("backend: Bedrock EMULATOR at http://127.0.0.1:") and "(started here: no AWS credentials found;" in first
    assert first.endswith("; config: packaged default (farm/defaults/default.yaml)")


@pytest.mark.parametrize("command", ["serve", "emulator"])
def test_taken_port_is_one_line(tmp_path: Path, command: str):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        proc = farm(tmp_path, command, "--port", str(port))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert errors(proc) == [
        f"Error: cannot listen on 127.0.0.1:{port}: already in use",
        f"  stop what holds it, or pass another --port (e.g. --port {port + 1})",
    ]


def test_rescore_checks_paths_before_starting_ray(tmp_path: Path, inputs):
    missing = farm(tmp_path, "rescore", "nope.jsonl", "--out", "rescored", "--config", "rules.yaml")
    assert missing.returncode == 1 and errors(missing)[0] == "Error: input nope.jsonl does not exist"
    (tmp_path / "rescored").mkdir()
    (tmp_path / "rescored" / "part-000000.parquet").write_text("x")
    taken = farm(tmp_path, "rescore", "in.jsonl", "--out", "rescored", "--config", "rules.yaml")
    assert errors(taken) == ["Error: rescored already holds results", "  pass --resume to finish that run, or choose another --out"]
    for proc in (missing, taken):
        assert "Ray" not in proc.stderr  # failed before Ray started


def test_progress_redraws_one_line_on_a_terminal_and_prints_plain_lines_in_a_pipe(tmp_path: Path, inputs):
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "farm.cli", "score", "in.jsonl", "--out", "tty.jsonl", "--config", "rules.yaml"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=follower,
        env=fresh_env(tmp_path),
        cwd=tmp_path,
    )
    os.close(follower)
    seen = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 120)
        if not ready:
            break
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closed: the process is done
            break
        if not chunk:
            break
        seen += chunk
    os.close(leader)
    assert proc.wait(timeout=60) == 0
    text = seen.decode()
    assert "\rscoring 0/3 rollouts" in text and "\rscoring 3/3 rollouts" in text and "failed verdicts 0" in text
    piped = farm(tmp_path, "score", "in.jsonl", "--out", "pipe.jsonl", "--config", "rules.yaml")
    assert "\r" not in piped.stderr
    assert any(line.startswith("scoring 3/3 rollouts, ") for line in piped.stderr.splitlines())


def test_calibrate_with_a_judge_failing_everywhere_exits_3_and_writes_nothing(tmp_path: Path):
    proc = farm(tmp_path, "calibrate", "--limit", "4", "--out", "calibrated.yaml", FARM_BACKEND="bedrock")
    assert proc.returncode == 3, proc.stderr
    assert errors(proc)[0].startswith("Error: degraded run: judge rubric failed on every rollout (4 of 4): ")
    assert not (tmp_path / "calibrated.yaml").exists()


def test_ctrl_c_is_one_line_and_exit_130(tmp_path: Path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "farm.cli", "score", str(REPO / "examples/gsm8k_rollouts.jsonl"), "--out", "out.jsonl"],
        stderr=subprocess.PIPE,
        text=True,
        env=fresh_env(tmp_path),
        cwd=tmp_path,
    )
    assert proc.stderr is not None
    assert proc.stderr.readline().startswith("backend: Bedrock EMULATOR")  # the emulator is up; scoring starts
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in rest, rest
    lines = rest.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("Error: "))
    assert lines[at].startswith("Error: interrupted")  # "interrupted after N of 100 rollouts" once scoring runs
