"""Canary bookkeeping: the draw rate, baselines, and when the drift alarm rises and clears."""

from __future__ import annotations

import pytest

from farm.analysis.canary import CANARY_KEY, CanaryMonitor
from farm.config import CanaryConfig
from farm.wire import FRESH, RewardResult, Rollout, Verdict


def _canaries(n: int = 5, expected: dict | None = None) -> list[Rollout]:
    meta = {"expected_scores": expected} if expected else {}
    return [Rollout(id=f"c{i}", prompt="p", response=f"r{i}", group="g", metadata=meta) for i in range(n)]


def _results(drawn: list[Rollout], score: float) -> list[RewardResult]:
    verdicts = {"judge": Verdict(score=score, status="ok"), "broken": Verdict(score=None, status="failed", error="x")}
    return [RewardResult(id=c.id, reward=score, status="ok", judges=verdicts) for c in drawn]


def test_draw_rate_is_exact_and_copies_are_fresh_ungrouped_and_traceable():
    monitor = CanaryMonitor(CanaryConfig(rate=0.1), _canaries())
    drawn = [c for _ in range(100) for c in monitor.draw(7)]
    assert len(drawn) == 70  # 700 live rollouts at 0.1
    assert len({c.id for c in drawn}) == 70
    assert {c.metadata[CANARY_KEY] for c in drawn} == {f"c{i}" for i in range(5)}
    assert all(c.group is None and c.metadata[FRESH] is True for c in drawn)


def test_alarm_rises_beyond_threshold_and_clears_under_half_of_it():
    config = CanaryConfig(rate=1.0, window=10, min_samples=5, threshold=0.2)
    monitor = CanaryMonitor(config, _canaries())
    drawn = monitor.draw(5)
    assert monitor.observe(drawn, _results(drawn, 0.5)) == []  # baselines pinned at first sight
    drawn = monitor.draw(5)
    assert monitor.observe(drawn, _results(drawn, 0.5)) == []
    drawn = monitor.draw(10)
    events = monitor.observe(drawn, _results(drawn, 0.9))  # window: ten deltas of +0.4
    assert [(e.judge, e.alarm) for e in events] == [("judge", True)] and events[0].drift == pytest.approx(0.4)
    assert monitor.alarms() == ["judge"] and "broken" not in monitor.status()["judges"]
    drawn = monitor.draw(7)
    assert monitor.observe(drawn, _results(drawn, 0.5)) == []  # drift 0.12: above half the threshold, still in alarm
    drawn = monitor.draw(3)
    events = monitor.observe(drawn, _results(drawn, 0.5))
    assert [(e.judge, e.alarm) for e in events] == [("judge", False)] and monitor.alarms() == []


def test_expected_scores_from_the_canary_file_are_the_baseline():
    monitor = CanaryMonitor(CanaryConfig(rate=1.0, min_samples=3, threshold=0.1), _canaries(3, expected={"judge": 0.2}))
    drawn = monitor.draw(3)
    events = monitor.observe(drawn, _results(drawn, 0.6))  # already drifted when the replica started
    assert [(e.judge, e.alarm) for e in events] == [("judge", True)]
    assert monitor.drift("judge") == (pytest.approx(0.4), 3)
