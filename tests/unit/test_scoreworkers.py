"""`farm score --workers N` pieces without processes: the quota split, group-whole shards, the
summary merge, and the batch gate sized from the quota (a fixed 4 sent a plentiful step in waves)."""

from __future__ import annotations

from collections import Counter

import pytest
from click.testing import CliRunner

from farm.config import parse_config
from farm.errors import ConfigError
from farm.scorefile import ScoreSummary, batches_in_flight
from farm.scoreworkers import merge_summaries, shard_rollouts, split_quota
from farm.wire import Rollout

RUBRIC = {"name": "rubric", "kind": "rubric", "model": "amazon.nova-micro-v1:0", "criteria": [{"name": "c", "description": "d"}]}


def _config(rpm: int | None, tpm: int, **bedrock: object):
    quota = {"tpm": tpm, **({"rpm": rpm} if rpm is not None else {})}
    return parse_config({"judges": [RUBRIC], "bedrock": {"quotas": {"amazon.nova-micro-v1:0": quota}, **bedrock}})


def test_the_quota_is_split_so_the_workers_together_stay_within_it():
    config = _config(2001, 40_000_001, max_concurrency=7)
    share = split_quota(config, 3)
    quota = share.quota_for("amazon.nova-micro-v1:0", "us-east-1")
    assert (quota.rpm, quota.tpm) == (667, 13_333_333) and 3 * quota.tpm <= 40_000_001
    assert share.bedrock.default_quota.tpm == config.bedrock.default_quota.tpm // 3
    assert share.bedrock.max_concurrency == 2
    assert split_quota(config, 1) is config
    with pytest.raises(ConfigError, match="too small to split over 3 workers"):
        split_quota(_config(2, 40_000), 3)


def test_shards_keep_groups_whole_and_even():
    rollouts = [Rollout(id=f"{g}-{k}", prompt="p", response="r", group=f"g{g}") for g in range(5) for k in range(4)]
    rollouts += [Rollout(id=f"solo-{k}", prompt="p", response="r") for k in range(3)]
    shards = shard_rollouts(rollouts, 3)
    assert sorted(r.id for s in shards for r in s) == sorted(r.id for r in rollouts)
    homes = {r.group: {k for k, s in enumerate(shards) for x in s if x.group == r.group} for r in rollouts if r.group}
    assert all(len(home) == 1 for home in homes.values())
    assert max(map(len, shards)) - min(map(len, shards)) <= 4
    assert len(shard_rollouts(rollouts[:4], 3)) == 1  # one group: one worker


def test_summaries_merge_counts_tokens_and_cost():
    a = ScoreSummary(rollouts=2, status=Counter(ok=2), judge_status={"j": Counter(ok=2)}, input_tokens=10, cost_usd=0.5)
    b = ScoreSummary(rollouts=1, status=Counter(partial=1), judge_status={"j": Counter(failed=1)}, input_tokens=5, cost_usd=0.25)
    merged = merge_summaries([a, b], "out.jsonl", [1.0, 0.0])
    assert merged.rollouts == 3 and merged.status == Counter(ok=2, partial=1) and merged.judge_status == {"j": Counter(ok=2, failed=1)}
    assert (merged.input_tokens, merged.cost_usd, merged.cost_per_rollout_usd, merged.reward_mean) == (15, 0.75, 0.25, 0.5)
    assert merge_summaries([a, ScoreSummary(rollouts=1)], "o", []).cost_usd is None  # a part without a price: no total


def test_summaries_merge_per_judge_usage_and_output_sizes():
    def sized(answers: int, p99: int, limit: int, retried: int) -> dict:
        return {
            "answers": answers,
            "p50": 40,
            "p99": p99,
            "max": p99,
            "max_tokens": limit,
            "ceiling": 512,
            "mode": "auto",
            "cut_off": 0,
            "retried_at_ceiling": retried,
            "calls_at_ceiling": 20,
            "mean_max_tokens_sent": float(limit),
        }

    a = ScoreSummary(
        rollouts=2, judge_usage={"r": {"input_tokens": 10, "cost_usd": 0.5}}, max_tokens={"r": {"rubric": sized(30, 50, 80, 1)}}
    )
    b = ScoreSummary(
        rollouts=2, judge_usage={"r": {"input_tokens": 5, "cost_usd": 0.25}}, max_tokens={"r": {"rubric": sized(10, 70, 110, 0)}}
    )
    merged = merge_summaries([a, b], "out.jsonl", [])
    assert merged.judge_usage == {"r": {"input_tokens": 15, "cost_usd": 0.75}}
    joined = merged.max_tokens["r"]["rubric"]
    assert (joined["answers"], joined["retried_at_ceiling"], joined["calls_at_ceiling"]) == (40, 1, 40)
    assert (joined["p99"], joined["max_tokens"], joined["mode"]) == (70, 110, "auto")  # covers every worker
    assert joined["mean_max_tokens_sent"] == round((30 * 80 + 10 * 110) / 40, 1)
    unpriced = merge_summaries([a, ScoreSummary(judge_usage={"r": {"input_tokens": 1, "cost_usd": None}})], "o", [])
    assert unpriced.judge_usage["r"] == {"input_tokens": 11, "cost_usd": None}


def test_batches_in_flight_follow_the_quota():
    assert batches_in_flight(_config(2000, 4_000_000)) == 4
    assert batches_in_flight(_config(20_000, 40_000_000)) == 11  # 20,000 rpm x 1 s x 2 headroom = 667 calls, 64 a batch


def test_workers_refuse_a_cluster_quota(monkeypatch: pytest.MonkeyPatch, tmp_path):
    import farm.cli as cli

    monkeypatch.setattr(cli, "_cluster_quotas", lambda config: object())
    (tmp_path / "in.jsonl").write_text('{"id": "a", "prompt": "2+2?", "response": "A: 4", "reference": "4"}\n')
    (tmp_path / "rules.yaml").write_text("judges:\n  - {name: answer, kind: final_answer}\n")
    result = CliRunner().invoke(
        cli.main,
        [
            "score",
            str(tmp_path / "in.jsonl"),
            "--out",
            str(tmp_path / "o.jsonl"),
            "--config",
            str(tmp_path / "rules.yaml"),
            "--workers",
            "2",
        ],
    )
    assert result.exit_code == 1 and "--workers splits this process's own quota" in result.output and "farm rescore" in result.output
    assert not (tmp_path / "o.jsonl").exists()
