"""The `farm` command line as a user runs it: real subprocesses, the embedded emulator, files on disk."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.integration


def farm(*args: str, env_extra: dict | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and not k.startswith("FARM_")}
    env.update({"FARM_BACKEND": "emulator", "AWS_EC2_METADATA_DISABLED": "true", "PYTHONUNBUFFERED": "1"})
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "farm.cli", *args], capture_output=True, text=True, env=env, timeout=timeout, cwd=REPO)


def test_score_sample_on_embedded_default(tmp_path: Path):
    out = tmp_path / "rewards.jsonl"
    proc = farm("score", "examples/gsm8k_rollouts.jsonl", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "Bedrock EMULATOR" in proc.stderr  # says so loudly
    results = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(results) == 100 and len({r["id"] for r in results}) == 100
    for result in results:
        assert set(result["judges"]) == {"final_answer", "rubric", "preference"}
        assert result["status"] == "ok" and 0.0 <= result["reward"] <= 1.0
    summary = json.loads((tmp_path / "rewards.jsonl.summary.json").read_text())
    assert summary["rollouts"] == 100 and summary["invalid_rows"] == 0 and summary["input_tokens"] > 0
    rows = [json.loads(line) for line in (REPO / "examples/gsm8k_rollouts.jsonl").read_text().splitlines()]
    labels = {row["id"]: row["metadata"]["is_correct"] for row in rows}
    correct = [r["reward"] for r in results if labels[r["id"]]]
    wrong = [r["reward"] for r in results if not labels[r["id"]]]
    assert sum(correct) / len(correct) > sum(wrong) / len(wrong)


def test_score_over_worker_processes_matches_one_process(tmp_path: Path):
    """`--workers 3`: shards of whole groups in 3 processes, each with a third of the quota; the
    joined results and summary are those of one process (a split group would change its
    preference rewards)."""
    source = tmp_path / "in.jsonl"
    source.write_text("".join((REPO / "examples/gsm8k_rollouts.jsonl").read_text().splitlines(keepends=True)[:28]))  # 7 groups of 4
    runs = {}
    for workers in ("1", "3"):
        out = tmp_path / f"w{workers}.jsonl"
        proc = farm("score", str(source), "--out", str(out), "--workers", workers)
        assert proc.returncode == 0, proc.stderr
        assert "scoring 28/28 rollouts" in proc.stderr  # the workers' progress reaches the parent's line
        rewards = {r["id"]: r["reward"] for r in map(json.loads, out.read_text().splitlines())}
        summary = json.loads(out.with_name(out.name + ".summary.json").read_text())
        runs[workers] = rewards, {k: summary[k] for k in ("rollouts", "status", "judge_status", "input_tokens", "cost_usd", "reward_mean")}
    assert len(runs["3"][0]) == 28 and runs["3"] == runs["1"]


def test_bad_rows_are_reported_by_line_and_the_rest_scored(tmp_path: Path):
    good = {"id": "ok", "prompt": "2+2?", "response": "A: 4", "reference": "A: 4"}
    lines = [
        json.dumps(good).encode(),
        b'{"id": "nope", "prompt": "p"}',
        b'{"id": "bin", "prompt": "p", "response": "\xff\xfe"}',
        b"{not json",
        json.dumps({"id": "empty", "prompt": "p", "response": "", "reference": "A: 1"}).encode(),
        json.dumps({"id": "huge", "prompt": "p", "response": "x " * 50_000 + "A: 4", "reference": "A: 4"}).encode(),
        json.dumps(good).encode(),
        json.dumps(
            {
                "id": "rft",
                "messages": [{"role": "user", "content": "1+1?"}, {"role": "nova_assistant", "content": "A: 2"}],
                "reference_answer": "2",
            }
        ).encode(),
    ]
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / "out.jsonl"
    proc = farm("score", str(source), "--out", str(out))
    assert proc.returncode == 1
    assert "4 invalid input row(s)" in proc.stderr
    errors = [json.loads(line) for line in (tmp_path / "out.jsonl.errors.jsonl").read_text().splitlines()]
    by_line = {e["line"]: e["error"] for e in errors}
    assert set(by_line) == {2, 3, 4, 7}
    assert "field `response`" in by_line[2] and "'nope'" in by_line[2]
    assert "not valid UTF-8" in by_line[3]
    assert "not valid JSON" in by_line[4]
    assert "duplicate id 'ok'" in by_line[7]
    results = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert set(results) == {"ok", "empty", "huge", "rft"}
    assert results["empty"]["flags"] == ["empty_response"] and results["empty"]["reward"] == 0.0
    assert "truncated" in results["huge"]["flags"] and results["huge"]["judges"]["rubric"]["status"] == "ok"
    assert results["rft"]["judges"]["final_answer"]["score"] == 1.0


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("judges:\n  - {name: a, kind: final_answer, wieght: 2}\n", "unknown key `wieght` in judges[0] (did you mean `weight`?)"),
        ("judges:\n  - {name: a, kind: crystal_ball}\n", "judges[0].kind"),
        ("judgez: []\n", "unknown key `judgez`"),
    ],
)
def test_bad_config_fails_before_scoring(tmp_path: Path, yaml_text: str, message: str):
    config = tmp_path / "farm.yaml"
    config.write_text(yaml_text)
    proc = farm("score", "examples/gsm8k_rollouts.jsonl", "--out", str(tmp_path / "o.jsonl"), "--config", str(config))
    assert proc.returncode == 1
    assert message in proc.stderr
    assert not (tmp_path / "o.jsonl").exists()


def test_emulator_command_serves_boto3(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "farm.cli", "emulator", "--port", "0", "--rpm", "100", "--latency-ms", "0", "--fault", "internal=0.0"],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = proc.stderr.readline()
        match = re.search(r"http://127\.0\.0\.1:\d+", line)
        assert match, line
        client = boto3.client(
            "bedrock-runtime", region_name="us-east-1", endpoint_url=match.group(0), aws_access_key_id="x", aws_secret_access_key="y"
        )
        reply = client.converse(modelId="amazon.nova-micro-v1:0", messages=[{"role": "user", "content": [{"text": "hi"}]}])
        assert reply["output"]["message"]["role"] == "assistant"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    bad = farm("emulator", "--fault", "gremlins=0.5")
    assert bad.returncode != 0 and "gremlins" in bad.stderr


def test_probe_on_embedded_default_reports_every_section(tmp_path: Path, report):
    """`farm probe` as a user runs it first: the default ensemble, packaged GSM8K and HH samples."""
    out = tmp_path / "probe.json"
    proc = farm("probe", "--limit", "4", "--pairs-limit", "6", "--repeats", "2", "--json", str(out), timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["rollouts"] == 4 and len(result["inflation"]) == 23  # 15 transforms (terse added) + 8 injection variants (issue 14)
    assert set(result["detection"]) == {p for p in result["inflation"] if p.startswith("injection")}
    assert set(result["findings"]) == {"final_answer", "rubric", "preference"}
    assert set(result["self_consistency"]) == {"final_answer", "rubric", "preference"}
    assert result["pairs"]["preference"]["pairs"] == 6
    assert "injection_suffix" in proc.stdout and "human pairs preference" in proc.stdout
    report(f"farm probe (default ensemble, emulator): findings {result['findings']}; HH pairs {result['pairs']}")
