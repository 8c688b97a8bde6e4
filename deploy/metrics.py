"""Prometheus metrics through `ray.util.metrics`, exported by Ray's metrics endpoint."""

from __future__ import annotations

from collections.abc import Sequence

from ray.util.metrics import Counter, Histogram

from farm.judges.base import failure_reason
from farm.wire import RewardResult

__all__ = ["FarmMetrics"]

_LATENCY_MS = [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000]


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
