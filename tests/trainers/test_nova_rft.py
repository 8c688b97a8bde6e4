"""Nova RFT's reward Lambda handler on a realistic event, against a running farm over HTTP."""

from __future__ import annotations

import pytest

from farm.adapters.nova_rft import lambda_handler
from farm.errors import FarmError
from tests.trainers.conftest import NOVA_DOWN

pytestmark = [pytest.mark.integration, pytest.mark.ray, pytest.mark.slow]


def _sample(sample_id, answer: str, reference: str | None) -> dict:
    return {
        "id": sample_id,
        "messages": [
            {"role": "system", "content": "Solve the problem. End with #### and the answer."},
            {"role": "user", "content": "Natalia sold 48 clips in April and half as many in May. How many in total?"},
            {"role": "nova_assistant", "content": [{"text": answer}]},
        ],
        **({"reference_answer": reference} if reference is not None else {}),
        "metadata": {"split": "train"},
    }


def test_lambda_keeps_id_types_and_reports_metrics(farm_http, nova, monkeypatch):
    monkeypatch.setenv("FARM_URL", farm_http["url"])
    monkeypatch.setenv("FARM_API_TOKEN", farm_http["token"])
    monkeypatch.delenv("FARM_RFT_ON_FAILURE", raising=False)
    event = [_sample(17, "48 / 2 = 24, 48 + 24 = 72. #### 72", "72"), _sample("s-18", "48 + 48 = 96. #### 96", "72")]
    out = lambda_handler(event)
    assert [row["id"] for row in out] == [17, "s-18"]  # an integer id stays an integer
    assert out[0]["aggregate_reward_score"] > out[1]["aggregate_reward_score"]
    metrics = {m["name"]: m for m in out[0]["metrics_list"]}
    assert metrics["reward"]["type"] == "Reward" and metrics["farm_partial"]["value"] == 0.0
    assert {"farm_disagreement", "farm_failed", "farm_judge_rubric", "farm_judge_preference"} <= set(metrics)

    nova.update(**NOVA_DOWN)
    partial = lambda_handler([_sample(19, "#### 72 (Natalia's total)", "72")])
    metrics = {m["name"]: m["value"] for m in partial[0]["metrics_list"]}
    assert partial[0]["id"] == 19 and metrics["farm_partial"] == 1.0 and metrics["farm_judge_rubric_scored"] == 0.0
    with pytest.raises(FarmError, match=r"could not score 1 sample\(s\): \['20'\]"):
        lambda_handler([_sample(20, "no reference, no Nova: nothing can judge this", None)])
