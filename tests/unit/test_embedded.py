"""Layering: `Ensemble.from_config` starts nothing and chooses no backend; `farm.embedded`, used
by the callers that want it (CLI, `embedded_ensemble`), starts the emulator. Run in a fresh
interpreter with no AWS credentials, so the process's environment and modules are its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

SCRIPT = """
import os, sys, warnings
from farm import Ensemble, load_config

config = load_config()  # the packaged default: Bedrock judges
with warnings.catch_warnings(record=True) as plain_warnings:
    warnings.simplefilter("always")
    Ensemble.from_config(config)
endpoint = os.environ.get("AWS_ENDPOINT_URL_BEDROCK_RUNTIME")
print("from_config", "farm.embedded" in sys.modules, "farm.emulator" in sys.modules, endpoint, len(plain_warnings))
from farm.embedded import embedded_ensemble
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    ensemble = embedded_ensemble(config)
print("embedded", os.environ.get("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "").startswith("http://127.0.0.1:"), len(ensemble.members))
print("warned", [(os.path.basename(w.filename), w.lineno) for w in caught], "emulator" in str(caught[0].message))
"""


def test_from_config_starts_nothing_and_embedded_ensemble_starts_the_emulator(tmp_path: Path):
    (tmp_path / "snippet.py").write_text(SCRIPT)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "AWS_EC2_METADATA_DISABLED": "true"}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run([sys.executable, "snippet.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "from_config False False None 0"  # the ensemble layer reached for no emulator, no backend
    assert lines[1] == "embedded True 3"
    assert lines[2] == "warned [('snippet.py', 14)] True"  # the warning points at the user's line
