"""`--out`/`--force`: an output that is an input is refused, and a failed run keeps the previous
results (outputs are staged beside the target and moved over it only on success). No Ray."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from farm.cli import main

RULES_ONLY = "judges:\n  - {name: answer, kind: final_answer}\n"
ROWS = [
    {"id": "a", "prompt": "2+2?", "response": "A: 4", "reference": "4"},
    {"id": "b", "prompt": "3+3?", "response": "A: 5", "reference": "6"},
]


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("RAY_ADDRESS", "FARM_BACKEND", "FARM_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    (tmp_path / "rules.yaml").write_text(RULES_ONLY)
    return tmp_path


def _run(*args: str):
    return CliRunner().invoke(main, list(args))


@pytest.mark.parametrize(
    "args",
    [
        ("calibrate", "--config", "rules.yaml", "--out", "rules.yaml", "--force"),
        ("calibrate", "--config", "rules.yaml", "--out", "./sub/../rules.yaml", "--force"),
        ("pin-canaries", "--config", "rules.yaml", "--data", "in.jsonl", "--out", "in.jsonl", "--force"),
        ("score", "in.jsonl", "--out", "in.jsonl", "--config", "rules.yaml", "--force"),
        ("score", "in.jsonl", "--out", "rules.yaml", "--config", "rules.yaml", "--force"),
    ],
)
def test_an_output_that_is_an_input_is_refused_and_left_intact(folder: Path, args: tuple[str, ...]):
    (folder / "sub").mkdir()
    before = {p: (folder / p).read_bytes() for p in ("in.jsonl", "rules.yaml")}
    result = _run(*args)
    assert result.exit_code == 1 and "is also an input of this run" in result.output, result.output
    assert {p: (folder / p).read_bytes() for p in before} == before


def test_a_failing_forced_run_keeps_the_previous_results(folder: Path):
    first = _run("score", "in.jsonl", "--out", "out.jsonl", "--config", "rules.yaml")
    assert first.exit_code == 0, first.output
    kept = {p.name: p.read_bytes() for p in folder.glob("out.jsonl*")}
    assert set(kept) == {"out.jsonl", "out.jsonl.summary.json"}
    (folder / "broken.yaml").write_text("judges: [{name: answer, kind: gremlins}]\n")
    failed = _run("score", "in.jsonl", "--out", "out.jsonl", "--config", "broken.yaml", "--force")
    assert failed.exit_code == 1 and "gremlins" in failed.output, failed.output
    assert {p.name: p.read_bytes() for p in folder.glob("out.jsonl*")} == kept
    assert not list(folder.glob(".out.jsonl*"))  # no staging file left behind


def test_a_run_that_fails_while_scoring_keeps_the_previous_results(folder: Path, monkeypatch: pytest.MonkeyPatch):
    assert _run("score", "in.jsonl", "--out", "out.jsonl", "--config", "rules.yaml").exit_code == 0
    kept = (folder / "out.jsonl").read_bytes()

    async def half_then_crash(input_path, output_path, *args, **kwargs):
        await asyncio.to_thread(Path(output_path).write_text, '{"id": "a", "partial": true}\n')
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("farm.scorefile.score_file", half_then_crash)
    crashed = _run("score", "in.jsonl", "--out", "out.jsonl", "--config", "rules.yaml", "--force")
    assert crashed.exit_code != 0
    assert (folder / "out.jsonl").read_bytes() == kept
    assert not list(folder.glob(".out.jsonl*"))


def test_a_successful_forced_run_replaces_results_and_drops_stale_errors(folder: Path):
    assert _run("score", "in.jsonl", "--out", "out.jsonl", "--config", "rules.yaml").exit_code == 0
    stale = folder / "out.jsonl.errors.jsonl"
    stale.write_text('{"line": 9, "error": "from an older run"}\n')
    forced = _run("score", "in.jsonl", "--out", "out.jsonl", "--config", "rules.yaml", "--force")
    assert forced.exit_code == 0, forced.output
    assert not stale.exists() and len((folder / "out.jsonl").read_text().splitlines()) == 2
    summary = json.loads((folder / "out.jsonl.summary.json").read_text())
    assert summary["output"] == "out.jsonl" and summary["errors_file"] is None
    (folder / "in.jsonl").write_text((folder / "in.jsonl").read_text() + "not json\n")
    with_errors = _run("score", "in.jsonl", "--out", "out.jsonl", "--config", "rules.yaml", "--force")
    assert with_errors.exit_code == 1
    assert stale.exists() and json.loads((folder / "out.jsonl.summary.json").read_text())["errors_file"] == "out.jsonl.errors.jsonl"
    assert not list(folder.glob(".out.jsonl*"))


def test_serve_probes_the_port_only_when_it_starts_a_local_ray(folder: Path, monkeypatch: pytest.MonkeyPatch):
    """`farm up` redeploys with `farm serve --detach` on the head, where Serve's proxy already holds
    the port: with RAY_ADDRESS set the local probe must not refuse (it checks the wrong machine)."""
    import socket

    from farm import cli
    from farm.cli import CliError

    def reached(*_args: object, **_kwargs: object):
        raise CliError("reached the config: the port probe let it through")

    monkeypatch.setattr(cli, "_load", reached)
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = str(held.getsockname()[1])
        local = _run("serve", "--host", "127.0.0.1", "--port", port, "--config", "rules.yaml")
        assert local.exit_code == 1 and f"cannot listen on 127.0.0.1:{port}: already in use" in local.output, local.output
        monkeypatch.setenv("RAY_ADDRESS", "ray://head.example:10001")
        remote = _run("serve", "--host", "127.0.0.1", "--port", port, "--config", "rules.yaml", "--detach")
        assert remote.exit_code == 1 and "reached the config" in remote.output, remote.output


def test_serve_keeps_the_not_applied_warning_on_an_existing_cluster():
    import logging

    from farm.cli import _quiet_ray

    record = logging.LogRecord("ray.serve", logging.WARNING, __file__, 1, "New http_options ... will not be applied", None, None)
    loggers = [logging.getLogger(n) for n in ("ray.serve", "ray.serve._private.api")]
    before = [list(lg.filters) for lg in loggers]
    try:
        _quiet_ray(on_cluster=True)
        assert all(lg.filter(record) for lg in loggers)  # true on a cluster: the running proxy kept its options
        _quiet_ray()
        assert not any(lg.filter(record) for lg in loggers)  # a local Ray this process started: they were applied
    finally:
        for lg, kept in zip(loggers, before, strict=True):
            lg.filters[:] = kept
