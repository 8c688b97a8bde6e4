"""`max_tokens: auto`: the config that names its key when wrong, and the sizer's arithmetic."""

from __future__ import annotations

import asyncio
import time

import pytest

from farm.config import MaxTokensAuto, parse_config
from farm.errors import ConfigError
from farm.maxtokens import OutputSizer, quantile

RUBRIC = {"name": "r", "kind": "rubric", "model": "amazon.nova-lite-v1:0", "criteria": [{"name": "c", "description": "d"}]}
PREFERENCE = {"name": "p", "kind": "preference", "model": "amazon.nova-micro-v1:0"}


def judge(**fields):
    return parse_config({"judges": [{**RUBRIC, **fields}]}).judges[0]


def test_auto_is_the_default_with_the_former_limits_as_ceilings():
    config = parse_config({"judges": [RUBRIC, PREFERENCE]})
    rubric, preference = config.judges
    assert rubric.max_tokens == preference.max_tokens == "auto"
    assert (rubric.max_tokens_ceiling, preference.max_tokens_ceiling) == (512, 384)
    assert judge(max_tokens=200).max_tokens_ceiling == 200
    assert judge(max_tokens_auto={"ceiling": 1000}).max_tokens_ceiling == 1000


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"max_tokens": "big"}, r"judges\[0\]\.max_tokens: .*must be `auto` or a whole number from 16 to 10000, got 'big'"),
        ({"max_tokens": 8}, r"judges\[0\]\.max_tokens: .*got 8"),
        ({"max_tokens": True}, r"judges\[0\]\.max_tokens: .*got True"),
        ({"max_tokens_auto": {"quantile": 0.2}}, r"judges\[0\]\.max_tokens_auto\.quantile"),
        ({"max_tokens_auto": {"margin": 0.5}}, r"judges\[0\]\.max_tokens_auto\.margin"),
        ({"max_tokens_auto": {"warmup": 5}}, r"unknown key `warmup` in judges\[0\]\.max_tokens_auto \(did you mean `warmup_calls`\?\)"),
        ({"max_tokens_auto": {"floor": 600}}, r"judges\[0\]: .*max_tokens_auto\.floor \(600\) is above the ceiling \(512\)"),
    ],
)
def test_bad_settings_name_the_key(fields, message):
    with pytest.raises(ConfigError, match=message):
        judge(**fields)


def auto(**overrides) -> MaxTokensAuto:
    return MaxTokensAuto(**{"warmup_calls": 3, "quantile": 0.99, "margin": 1.5, "floor": 32, **overrides})


def test_the_ceiling_until_the_warm_up_then_a_quantile_times_the_margin():
    sizer = OutputSizer(512, auto())
    for tokens in (40, 60):
        assert sizer.max_tokens("rubric") == 512
        sizer.observe("rubric", tokens, sent=512, cut_off=False)
    assert sizer.max_tokens("rubric") == 512  # two answers: still warming up
    sizer.observe("rubric", 50, sent=512, cut_off=False)
    assert sizer.max_tokens("rubric") == 90  # 60 x 1.5
    assert sizer.max_tokens("pairwise") == 512  # each kind of call warms up on its own


def test_floor_and_ceiling_bound_the_size():
    tiny = OutputSizer(512, auto(floor=64))
    for _ in range(3):
        tiny.observe("k", 5, sent=512, cut_off=False)
    assert tiny.max_tokens("k") == 64
    wordy = OutputSizer(100, auto())
    for _ in range(3):
        wordy.observe("k", 90, sent=100, cut_off=False)
    assert wordy.max_tokens("k") == 100


def test_a_longer_answer_raises_the_size_at_once_and_cut_offs_are_counted():
    sizer = OutputSizer(512, auto(quantile=1.0))
    for _ in range(3):
        sizer.observe("k", 40, sent=512, cut_off=False)
    assert sizer.max_tokens("k") == 60
    sizer.observe("k", 60, sent=60, cut_off=True)  # cut off: asked again at the ceiling by `ask`
    sizer.retried("k")
    assert sizer.max_tokens("k") == 60  # a cut-off answer's length is unknown: not kept
    sizer.observe("k", 200, sent=512, cut_off=False)  # the retry's full answer
    assert sizer.max_tokens("k") == 300
    report = sizer.report()["k"]
    assert report["cut_off"] == 1 and report["retried_at_ceiling"] == 1 and report["answers"] == 4
    assert (report["p50"], report["max"], report["calls_at_ceiling"]) == (40, 200, 4)


def test_a_pinned_limit_is_measured_but_never_changed():
    sizer = OutputSizer(256, None)
    for tokens in range(1, 50):
        sizer.observe("k", tokens, sent=256, cut_off=False)
    assert sizer.max_tokens("k") == 256
    assert sizer.report()["k"]["mode"] == "pinned" and sizer.report()["k"]["p99"] == 49


def test_quantile_is_nearest_rank():
    assert quantile([], 0.5) == 0
    assert quantile(range(1, 101), 0.99) == 99
    assert quantile(range(1, 101), 1.0) == 100
    assert quantile([7], 0.5) == 7


def test_a_burst_beyond_the_warm_up_waits_for_its_answers_then_goes_sized():
    sizer = OutputSizer(512, auto(warmup_calls=2, warmup_wait_s=5.0))

    async def burst() -> list[int]:
        deadline = time.monotonic() + 30
        calls = [asyncio.create_task(sizer.limit("k", deadline)) for _ in range(5)]
        await asyncio.sleep(0.01)
        assert sum(c.done() for c in calls) == 2  # the warm-up calls went at once; the others wait
        for _ in range(2):
            sizer.observe("k", 40, sent=512, cut_off=False)
        return list(await asyncio.gather(*calls))

    assert sorted(asyncio.run(burst())) == [60, 60, 60, 512, 512]


def test_a_warm_up_that_does_not_answer_stops_holding_calls_back():
    sizer = OutputSizer(512, auto(warmup_calls=1, warmup_wait_s=0.05))

    async def stalled() -> list[int]:
        deadline = time.monotonic() + 30
        first = await sizer.limit("k", deadline)  # its answer never comes
        held = await sizer.limit("k", deadline)  # waits 0.05 s, then goes at the ceiling
        started = time.monotonic()
        later = await sizer.limit("k", deadline)
        assert time.monotonic() - started < 0.04  # no more waiting
        return [first, held, later]

    assert asyncio.run(stalled()) == [512, 512, 512]
