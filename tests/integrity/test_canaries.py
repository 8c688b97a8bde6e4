"""Pinned canaries: baselines written by `farm pin-canaries` catch a judge that had already drifted
before the monitor started (a replica restarted mid-drift), where first-sight baselines cannot."""

from __future__ import annotations

import asyncio
import json

import pytest
import yaml
from click.testing import CliRunner

from farm.analysis.canary import CanaryMonitor, load_canaries
from farm.cli import main
from farm.config import CanaryConfig
from farm.ensemble import Ensemble
from tests.conftest import gsm8k_rollouts, make_config

pytestmark = pytest.mark.integration

PRO = "amazon.nova-pro-v1:0"
JUDGES = [
    {"name": "answer", "kind": "final_answer"},
    {"name": "rubric", "kind": "rubric", "model": PRO, "criteria": [{"name": "correctness", "description": "The answer is correct."}]},
]


def _drift_after_restart(config, canaries: CanaryConfig) -> CanaryMonitor:
    """A fresh monitor (as on a new replica) fed 24 canaries by the in-process ensemble."""
    monitor = CanaryMonitor(canaries, load_canaries(canaries))

    async def feed():
        ensemble = Ensemble.from_config(config)
        try:
            drawn = monitor.draw(24)
            monitor.observe(drawn, await ensemble.score(drawn))
        finally:
            await ensemble.aclose()

    asyncio.run(feed())
    return monitor


def test_pinned_canaries_alarm_on_a_judge_that_drifted_before_the_monitor_started(aws_env, tmp_path, report):
    source = tmp_path / "farm.yaml"
    source.write_text(yaml.safe_dump({"judges": JUDGES, "bedrock": {"default_quota": {"rpm": 60000, "tpm": 100000000}}}))
    data = tmp_path / "canaries.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in gsm8k_rollouts(limit=5)))
    pinned = tmp_path / "pinned.jsonl"
    result = CliRunner().invoke(
        main, ["pin-canaries", "--config", str(source), "--data", str(data), "--count", "12", "--out", str(pinned)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in pinned.read_text().splitlines()]
    assert len(rows) == 12 and all(set(r["metadata"]["expected_scores"]) == {"answer", "rubric"} for r in rows)

    config = make_config(JUDGES)
    settings = {"rate": 1.0, "count": 12, "window": 24, "min_samples": 12, "threshold": 0.15}
    steady = _drift_after_restart(config, CanaryConfig(data=str(pinned), **settings))
    assert steady.alarms() == [] and steady.drift("rubric")[0] == pytest.approx(0.0, abs=0.02)

    aws_env.update(models={PRO: {"judge": {"leniency": 0.5}}})  # drifted, then the replica restarts
    pinned_monitor = _drift_after_restart(config, CanaryConfig(data=str(pinned), **settings))
    first_sight = _drift_after_restart(config, CanaryConfig(data=str(data), **settings))
    report(
        f"canaries after a restart mid-drift: pinned baselines see rubric drift {pinned_monitor.drift('rubric')[0]:+.3f} (alarm), "
        f"first-sight baselines {first_sight.drift('rubric')[0]:+.3f} (blind)"
    )
    assert pinned_monitor.alarms() == ["rubric"]
    assert first_sight.alarms() == []
