"""Offline scoring never fails on quota alone: a call waiting for quota waits, and the deadline
bounds the call itself from the moment the quota admits it."""

from __future__ import annotations

import asyncio
import json

import pytest

from farm.config import QuotaConfig
from farm.scorefile import score_file
from tests.conftest import RUBRIC, fast_bedrock, make_config

pytestmark = pytest.mark.integration

LITE = "amazon.nova-lite-v1:0"


def test_farm_score_waits_for_quota_instead_of_failing(aws_env, tmp_path):
    """16 rubric calls at 120 rpm take about 8 s; each judge has a 2 s deadline. Online, most
    would time out in the quota queue; offline every row is scored."""
    rows = [{"id": f"r{i}", "prompt": "What is 9*2?", "response": f"9*2 = 18\nA: 18 ({i})", "reference": "A: 18"} for i in range(16)]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = make_config(
        [{**RUBRIC, "deadline_s": 2}],
        bedrock=fast_bedrock(quotas={LITE: QuotaConfig(rpm=120, tpm=10_000_000, burst_s=1)}).model_dump(),
        cache={"enabled": False},
        batch_size=16,
    )
    summary = asyncio.run(score_file(source, tmp_path / "out.jsonl", config))
    assert summary.status == {"ok": 16}, summary.as_dict()
    assert summary.elapsed_s > 4  # the quota, not the deadline, set the pace
    assert aws_env.stats()[LITE].throttled == 0
