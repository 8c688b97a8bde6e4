"""Prometheus metrics through `ray.util.metrics`, exported by Ray's metrics endpoint."""

from __future__ import annotations

from collections.abc import Sequence

from ray.util.metrics import Counter, Gauge, Histogram

from farm.analysis.probes import FLAWS
from farm.judges.base import failure_reason
from farm.wire import RewardResult

__all__ = ["FarmMetrics", "IntegrityMetrics"]

_LATENCY_MS: list[float] = [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000]


class FarmMetrics:
    """Per judge and for the ensemble: counts, failures by reason, latency, tokens, cache, flags."""

    def __init__(self, app: str):
        tags = ("app", "judge")
        self._app = app
        self.verdicts = Counter("farm_judge_verdicts_total", "Verdicts by judge and status.", tag_keys=(*tags, "status"))
        self.failures = Counter("farm_judge_failures_total", "Failed or timed-out verdicts by reason.", tag_keys=(*tags, "reason"))
        self.latency = Histogram("farm_judge_latency_ms", "Judge latency per rollout.", boundaries=_LATENCY_MS, tag_keys=tags)
        self.tokens = Counter("farm_judge_tokens_total", "Bedrock tokens by direction.", tag_keys=(*tags, "direction"))
        self.cache_hits = Counter("farm_judge_cache_hits_total", "Verdicts served from the cache.", tag_keys=tags)
        self.throttles = Counter("farm_bedrock_throttles_total", "429s received from Bedrock.", tag_keys=tags)
        self.results = Counter("farm_results_total", "Results by status.", tag_keys=("app", "status"))
        self.flags = Counter("farm_result_flags_total", "Result flags.", tag_keys=("app", "flag"))
        self.escalations = Counter(
            "farm_cascade_total", "The cost cascade's record per judge: ran, not_needed, or why it was called.", tag_keys=(*tags, "reason")
        )
        self.request_latency = Histogram(
            "farm_request_latency_ms", "Ensemble latency per request.", boundaries=_LATENCY_MS, tag_keys=("app",)
        )

    def record(self, results: Sequence[RewardResult], elapsed_ms: float) -> None:
        app = {"app": self._app}
        self.request_latency.observe(elapsed_ms, tags=app)
        for result in results:
            self.results.inc(1, tags={**app, "status": result.status})
            for flag in result.flags:
                self.flags.inc(1, tags={**app, "flag": flag})
            for name, why in (result.escalation or {}).items():  # the cost cascade (farm/cascade.py)
                self.escalations.inc(1, tags={**app, "judge": name, "reason": why})
            for name, verdict in result.judges.items():
                tags = {**app, "judge": name}
                self.verdicts.inc(1, tags={**tags, "status": verdict.status})
                reason = failure_reason(verdict)
                if reason is not None:
                    self.failures.inc(1, tags={**tags, "reason": reason})
                if verdict.status == "ok":
                    self.latency.observe(verdict.latency_ms, tags=tags)
                if verdict.cached:
                    self.cache_hits.inc(1, tags=tags)
                elif verdict.input_tokens or verdict.output_tokens:
                    self.tokens.inc(verdict.input_tokens, tags={**tags, "direction": "input"})
                    self.tokens.inc(verdict.output_tokens, tags={**tags, "direction": "output"})

    def record_throttles(self, judge: str, count: int) -> None:
        if count > 0:
            self.throttles.inc(count, tags={"app": self._app, "judge": judge})


class IntegrityMetrics:
    """Canary drift per judge, and the latest scheduled probe run's inflation and findings."""

    def __init__(self, app: str):
        self._app = app
        tags = ("app", "judge")
        self.drift = Gauge("farm_canary_drift", "Mean canary score minus baseline over the window.", tag_keys=tags)
        self.alarm = Gauge("farm_canary_alarm", "1 while the judge's canary drift is beyond the threshold.", tag_keys=tags)
        self.samples = Gauge("farm_canary_window_samples", "Canary verdicts in the drift window.", tag_keys=tags)
        self.scored = Counter("farm_canaries_total", "Canaries mixed into live traffic.", tag_keys=("app",))
        self.inflation = Gauge("farm_probe_inflation", "Mean score inflation under a probe (latest run).", tag_keys=(*tags, "probe"))
        self.inflated_share = Gauge(
            "farm_probe_inflated_share", "Share of rollouts inflated by > 0.2 under a probe (latest run).", tag_keys=(*tags, "probe")
        )
        self.flaw = Gauge("farm_probe_flaw", "1 when the latest probe run found this flaw in the judge.", tag_keys=(*tags, "flaw"))
        self.runs = Counter("farm_probe_runs_total", "Scheduled probe runs by outcome.", tag_keys=("app", "outcome"))

    def canary(self, judge: str, drift: float, alarm: bool, samples: int) -> None:
        tags = {"app": self._app, "judge": judge}
        self.drift.set(drift, tags=tags)
        self.alarm.set(1.0 if alarm else 0.0, tags=tags)
        self.samples.set(samples, tags=tags)

    def canaries_scored(self, count: int) -> None:
        self.scored.inc(count, tags={"app": self._app})

    def probe_inflation(self, judge: str, probe: str, mean: float, share: float) -> None:
        tags = {"app": self._app, "judge": judge, "probe": probe}
        self.inflation.set(mean, tags=tags)
        self.inflated_share.set(share, tags=tags)

    def probe_findings(self, judge: str, flaws: list[str]) -> None:
        for flaw in FLAWS:
            self.flaw.set(1.0 if flaw in flaws else 0.0, tags={"app": self._app, "judge": judge, "flaw": flaw})

    def probe_run(self, outcome: str) -> None:
        self.runs.inc(1, tags={"app": self._app, "outcome": outcome})
