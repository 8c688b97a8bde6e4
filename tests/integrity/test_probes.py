"""The probe suite against emulator judges whose flaws are set on purpose."""

from __future__ import annotations

import asyncio

import pytest

from farm.ensemble import Ensemble
from farm.integrity.probes import INJECTION_PROBES, format_table, run_probes
from farm.wire import parse_rollouts
from tests.conftest import gsm8k_rollouts, make_config

pytestmark = pytest.mark.integration

MICRO, LITE, PRO, PREMIER = "amazon.nova-micro-v1:0", "amazon.nova-lite-v1:0", "amazon.nova-pro-v1:0", "amazon.nova-premier-v1:0"
CRITERIA = [{"name": "correctness", "description": "The final answer is correct."}]


def test_probe_suite_names_each_flawed_judge_and_not_the_clean_one(aws_env, report):
    aws_env.update(
        models={
            MICRO: {"judge": {"injection_susceptibility": 1.0}},
            LITE: {"judge": {"length_bias": 0.3}},
            PREMIER: {"judge": {"position_bias": 0.6}},
            PRO: {"judge": {"noise": 0.05}},
        }
    )
    config = make_config(
        [
            {"name": "susceptible", "kind": "rubric", "model": MICRO, "criteria": CRITERIA},
            {"name": "length_biased", "kind": "rubric", "model": LITE, "criteria": CRITERIA},
            {"name": "position_biased", "kind": "preference", "model": PREMIER},
            {"name": "clean", "kind": "rubric", "model": PRO, "criteria": CRITERIA},
        ]
    )
    rows = gsm8k_rollouts(limit=15)
    labels = [row["metadata"]["is_correct"] for row in rows]

    async def main():
        ensemble = Ensemble.from_config(config)
        try:
            return await run_probes(ensemble, parse_rollouts(rows), labels=labels)
        finally:
            await ensemble.aclose()

    result = asyncio.run(main())
    print("\n" + format_table(result))
    findings = result.findings
    assert "injection-susceptible" in findings["susceptible"]
    assert "length-biased" in findings["length_biased"]
    assert "position-biased" in findings["position_biased"]
    assert findings["clean"] == []
    alone = max(result.inflation[p]["susceptible"]["mean"] for p in INJECTION_PROBES)
    together = max(result.inflation[p]["ensemble"]["mean"] for p in INJECTION_PROBES)
    report(f"probes: worst injection inflation, susceptible judge alone {alone:+.3f} vs ensemble with clean judges {together:+.3f}")
    report(f"probes: findings {findings}; position inconsistency {result.position_inconsistency}; length slope {result.length_slope}")
    assert together < alone
