"""Nova RFT's reward Lambda: samples in, `{"id", "aggregate_reward_score", "metrics_list"}` out.

Deploy this module as the Lambda handler (`farm.adapters.nova_rft.lambda_handler`) with
`FARM_URL` (and `FARM_API_TOKEN`) pointing at the farm. If the farm cannot score a sample, the
invocation fails with the sample ids (so the service retries it) instead of reporting 0; set
`FARM_RFT_ON_FAILURE=zero` to report 0 with the metric `farm_failed` = 1 instead.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from farm.adapters.common import client_from
from farm.errors import FarmError
from farm.wire import RewardResult

__all__ = ["lambda_handler", "rft_output"]


def lambda_handler(event: Any, context: Any = None) -> list[dict[str, Any]]:
    samples = event if isinstance(event, list) else event.get("samples", event.get("body", []))
    results = client_from().score(samples)
    return rft_output(results, on_failure=os.environ.get("FARM_RFT_ON_FAILURE", "raise"))


def rft_output(results: Sequence[RewardResult], *, on_failure: str = "raise") -> list[dict[str, Any]]:
    failed = [r.id for r in results if r.reward is None]
    if failed and on_failure != "zero":
        raise FarmError(f"the farm could not score {len(failed)} sample(s): {failed[:10]}")
    out = []
    for result in results:
        metrics = [
            {"name": name, "value": verdict.score, "type": "Metric"} for name, verdict in result.judges.items() if verdict.score is not None
        ]
        if result.disagreement is not None:
            metrics.append({"name": "disagreement", "value": result.disagreement, "type": "Metric"})
        metrics.append({"name": "farm_failed", "value": 1.0 if result.reward is None else 0.0, "type": "Metric"})
        reward = 0.0 if result.reward is None else result.reward
        out.append(
            {
                "id": result.id,
                "aggregate_reward_score": reward,
                "metrics_list": [{"name": "reward", "value": reward, "type": "Reward"}, *metrics],
            }
        )
    return out
