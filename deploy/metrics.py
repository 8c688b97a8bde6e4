"""Prometheus metrics through `ray.util.metrics`, exported by Ray's metrics endpoint."""

from __future__ import annotations

from collections.abc import Sequence

from ray.util.metrics import Counter, Gauge, Histogram

from farm.analysis.probes import FLAWS
from farm.config import FarmConfig
from farm.cost import PriceTable, Usage
from farm.judges.base import failure_reason
from farm.wire import RewardResult, Verdict

__all__ = ["FarmMetrics", "IntegrityMetrics"]

_LATENCY_MS: list[float] = [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000]


class FarmMetrics:
    """Per judge and for the ensemble: counts, failures by reason, latency, tokens, cache, flags,
    and dollars (from `farm.cost`, when a config with priced Bedrock judges is given)."""

    def __init__(self, app: str, config: FarmConfig | None = None):
        tags = ("app", "judge")
        self._app = app
        self._prices = PriceTable.from_config(config) if config is not None else None
        judges = config.judges if config is not None else []
        self._models: dict[str, tuple[str, str]] = {
            j.name: (str(j.model), str(getattr(j, "service_tier", "default"))) for j in judges if hasattr(j, "model")
        }
        self.cost = Counter("farm_cost_usd_total", "Bedrock spend in USD at the price table's rates.", tag_keys=tags)
        self.cost_per_rollout = Gauge(
            "farm_cost_usd_per_rollout", "USD per rollout over the latest request (all judges).", tag_keys=("app",)
        )
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
        self.max_tokens = Gauge(  # tokens: `max_tokens: auto` (farm/maxtokens.py)
            "farm_judge_max_tokens", "maxTokens sent now per judge and kind of call (sized or pinned).", tag_keys=(*tags, "kind")
        )
        self.max_tokens_retries = Counter(
            "farm_judge_max_tokens_retries_total",
            "Answers cut off by a sized maxTokens and asked again at the ceiling.",
            tag_keys=(*tags, "kind"),
        )
        self.request_latency = Histogram(
            "farm_request_latency_ms", "Ensemble latency per request.", boundaries=_LATENCY_MS, tag_keys=("app",)
        )

    def record(self, results: Sequence[RewardResult], elapsed_ms: float) -> None:
        app = {"app": self._app}
        self.request_latency.observe(elapsed_ms, tags=app)
        spent = 0.0
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
                    directions = {
                        "input": verdict.input_tokens,
                        "output": verdict.output_tokens,
                        "cache_read": verdict.cache_read_tokens,
                        "cache_write": verdict.cache_write_tokens,
                    }
                    for direction, count in directions.items():
                        if count > 0:  # Ray's counters refuse 0
                            self.tokens.inc(count, tags={**tags, "direction": direction})
                    usd = self.usd(name, verdict)
                    if usd:
                        self.cost.inc(usd, tags=tags)
                        spent += usd
        if results and self._models and self._prices is not None:
            self.cost_per_rollout.set(spent / len(results), tags=app)

    def usd(self, judge: str, verdict: Verdict) -> float | None:
        """What this verdict's Bedrock calls cost, or None (not a Bedrock judge, or no price)."""
        if self._prices is None or judge not in self._models:
            return None
        model, tier = self._models[judge]
        usage = Usage(verdict.input_tokens, verdict.output_tokens, verdict.cache_read_tokens, verdict.cache_write_tokens)
        return self._prices.usd(model, usage, tier)

    def record_max_tokens(self, judge: str, report: dict[str, dict[str, int]], retried_before: dict[str, int]) -> dict[str, int]:
        """The limit each kind of call is sent now, and the retries at the ceiling since
        `retried_before` (kind -> count last reported); returns the counts to pass next time."""
        counts = {}
        for kind, seen in report.items():
            tags = {"app": self._app, "judge": judge, "kind": kind}
            self.max_tokens.set(seen["max_tokens"], tags=tags)
            counts[kind] = int(seen["retried_at_ceiling"])
            if counts[kind] > retried_before.get(kind, 0):  # Ray counters refuse inc(0)
                self.max_tokens_retries.inc(counts[kind] - retried_before.get(kind, 0), tags=tags)
        return counts

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
