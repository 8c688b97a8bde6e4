"""Prompt caching on the preference path, end to end over loopback HTTP: the shared question
(instructions, task, reference) ends in a cachePoint only when it reaches the minimum; the
emulator writes it once and reads it back for the group's other calls; the tokens and the
dollars reach the `farm score` file and summary and the offline (rescore) report."""

import asyncio
import json

import pytest

from farm.cost import PriceTable, Usage
from farm.emulator.server import _count_tokens
from farm.offline.report import summarise
from farm.offline.results import encode_part, read_columns
from farm.prompting import listwise_prompt
from farm.scorefile import score_file
from farm.wire import decode_results
from tests.conftest import PREFERENCE, make_config

pytestmark = pytest.mark.integration

MICRO = "amazon.nova-micro-v1:0"
LONG = "A worked solution, checked step by step against the units. " * 90  # ~1,350 tokens


def _rows() -> list[dict]:
    """Two groups whose shared question is long enough to cache (a long reference), one that is not."""
    rows = []
    for group, (question, reference) in enumerate([("What is 9*2?", LONG), ("What is 7*3?", LONG), ("What is 4*4?", "")]):
        answer = eval(question[8:-1])  # noqa: S307 - the literal products above
        for i, got in enumerate([answer, answer, answer + 2, answer + 5]):
            response = f"Working it out.{' ' * i}\n#### {got}"
            rows.append({"id": f"g{group}-{i}", "prompt": question, "response": response, "reference": f"{reference}\n#### {answer}"})
            rows[-1]["group"] = f"g{group}"
    return rows


def test_listwise_caches_the_shared_question_above_the_minimum_and_files_carry_it(aws_env, tmp_path):
    aws_env.update(cache_min_tokens=1)  # the emulator caches any prefix it is sent: a cachePoint sent too early would show
    rows = _rows()
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    runs = {}
    for cache in (True, False):
        aws_env.reset()
        config = make_config([{**PREFERENCE, "prompt_cache": cache}], batch_size=12, cache={"enabled": False})
        out = tmp_path / f"out-{cache}.jsonl"
        summary = asyncio.run(score_file(source, out, config, concurrency=1))
        runs[cache] = (summary, aws_env.stats()[MICRO], decode_results(b"[" + b",".join(out.read_bytes().splitlines()) + b"]"), config)

    summary, stats, results, config = runs[True]
    assert summary.status == {"ok": 12} and stats.admitted == 6  # two listwise orders per group
    # the long question is written once per group (the first order) and read by the second; the short one never cached
    prompt = listwise_prompt(
        criteria=config.judges[0].criteria, prompt="What is 9*2?", responses=[], reference=rows[0]["reference"], **_opts()
    )
    prefix_tokens = _count_tokens(prompt.system + prompt.prefix)
    assert prefix_tokens > 1_000
    assert stats.cache_write_tokens == stats.cache_read_tokens == pytest.approx(2 * prefix_tokens, abs=4)
    assert summary.cache_read_tokens == stats.cache_read_tokens and summary.cache_write_tokens == stats.cache_write_tokens
    short = [r.judges["preference"] for r in results if r.id.startswith("g2")]
    assert all(v.cache_read_tokens == v.cache_write_tokens == 0 and v.input_tokens > 0 for v in short)
    assert sum(r.judges["preference"].cache_read_tokens for r in results) == summary.cache_read_tokens  # the rows carry it
    # the same answers with and without caching; cheaper with it
    plain, plain_stats, plain_results, _ = runs[False]
    assert [r.reward for r in results] == [r.reward for r in plain_results]
    assert plain_stats.cache_read_tokens == plain_stats.cache_write_tokens == 0
    assert plain.input_tokens == summary.input_tokens + summary.cache_read_tokens + summary.cache_write_tokens
    assert summary.cost_usd is not None and plain.cost_usd is not None
    assert summary.cost_usd < plain.cost_usd == pytest.approx(summary.cost_without_prompt_cache_usd, rel=1e-3)
    usage = summary.judge_usage["preference"]
    assert usage["cache_read_tokens"] == summary.cache_read_tokens and usage["cost_usd"] < usage["cost_without_prompt_cache_usd"]
    # the offline (rescore) files and report carry the same tokens and price them
    for fmt in ("parquet", "jsonl"):
        part = encode_part(results, ["preference"], None, fmt)
        report = summarise(read_columns([part], ["preference"], fmt), config)
        judge = report["judges"]["preference"]
        assert (judge["cache_read_tokens"], judge["cache_write_tokens"]) == (summary.cache_read_tokens, summary.cache_write_tokens)
        assert report["cache_read_tokens"] == summary.cache_read_tokens
        expected = PriceTable().cost(
            MICRO, Usage(summary.input_tokens, summary.output_tokens, stats.cache_read_tokens, stats.cache_write_tokens)
        )
        assert expected is not None and report["total_cost_usd"] == pytest.approx(expected.usd, rel=1e-3)
        assert report["total_cost_usd"] < report["total_cost_without_prompt_cache_usd"]


def test_pairwise_calls_sent_together_write_the_question_once(aws_env):
    """Every pair of a group in both orders goes out at once: the first call writes the shared
    question, the others wait for it and read it (one write, five reads for three responses)."""
    from tests.integration.test_judges_emulator import PAIRWISE, score

    aws_env.update(latency_ms=50)
    rows = [r for r in _rows() if r["group"] == "g0"][:3]
    results, _ = score(make_config([PAIRWISE], cache={"enabled": False}), rows)
    assert all(r.status == "ok" for r in results)
    stats = aws_env.stats()[MICRO]
    assert stats.admitted == 6 and stats.cache_write_tokens > 1_000
    assert stats.cache_read_tokens == 5 * stats.cache_write_tokens
    assert sum(r.judges["preference"].cache_read_tokens for r in results) == pytest.approx(stats.cache_read_tokens, abs=3)


def _opts() -> dict:
    return {"max_chars": 24_000, "structured": True}


def test_a_failed_ranking_still_carries_the_cache_tokens_it_was_billed_for(aws_env):
    """A ranking that never parses is a failed verdict (never 0) that still counts the prompt
    cache tokens its attempts wrote and read, so the dollars of a bad run are not understated."""
    from tests.integration.test_judges_emulator import score

    aws_env.update(faults={"malformed": 1.0})
    rows = [r for r in _rows() if r["group"] == "g0"][:2]
    results, _ = score(make_config([PREFERENCE], cache={"enabled": False}), rows)
    verdicts = [r.judges["preference"] for r in results]
    assert all(v.status == "failed" and v.score is None for v in verdicts)
    stats = aws_env.stats()[MICRO]
    assert stats.cache_write_tokens > 1_000 and stats.cache_read_tokens > 0  # 2 orders x (1 + 1 parse retry) calls
    assert sum(v.cache_write_tokens for v in verdicts) == stats.cache_write_tokens
    assert sum(v.cache_read_tokens for v in verdicts) == stats.cache_read_tokens
