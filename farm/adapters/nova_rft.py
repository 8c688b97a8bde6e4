"""Nova RFT's reward Lambda: samples in, `{"id", "aggregate_reward_score", "metrics_list"}` out.

Deploy this module as the Lambda handler (`farm.adapters.nova_rft.lambda_handler`) with
`FARM_URL` (and `FARM_API_TOKEN`) pointing at the farm. Each output keeps its sample's id with
its JSON type (an integer id stays an integer). Metrics per sample: each judge's score, the
judge's `..._scored` flag, `farm_partial` (fewer judges answered than configured),
`farm_failed` and `farm_disagreement`. If the farm cannot score a sample, the invocation fails
with the sample ids (so the service retries it) instead of reporting 0; set
`FARM_RFT_ON_FAILURE=zero` to report 0 with the metric `farm_failed` = 1 instead.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from farm.adapters.common import client_from, sample_metrics
from farm.errors import FarmError, InputError
from farm.wire import RewardResult

__all__ = ["lambda_handler", "rft_output"]


def lambda_handler(event: Any, context: Any = None) -> list[dict[str, Any]]:
    samples = event if isinstance(event, list) else event.get("samples", event.get("body", []))
    if not isinstance(samples, list):
        raise InputError("must be a list of samples", field="samples")
    original_ids: dict[str, Any] = {}
    sent = []
    for index, sample in enumerate(samples):
        if not isinstance(sample, Mapping):
            raise InputError("must be an object", row=f"samples[{index}]")
        key = str(sample.get("id"))
        if key in original_ids:
            raise InputError(f"duplicate id {sample.get('id')!r}", row=f"samples[{index}]", field="id")
        original_ids[key] = sample.get("id")
        sent.append({**sample, "id": key} if sample.get("id") is not None else sample)
    results = client_from().score(sent)
    return rft_output(results, on_failure=os.environ.get("FARM_RFT_ON_FAILURE", "raise"), ids=original_ids)


def rft_output(results: Sequence[RewardResult], *, on_failure: str = "raise", ids: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    failed = [r.id for r in results if r.reward is None]
    if failed and on_failure != "zero":
        raise FarmError(f"the farm could not score {len(failed)} sample(s): {failed[:10]}")
    out = []
    for result in results:
        metrics = [{"name": name, "value": value, "type": "Metric"} for name, value in sample_metrics(result).items()]
        reward = 0.0 if result.reward is None else result.reward
        out.append(
            {
                "id": ids.get(result.id, result.id) if ids else result.id,
                "aggregate_reward_score": reward,
                "metrics_list": [{"name": "reward", "value": reward, "type": "Reward"}, *metrics],
            }
        )
    return out
