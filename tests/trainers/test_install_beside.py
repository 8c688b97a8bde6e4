"""The farm's client install beside each trainer's own pins (read from the trainers' metadata).

Every trainer: pip resolves the trainer's pins together with `reward-farm` (the base install a
trainer uses, `--dry-run`, nothing installed): it must resolve, keep every pin, and bring no
Ray, torch or aiobotocore of its own. OpenRLHF, the strictest (Ray 2.55.0 and transformers
5.15.0 pinned exactly), also gets the full story: a fresh virtual environment with the trainer
(`--no-deps`: its GPU stack is not the point) and its pins, then `pip install reward-farm`; the
pinned versions must not move, a call over HTTP to the `farm serve` started from the project's
environment must score a rollout, and the Ray handle client must refuse with both Ray versions
named. Three real venvs took 11 minutes on the shared 2-core machine (Ray's wheel unpacked per
venv), hence one real venv and dry-run resolutions (of reward-farm's requirements) for the others; the
dry runs start together, before the real venv, and run beside it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from farm.client import SERVER_RAY_VERSION
from tests.conftest import REPO

pytestmark = [pytest.mark.trainers, pytest.mark.integration, pytest.mark.ray, pytest.mark.slow]

TRAINERS = {
    # OpenRLHF 0.11.2: Requires-Dist ray[default]==2.55.0, transformers==5.15.0
    "openrlhf": ("openrlhf==0.11.2", ["ray[default]==2.55.0", "transformers==5.15.0"]),
    # verl 0.9.1: ray[default]>=2.41.0, transformers!=5.6.0,<5.11,>=5.5.3
    "verl": ("verl==0.9.1", ["ray[default]>=2.41.0", "transformers!=5.6.0,<5.11,>=5.5.3"]),
    # TRL 1.16.0: transformers>=4.56.2
    "trl": ("trl==1.16.0", ["transformers>=4.56.2"]),
}

CLIENT_CALL = """
import json, sys
from farm.client import HttpFarmClient
url, token = sys.argv[1], sys.argv[2]
rollout = {"id": "q1", "prompt": "What is 2 + 3?", "response": "2 + 3 = 5. #### 5", "reference": "5"}
(result,) = HttpFarmClient(url, token=token).score([rollout])
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("ray", "aiobotocore", "torch"))
print(json.dumps({"reward": result.reward, "status": result.status, "heavy": heavy}))
"""

HANDLE_CALL = """
from farm.client import FarmClient
from farm.errors import FarmError
try:
    FarmClient("reward-farm").score([{"id": "a", "prompt": "p", "response": "r"}])
except FarmError as exc:
    print(exc)
"""


def _pip(python: Path, *args: str) -> None:
    # --no-compile: resolution and install are as a trainer gets them; only the byte-compiling of Ray's and
    # transformers' thousands of modules (CPU-bound, tens of seconds here) is left to first import
    command = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-compile", *args]
    subprocess.run(command, check=True, timeout=900)


def _versions(python: Path) -> dict[str, str]:
    out = subprocess.run([str(python), "-m", "pip", "list", "--format", "json"], check=True, capture_output=True, text=True).stdout
    return {row["name"].lower(): row["version"] for row in json.loads(out)}


def _client_requirements() -> list[str]:
    # reward-farm's own requirements (building the package for a dry run costs ~40 s more and adds nothing)
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]


@pytest.fixture(scope="session")
def resolutions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[subprocess.Popen, Path]]]:
    """Every trainer's dry-run resolution, started at once: pip mostly waits on the index, so the three
    run beside each other and beside the real venv below instead of one after another."""
    folder = tmp_path_factory.mktemp("resolve")
    started: dict[str, tuple[subprocess.Popen, Path]] = {}
    for trainer, (_, pins) in sorted(TRAINERS.items()):
        report = folder / f"{trainer}.json"
        command = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--dry-run", "--ignore-installed"]
        command += ["--report", str(report), *pins, *_client_requirements()]
        started[trainer] = (subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True), report)
    try:
        yield started
    finally:
        for proc, _ in started.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_client_installs_beside_openrlhf_and_scores_over_http(resolutions, farm_http, tmp_path):
    """Runs first (and asks for `resolutions` first) so that the dry runs overlap its venv and `farm serve`."""
    from packaging.requirements import Requirement

    trainer = "openrlhf"
    package, pins = TRAINERS[trainer]
    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "venv")], check=True)
    python = tmp_path / "venv" / "bin" / "python"
    _pip(python, "--no-deps", package)
    _pip(python, *pins)
    before = _versions(python)
    _pip(python, "-e", str(REPO))  # what a trainer runs: `pip install reward-farm`
    after = _versions(python)
    for pin in pins:
        requirement = Requirement(pin)
        name = requirement.name.lower()
        assert after[name] == before[name], f"installing the farm moved {name} {before[name]} -> {after[name]}"
        assert requirement.specifier.contains(after[name]), f"{name} {after[name]} breaks {trainer}'s pin {pin}"
    assert "reward-farm" in after

    call = subprocess.run(
        [str(python), "-c", CLIENT_CALL, farm_http["url"], farm_http["token"]], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert call.returncode == 0, call.stderr[-3000:]
    body = json.loads(call.stdout.strip().splitlines()[-1])
    assert body["status"] in ("ok", "partial") and body["reward"] is not None
    assert body["heavy"] == [], f"the HTTP client imported {body['heavy']}"

    if "ray" in after and after["ray"] != SERVER_RAY_VERSION:
        refused = subprocess.run([str(python), "-c", HANDLE_CALL], capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert f"needs Ray {SERVER_RAY_VERSION}" in refused.stdout and f"has Ray {after['ray']}" in refused.stdout, (
            refused.stdout + refused.stderr
        )


@pytest.mark.parametrize("trainer", sorted(TRAINERS))
def test_client_resolves_beside_the_trainer_pins(resolutions, trainer):
    from packaging.requirements import Requirement

    _, pins = TRAINERS[trainer]
    client = _client_requirements()
    proc, report = resolutions[trainer]
    output, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, f"pip could not resolve {trainer}'s pins with reward-farm:\n{output[-3000:]}"
    chosen = {item["metadata"]["name"].lower(): item["metadata"]["version"] for item in json.loads(report.read_text())["install"]}
    for requirement in map(Requirement, client):
        assert requirement.name.lower() in chosen
    for pin in pins:
        requirement = Requirement(pin)
        assert requirement.specifier.contains(chosen[requirement.name.lower()]), f"{pin} resolved to {chosen[requirement.name.lower()]}"
    pinned = {Requirement(pin).name.lower() for pin in pins}
    brought = sorted(name for name in ("ray", "torch", "aiobotocore", "botocore") if name in chosen and name not in pinned)
    assert brought == [], f"the client install brought {brought} into a {trainer} environment"
