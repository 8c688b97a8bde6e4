"""Static checks in CI: ruff (lint and format) on the repository, mypy on farm/, actors/ and deploy/.

Both tools come from the `dev` extra (CI pins them in constraints/ci.txt) and read their settings
from pyproject.toml, so `ruff check . && ruff format --check . && mypy` from the repository root is
the same check by hand. mypy keeps its incremental cache in `.mypy_cache/` (gitignored): ~15 s of CPU on
a clean checkout (torch and transformers are not followed), seconds after that.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO

__all__: list[str] = []


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=280)


def test_ruff_lint_and_format_are_clean():
    lint = _run("ruff", "check", "--no-fix", "--output-format", "concise", ".")
    assert lint.returncode == 0, f"`ruff check .` found problems:\n{lint.stdout}{lint.stderr}"
    form = _run("ruff", "format", "--check", ".")
    assert form.returncode == 0, f"`ruff format --check .` (fix with `ruff format .`):\n{form.stdout}{form.stderr}"


@pytest.mark.slow
def test_mypy_is_clean_on_farm_actors_deploy():
    checked = _run("mypy", "--cache-dir", str(REPO / ".mypy_cache"))
    assert checked.returncode == 0, f"`mypy` (files and settings from pyproject.toml) found errors:\n{checked.stdout}{checked.stderr}"
    assert "Success: no issues found" in checked.stdout, checked.stdout
