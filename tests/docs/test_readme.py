"""The README runs as written: a new user's first hour, replayed in CI.

Which blocks run: every ```bash block between "## Two commands" and "## Inputs", in order, in ONE
fresh `bash` (with `set -e`, so the first failing command fails the test), and every ```python
block there, at its place in the order, as a file run by that shell's `python`. Two exceptions:

- the block that installs the development extras and runs `pytest`: it is what CI runs to get
  here (`.ci/run`);
- lines that create or install the virtual environment (`python3 -m venv ...`): installing needs
  the network and minutes, and CI has just installed `.venv` the same way, so the scratch folder's
  `.venv` is linked to the environment running this test instead.

A fresh shell: no `AWS_*`, `FARM_*` or `RAY_*` variables, `HOME` an empty folder (no `~/.aws`), and
no virtual environment on `PATH` — a bare `farm` works only because the README says
`source .venv/bin/activate`. The blocks run in a scratch folder holding `examples/`; ports 8000 and
8765 become free ports. Long-running commands (`farm emulator &`, `farm serve &`) are stopped by the
README's own `kill $!`; the test kills what is left of the shell's process group at the end.
Set `FARM_README_TRANSCRIPT=path` to keep the transcript (the README's "What you should see" blocks
come from one).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from farm.config import load_config, parse_config
from tests.conftest import REPO

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.ray]

README = REPO / "README.md"
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def _section(text: str, start: str, end: str) -> str:
    return text[text.index(start) : text.index(end)]


def tour_blocks(text: str) -> list[tuple[str, str]]:
    """(language, code) of the blocks that run, in README order."""
    blocks = []
    for lang, code in _FENCE.findall(_section(text, "## Two commands", "## Inputs")):
        if lang not in ("bash", "python") or (lang == "bash" and "pytest" in code):
            continue
        if lang == "bash":
            code = "\n".join(line for line in code.splitlines() if not line.startswith("python3 -m venv")) + "\n"
        blocks.append((lang, code))
    return blocks


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def script_for(blocks: list[tuple[str, str]], folder: Path) -> str:
    ports = {"8000": str(_free_port()), "8765": str(_free_port())}
    lines = ["set -e"]
    for index, (lang, code) in enumerate(blocks):
        for old, new in ports.items():
            code = re.sub(rf"\b{old}\b", new, code)
        lines.append(f"echo '### block {index} ({lang})'")
        if lang == "python":
            path = folder / f"readme_block_{index}.py"
            path.write_text(code, encoding="utf-8")
            lines.append(f"python {path.name}")
        else:
            lines.append(code)
    lines.append("echo '### README done'")
    return "\n".join(lines) + "\n"


def fresh_env(home: Path) -> dict[str, str]:
    venv_bin = str(Path(sys.prefix) / "bin")
    path = os.pathsep.join(p for p in os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep) if p and p != venv_bin)
    env = {"PATH": path, "HOME": str(home), "LANG": os.environ.get("LANG", "C.UTF-8"), "PYTHONPATH": str(REPO)}
    env["AWS_EC2_METADATA_DISABLED"] = "true"  # no AWS account here; never wait on the metadata service
    return env


def test_readme_blocks_are_the_ones_meant():
    blocks = tour_blocks(README.read_text(encoding="utf-8"))
    langs = [lang for lang, _ in blocks]
    assert langs.count("python") == 1 and langs.count("bash") >= 5
    joined = "".join(code for _, code in blocks)
    assert "source .venv/bin/activate" in joined and ".venv/bin/farm score" in joined
    assert "farm serve" in joined and "kill $!" in joined and "export " not in joined  # nothing leaks between steps


def test_configuration_example_agrees_with_the_packaged_default():
    text = _section(README.read_text(encoding="utf-8"), "## Configuration", "## The Bedrock emulator")
    example = yaml.safe_load(next(code for lang, code in _FENCE.findall(text) if lang == "yaml"))
    parsed = parse_config(example, source="README example")
    default = load_config(environ={})
    assert parsed.emulator == default.emulator
    for model, quota in default.bedrock.quotas.items():
        assert parsed.bedrock.quotas[model].rpm == quota.rpm and parsed.bedrock.quotas[model].tpm == quota.tpm
    tour = _section(README.read_text(encoding="utf-8"), "## A five-minute tour", "## Inputs")
    rpm = int(re.search(r"farm emulator .*--rpm (\d+)", tour).group(1))
    assert all(q.rpm <= rpm for q in default.bedrock.quotas.values())  # the tour's emulator admits the default quota


def test_readme_runs_as_written_in_a_fresh_shell(tmp_path: Path):
    if not (Path(sys.prefix) / "bin" / "farm").exists():
        pytest.skip("needs the `farm` console script installed in this environment (pip install -e .)")
    work, home = tmp_path / "clone", tmp_path / "home"
    work.mkdir()
    home.mkdir()
    shutil.copytree(REPO / "examples", work / "examples")
    (work / ".venv").symlink_to(Path(sys.prefix))
    script = script_for(tour_blocks(README.read_text(encoding="utf-8")), work)
    proc = subprocess.Popen(
        ["bash", "-c", script],
        cwd=work,
        env=fresh_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=540)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail("README tour did not finish in 540 s:\n" + out[-6000:])
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # whatever a block left running
        except ProcessLookupError:
            pass
    if os.environ.get("FARM_README_TRANSCRIPT"):
        Path(os.environ["FARM_README_TRANSCRIPT"]).write_text(out, encoding="utf-8")
    assert proc.returncode == 0 and "### README done" in out, out[-6000:]
    assert "command not found" not in out and "Traceback" not in out, out[-6000:]

    def results(name: str) -> list[dict]:
        return [json.loads(line) for line in (work / name).read_text().splitlines()]

    for name in ("rewards.jsonl", "rewards-emulator.jsonl", "rewards-calibrated.jsonl"):
        rows = results(name)
        assert len(rows) == 100 and all(r["status"] == "ok" for r in rows), name  # exit 0 means no degraded rollout
    assert "backend: Bedrock EMULATOR" in out and "backend: endpoint override http://127.0.0.1:" in out
    start = re.search(r'^\{"(?:[a-z]+\.)?amazon\.nova', out, re.M).start()  # step 3's curl of the emulator's stats (no newline after it)
    stats, _ = json.JSONDecoder().raw_decode(out, start)
    assert all(model["admitted"] > 0 for model in stats.values())
    assert sum(model["faults"].get("throttle", 0) for model in stats.values()) > 0  # the injected 429s were retried: all ok above
    assert len(re.findall(r"^q\d+-\S+ ok \d", out, re.M)) == 8, out[-6000:]  # the Python snippet's print
    assert '{"results":[{"id":"q0-6b_finetuning"' in out.replace(" ", "")
    assert (work / "calibrated.yaml").exists() and "score_map" in (work / "calibrated.yaml").read_text()
