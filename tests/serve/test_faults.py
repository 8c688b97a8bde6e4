"""Every fault the emulator knows, at 20% of all calls, through the HTTP route of a Serve app:
nothing lost, nothing answered twice, and no `ok` that hides a failed judge or comparison."""

from __future__ import annotations

import concurrent.futures
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from farm.emulator.settings import FAULT_KINDS
from tests.conftest import gsm8k_rollouts
from tests.serve.conftest import delete_apps, deploy_together, http

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.integration]

LITE = "amazon.nova-lite-v1:0"
MICRO = "amazon.nova-micro-v1:0"
PER_KIND = 0.022
"""Ten independent draws at 2.2% each: 1 - 0.978**10 = 20% of calls meet some fault."""


def _config(name: str, attempts: int) -> dict[str, Any]:
    return {
        "judges": [
            {"name": "answer", "kind": "final_answer"},
            {
                "name": "rubric",
                "kind": "rubric",
                "model": LITE,
                "deadline_s": 20,
                "criteria": [{"name": "correctness", "description": "The final answer is correct."}],
            },
            # pairwise (the default before listwise): 6 comparisons per group, so incomplete verdicts are common
            {
                "name": "preference",
                "kind": "preference",
                "model": MICRO,
                "mode": "group",
                "comparison": "pairwise",
                "anchor": "none",
                "deadline_s": 20,
            },
        ],
        "bedrock": {"default_quota": {"rpm": 60000, "tpm": 100000000}, "read_timeout_s": 1.5, "retry": {"max_attempts": attempts}},
        "cache": {"enabled": False},
        "serve": {"app_name": name},
    }


ATTEMPTS = {"retries": 6, "no-retries": 1}


@pytest.fixture(scope="module")
def fault_apps(ray_serve: dict[str, Any]) -> Iterator[dict[str, str]]:
    """One app per retry setting, deployed together (one Serve config, built side by side). Their URLs."""

    apps = [
        (f"fault-{key}", {"config": _config(f"fault-{key}", attempts), "env": ray_serve["env"]}, f"/faults-{key}")
        for key, attempts in ATTEMPTS.items()
    ]
    deploy_together(ray_serve, apps)
    yield {key: ray_serve["url"] + f"/faults-{key}" for key in ATTEMPTS}
    delete_apps(*(name for name, _, _ in apps))


@pytest.mark.parametrize("key", list(ATTEMPTS))
def test_faults_of_every_kind_at_20_percent_lose_nothing_and_hide_no_partial(fault_apps, reset_emulator, report, key):
    """With retries (the default) most faults are absorbed; with one attempt each fault reaches a
    verdict or a comparison, so the failure paths are exercised, not just the happy ones."""
    attempts = ATTEMPTS[key]
    faults: dict[str, float] = {kind: PER_KIND for kind in FAULT_KINDS}
    reset_emulator.update(latency_ms=20, faults={**faults, "hang_s": 3.0})
    base = fault_apps[key]
    rows = gsm8k_rollouts(limit=40)  # 160 rollouts in 40 groups of 4, sent as 8 requests of 20 (~800 model calls)
    batches = [rows[i : i + 20] for i in range(0, len(rows), 20)]
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda batch: http(base, "/score", {"rollouts": batch}), batches))
    elapsed = time.monotonic() - started
    stats = reset_emulator.stats()
    injected = Counter[str]()
    for model_stats in stats.values():
        injected.update(model_stats.faults)
    calls = sum(s.received for s in stats.values())

    assert [status for status, _, _ in answers] == [200] * len(batches), [body for status, _, body in answers if status != 200][:2]
    results = [r for _, _, body in answers for r in body["results"]]
    ids = Counter(r["id"] for r in results)
    assert sorted(ids) == sorted(row["id"] for row in rows) and set(ids.values()) == {1}  # 0 lost, 0 duplicated
    for batch, (_, _, body) in zip(batches, answers, strict=True):
        assert [r["id"] for r in body["results"]] == [row["id"] for row in batch]  # each answer is its own request's

    by_status: Counter[str] = Counter()
    bad_verdicts = incomplete = 0
    for result in results:
        verdicts = result["judges"]
        assert set(verdicts) == {"answer", "rubric", "preference"}
        failed = [name for name, v in verdicts.items() if v["status"] != "ok"]
        partial = [name for name, v in verdicts.items() if "judge_incomplete" in v.get("flags", ())]
        for name in failed:  # a failed judge is a state with a reason, never a silent score
            assert verdicts[name]["score"] is None and verdicts[name]["error"], (result["id"], name, verdicts[name])
        for name in partial:  # an incomplete verdict says how many of its sub-calls failed
            assert verdicts[name]["status"] == "ok" and "comparisons failed" in verdicts[name]["error"], verdicts[name]
            assert verdicts[name]["criteria"]["comparisons"] < 3
        pref = verdicts["preference"]
        if pref["status"] == "ok" and not partial:  # a clean preference verdict rests on all 3 opponents
            assert pref["criteria"]["comparisons"] == 3 and not pref["error"], pref
        if failed or partial:  # 0 hidden partials: never `ok` while any verdict failed or is incomplete
            assert result["status"] in ("partial", "failed"), result
            assert ("judge_failed" in result.get("flags", ())) == bool(failed), result
            assert ("judge_incomplete" in result.get("flags", ())) == bool(partial), result
        else:
            assert result["status"] == "ok" and result["reward"] is not None, result
        assert (result["status"] == "failed") == (result["reward"] is None), result
        by_status[result["status"]] += 1
        bad_verdicts += len(failed)
        incomplete += len(partial)

    report(
        f"faults at 20% of calls ({attempts} attempts per call), all {len(FAULT_KINDS)} kinds, through the HTTP route: "
        f"{len(results)}/{len(rows)} answered once, "
        f"by status {dict(by_status)}, {bad_verdicts} failed verdicts and {incomplete} incomplete ones all visible; "
        f"{calls} model calls, {sum(injected.values())} faults injected {dict(injected)}; {elapsed:.1f}s"
    )
    assert set(injected) == set(FAULT_KINDS), injected  # every kind was met
    assert sum(injected.values()) >= 0.12 * calls  # the rate was real (20% expected)
    assert by_status["ok"] >= 1
    if attempts == 1:  # faults reach the results, and both failure paths are taken: failed verdicts and incomplete comparisons
        assert bad_verdicts >= 10 and incomplete >= 10, (bad_verdicts, incomplete)
