"""`max_tokens: auto` against the emulator over HTTP: the limit sent (and reserved) shrinks to what
the judge writes after a warm-up, and an answer cut off by a sized limit is asked again at the
ceiling, never scored as it stands."""

from __future__ import annotations

import asyncio
import json

import pytest

from farm.config import FarmConfig
from farm.ensemble import Ensemble
from farm.flags import Flag
from farm.ratelimit import QuotaRegistry, Reservation
from farm.scorefile import score_file
from farm.wire import parse_rollouts
from tests.conftest import PREFERENCE, RUBRIC, make_config

pytestmark = pytest.mark.integration

LITE = "amazon.nova-lite-v1:0"
AUTO = {"warmup_calls": 4, "quantile": 1.0, "margin": 1.5, "floor": 32}


class RecordingQuotas(QuotaRegistry):
    """The process's real quota, remembering the tokens each call reserved."""

    def __init__(self, config: FarmConfig):
        super().__init__(config.quota_for)
        self.reserved: list[int] = []

    async def acquire(self, model: str, region: str, tokens: int, deadline: float) -> Reservation:
        self.reserved.append(tokens)
        return await super().acquire(model, region, tokens, deadline)


def rows(count: int, start: int = 0) -> list[dict]:
    return [
        {"id": f"r{i}", "prompt": "What is 9*2?", "response": f"9*2 = 18 (case {i})\nA: 18", "reference": "A: 18"}
        for i in range(start, start + count)
    ]


def run_batches(config: FarmConfig, batches: list[list[dict]], between=None):
    """Score `batches` one after another with one ensemble; `between(i)` runs before batch i."""

    async def main():
        quotas = RecordingQuotas(config)
        ensemble = Ensemble.from_config(config, quotas=quotas)
        out = []
        try:
            for i, batch in enumerate(batches):
                if between is not None:
                    between(i)
                out.append(await ensemble.score(parse_rollouts(batch)))
            return out, ensemble.members[0].judge.output_sizer, quotas.reserved
        finally:
            await ensemble.aclose()

    return asyncio.run(main())


def test_max_tokens_shrink_after_warm_up_and_the_reservation_follows(aws_env):
    config = make_config([{**RUBRIC, "max_tokens_auto": AUTO}])
    (first, second), sizer, reserved = run_batches(config, [rows(4), rows(6, start=4)])
    assert all(r.judges["rubric"].status == "ok" and r.judges["rubric"].score > 0.8 for r in first + second)
    seen = sizer.report()["rubric"]
    assert seen["answers"] == 10 and seen["calls_at_ceiling"] == 4  # the warm-up, then sized
    assert seen["max_tokens"] == max(32, -(-seen["max"] * 3 // 2)) < 512
    # every call reserves input + the maxTokens it is sent: the sized calls hold (512 - limit) fewer tokens
    assert len(reserved) == 10
    assert min(reserved[:4]) - max(reserved[4:]) >= 512 - seen["max_tokens"] - 8  # the input estimates differ by a few tokens


def test_an_answer_cut_off_by_a_sized_limit_is_asked_again_at_the_ceiling(aws_env):
    config = make_config([{**RUBRIC, "max_tokens_auto": AUTO}])

    def verbose_from_batch_one(i: int) -> None:
        if i == 1:  # the judge starts writing long rationales: far past the limit sized on short ones
            aws_env.update(judge={"verbosity": 300})

    (warm, long), sizer, reserved = run_batches(config, [rows(4), rows(3, start=4)], verbose_from_batch_one)
    for result in long:
        verdict = result.judges["rubric"]
        assert verdict.status == "ok" and verdict.score > 0.8, verdict  # scored from the full answer, not cut or failed
        assert Flag.TRUNCATED not in verdict.flags
    seen = sizer.report()["rubric"]
    assert seen["retried_at_ceiling"] == 3 and seen["cut_off"] == 3
    assert aws_env.stats()[LITE].received == 4 + 3 * 2  # each long answer: one cut-off call, one at the ceiling
    assert min(reserved[7:]) > max(reserved[4:7]) + 300  # sized calls first, then the retries, reserving the ceiling
    assert seen["max_tokens"] > 300  # sized again from the long answers


def test_a_pinned_max_tokens_is_never_raised(aws_env):
    aws_env.update(judge={"verbosity": 300})
    config = make_config([{**RUBRIC, "max_tokens": 64}])
    ((result,),), sizer, reserved = run_batches(config, [rows(1)])
    verdict = result.judges["rubric"]
    assert verdict.status == "failed" and verdict.score is None and verdict.reason == "parse"  # never a 0
    assert "maxTokens" in verdict.error
    assert sizer.report()["rubric"]["retried_at_ceiling"] == 0
    assert aws_env.stats()[LITE].received == 2  # the parse retry only, at the pinned limit


def test_farm_score_summary_reports_output_tokens_per_judge_and_kind(aws_env, tmp_path):
    source = tmp_path / "in.jsonl"
    data = [{**row, "group": "g", "id": f"g{i}"} for i, row in enumerate(rows(4))]
    source.write_text("".join(json.dumps(r) + "\n" for r in data))
    config = make_config([{**RUBRIC, "max_tokens": 256}, PREFERENCE, {**PREFERENCE, "name": "pairs", "comparison": "pairwise"}])
    summary = asyncio.run(score_file(source, tmp_path / "out.jsonl", config)).as_dict()
    report = summary["max_tokens"]
    assert set(report) == {"rubric", "preference", "pairs"}
    assert report["rubric"]["rubric"]["mode"] == "pinned" and report["rubric"]["rubric"]["max_tokens"] == 256
    assert report["rubric"]["rubric"]["answers"] == 4 and 0 < report["rubric"]["rubric"]["p50"] <= report["rubric"]["rubric"]["max"]
    assert set(report["preference"]) == {"listwise/5"}  # 4 responses and the reference, ranked
    assert report["preference"]["listwise/5"]["answers"] == 2 and report["preference"]["listwise/5"]["ceiling"] == 384
    assert set(report["pairs"]) == {"pairwise"} and report["pairs"]["pairwise"]["answers"] == 20  # 6 pairs + 4 with the reference, x2


def test_admission_counts_the_calls_a_real_scoring_run_sends(aws_env):
    """`deploy.admission.calls_needed` against the emulator's count of what the judges sent: listwise
    (chunks over 10 items, unanchored groups), pairwise with the reference anchor, lone rollouts."""
    from deploy.admission import calls_needed

    pro = "amazon.nova-pro-v1:0"
    config = make_config(
        [
            RUBRIC,
            {**PREFERENCE, "name": "listwise"},
            {**PREFERENCE, "name": "pairwise", "model": pro, "comparison": "pairwise", "max_comparisons": 2},
        ],
        cache={"enabled": False},
    )

    def group(name: str, size: int, reference: str | None) -> list[dict]:
        return [
            {
                "id": f"{name}{i}",
                "prompt": f"{name}: 9*2?",
                "response": f"9*2 = 18 ({name} {i})\nA: 18",
                "group": name,
                "reference": reference,
            }
            for i in range(size)
        ]

    data = group("a", 8, "A: 18") + group("b", 12, "A: 18") + group("c", 3, None)
    data += [
        {"id": "alone", "prompt": "9*2?", "response": "A: 18", "reference": "A: 18"},
        {"id": "bare", "prompt": "9*2?", "response": "A: 18"},
    ]
    rollouts = parse_rollouts(data)
    planned = {model: calls for (model, _region), calls in calls_needed(config, rollouts).items()}

    async def main():
        ensemble = Ensemble.from_config(config)
        try:
            return await ensemble.score(rollouts)
        finally:
            await ensemble.aclose()

    results = asyncio.run(main())
    assert all(r.judges["listwise"].status in ("ok", "skipped") for r in results)
    sent = {model: seen.received for model, seen in aws_env.stats().items() if hasattr(seen, "received")}
    assert planned == sent
    assert planned["amazon.nova-micro-v1:0"] == 2 * (1 + 2 + 1) + 2  # per order: a, b in 2 chunks, c; and `alone` both orders
