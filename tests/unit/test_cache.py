import asyncio

from farm.cache import VerdictCache, content_key
from farm.wire import Verdict


def test_single_flight_hits_and_failures_not_cached():
    cache = VerdictCache(max_entries=10)
    calls = []

    async def compute_ok():
        calls.append("ok")
        await asyncio.sleep(0.01)
        return Verdict(score=1.0, status="ok")

    async def compute_fail():
        calls.append("fail")
        return Verdict(score=None, status="failed", error="x")

    async def main():
        first = await asyncio.gather(*(cache.get_or_compute("k", compute_ok) for _ in range(5)))
        again = await cache.get_or_compute("k", compute_ok)
        f1 = await cache.get_or_compute("f", compute_fail)
        f2 = await cache.get_or_compute("f", compute_fail)
        return first, again, f1, f2

    first, again, f1, f2 = asyncio.run(main())
    assert calls == ["ok", "fail", "fail"]
    assert [v.cached for v in first] == [False, True, True, True, True]
    assert again.cached
    assert f1.status == f2.status == "failed"
    assert (cache.stats.hits, cache.stats.joined, cache.stats.misses) == (1, 4, 3)


def test_lru_eviction_and_key_stability():
    cache = VerdictCache(max_entries=2)

    async def fill():
        for key in "abc":
            await cache.get_or_compute(key, lambda: asyncio.sleep(0, Verdict(score=0.0, status="ok")))

    asyncio.run(fill())
    assert len(cache) == 2
    assert content_key("x", {"a": 1}) == content_key("x", {"a": 1}) != content_key("x", {"a": 2})


def test_fresh_skips_the_lookup_but_refreshes_the_entry():
    cache = VerdictCache(max_entries=10)
    scores = iter([0.2, 0.9, 0.5])

    async def compute():
        return Verdict(score=next(scores), status="ok")

    async def main():
        first = await cache.get_or_compute("k", compute)
        fresh = await cache.get_or_compute("k", compute, fresh=True)
        cached = await cache.get_or_compute("k", compute)
        return first, fresh, cached

    first, fresh, cached = asyncio.run(main())
    assert (first.score, fresh.score, cached.score) == (0.2, 0.9, 0.9)
    assert not fresh.cached and cached.cached


def test_cancelling_the_first_caller_leaves_the_computation_to_the_others():
    """The caller that started a computation is cancelled (its client left); the one that
    joined still gets the verdict, and the model is asked once."""
    cache = VerdictCache(max_entries=10)
    calls = []

    async def compute():
        calls.append(1)
        await asyncio.sleep(0.05)
        return Verdict(score=0.7, status="ok")

    async def main():
        first = asyncio.ensure_future(cache.get_or_compute("k", compute))
        await asyncio.sleep(0)
        second = asyncio.ensure_future(cache.get_or_compute("k", compute))
        await asyncio.sleep(0.01)
        first.cancel()
        verdict = await second
        return first, verdict

    first, verdict = asyncio.run(main())
    assert first.cancelled()
    assert verdict.status == "ok" and verdict.score == 0.7
    assert calls == [1] and len(cache) == 1 and cache.inflight == 0


def test_the_computation_is_cancelled_when_its_last_waiter_leaves():
    cache = VerdictCache(max_entries=10)
    events = []

    async def slow():
        events.append("started")
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            events.append("cancelled")
            raise
        return Verdict(score=1.0, status="ok")

    async def quick():
        return Verdict(score=0.1, status="ok")

    async def main():
        waiters = [asyncio.ensure_future(cache.get_or_compute("k", slow)) for _ in range(2)]
        await asyncio.sleep(0.01)
        waiters[0].cancel()
        await asyncio.sleep(0.01)
        assert events == ["started"]  # one waiter is still there
        waiters[1].cancel()
        await asyncio.sleep(0.01)
        after = await cache.get_or_compute("k", quick)  # starts afresh, never joins the dying task
        return after

    after = asyncio.run(main())
    assert events == ["started", "cancelled"]
    assert after.score == 0.1 and not after.cached and cache.inflight == 0


def test_a_failed_computation_reaches_every_waiter_and_is_not_stored():
    cache = VerdictCache(max_entries=10)

    async def boom():
        await asyncio.sleep(0.01)
        raise RuntimeError("model exploded")

    async def main():
        return await asyncio.gather(*(cache.get_or_compute("k", boom) for _ in range(3)), return_exceptions=True)

    answers = asyncio.run(main())
    assert [str(a) for a in answers] == ["model exploded"] * 3
    assert len(cache) == 0 and cache.inflight == 0
