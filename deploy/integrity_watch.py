"""The Serve app's continuous integrity checks: canaries in live traffic, and the probe suite
on a schedule. Results go to metrics, to the `ray.serve` log, and to `GET /integrity`."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from deploy.metrics import IntegrityMetrics
from farm.analysis.canary import CanaryMonitor, load_canaries
from farm.analysis.probes import PROBES, ProbeReport, run_probes
from farm.analysis.samples import gold_labels, read_sample
from farm.config import IntegrityConfig
from farm.ensemble import Ensemble
from farm.wire import RewardResult, Rollout

__all__ = ["IntegrityWatch"]

logger = logging.getLogger("ray.serve")


class IntegrityWatch:
    def __init__(self, config: IntegrityConfig, app: str):
        self.config = config
        self.metrics = IntegrityMetrics(app)
        self.canaries = CanaryMonitor(config.canaries, load_canaries(config.canaries)) if config.canaries.rate > 0 else None
        probes = config.probes
        self._probe_rollouts = read_sample(probes.data, probes.limit) if probes.interval_s > 0 else []
        self._probe_labels = gold_labels(self._probe_rollouts, probes.label)
        self.last_probe: dict[str, Any] | None = None
        self.probe_runs = 0
        self._probe_task: asyncio.Task[None] | None = None

    # -- canaries ---------------------------------------------------------------------------

    def draw(self, live: int) -> list[Rollout]:
        return self.canaries.draw(live) if self.canaries is not None else []

    def observe(self, canaries: Sequence[Rollout], results: Sequence[RewardResult]) -> None:
        if self.canaries is None or not canaries:
            return
        for event in self.canaries.observe(canaries, results):
            if event.alarm:
                logger.warning(
                    "farm canary drift alarm: judge %r moved %+.3f from its canary baselines over %d canaries (threshold %.3f); "
                    "recalibrate it or check its model",
                    event.judge,
                    event.drift,
                    event.samples,
                    self.canaries.config.threshold,
                )
            else:
                logger.warning("farm canary drift alarm cleared: judge %r now %+.3f", event.judge, event.drift)
        for judge, figures in self.canaries.status()["judges"].items():
            self.metrics.canary(judge, figures["drift"], figures["alarm"], figures["samples"])
        self.metrics.canaries_scored(len(canaries))

    # -- scheduled probes -------------------------------------------------------------------

    def ensure_probing(self, ensemble: Callable[[], Ensemble]) -> None:
        """Start the probe loop on the running event loop (once; again if it ever died)."""
        if self.config.probes.interval_s <= 0:
            return
        if self._probe_task is None or self._probe_task.done():
            self._probe_task = asyncio.get_running_loop().create_task(self._probe_loop(ensemble))

    async def _probe_loop(self, ensemble: Callable[[], Ensemble]) -> None:
        settings = self.config.probes
        probes = settings.probes or tuple(PROBES)
        await asyncio.sleep(settings.first_delay_s)
        while True:
            started = time.monotonic()
            try:
                report = await run_probes(ensemble(), self._probe_rollouts, probes, labels=self._probe_labels, fresh=True)
            except Exception:  # a probe run must never take the app down; the next one retries
                logger.exception("farm scheduled probe run failed")
                self.metrics.probe_run("failed")
            else:
                self._publish(report, time.monotonic() - started)
            await asyncio.sleep(settings.interval_s)

    def _publish(self, report: ProbeReport, elapsed_s: float) -> None:
        self.probe_runs += 1
        self.last_probe = {"finished_at": time.time(), "elapsed_s": round(elapsed_s, 2), **report.as_dict()}
        for probe, per in report.inflation.items():
            for judge, figures in per.items():
                self.metrics.probe_inflation(judge, probe, figures["mean"], figures["share_over_0_2"])
        for judge, flaws in report.findings.items():
            self.metrics.probe_findings(judge, flaws)
            if flaws:
                logger.warning("farm scheduled probes: judge %r shows %s", judge, ", ".join(flaws))
        self.metrics.probe_run("ok")

    def stop(self) -> None:
        if self._probe_task is not None:
            self._probe_task.cancel()

    def alarms(self) -> list[str]:
        """Judges whose canary drift is in alarm now."""
        return self.canaries.alarms() if self.canaries is not None else []

    def status(self) -> dict[str, Any]:
        return {
            "canaries": self.canaries.status() if self.canaries is not None else None,
            "probes": {"interval_s": self.config.probes.interval_s, "runs": self.probe_runs, "last": self.last_probe},
        }
