"""verl 0.9's reward loop: `FarmRewardManager`, which sends whole `uid` groups to the farm in one call.

    reward:
      reward_manager:
        source: importlib
        name: FarmRewardManager
        module: {path: pkg://farm.adapters.verl_manager}

verl's reward-loop worker calls `run_single` once per sample, all of its chunk concurrently.
The manager holds each sample until its `uid` group is complete (`actor_rollout_ref.rollout.n`
samples) and no other sample is already on its way, or until no sample has arrived for
`FARM_VERL_GATHER_S` (default 0.5 s), then scores everything pending in one farm call: the
worker's whole chunk, each group whole, so the preference judge compares each group. Keep
each worker's chunk made of whole groups (batch size / `reward.num_workers` a multiple of
`rollout.n`). Failure policy and `reward_extra_info` keys are those of `farm.adapters.verl`.

The class subclasses verl's `RewardManagerBase`, so it is built on first access (verl imports
Ray); importing this module needs neither.
"""

from __future__ import annotations

import asyncio
import os
from functools import cache
from typing import Any

from farm.adapters.common import client_from
from farm.adapters.verl import rollout_from_verl, verl_outputs

__all__ = ["FarmRewardManager", "GroupGatherer"]  # noqa: F822 (FarmRewardManager is built on first access)


class GroupGatherer:
    """Collects concurrent single-sample requests into one call per complete set of groups."""

    def __init__(self, score: Any, group_size: int | None, gather_s: float):
        self._score = score  # async (rows) -> list[dict]
        self.group_size = group_size
        self.gather_s = gather_s
        self._pending: list[tuple[dict[str, Any], asyncio.Future[dict[str, float]]]] = []
        self._timer: asyncio.Handle | None = None
        self.calls: list[int] = []  # rollouts per farm call, for tests and logs

    async def submit(self, row: dict[str, Any]) -> dict[str, float]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, float]] = loop.create_future()
        self._pending.append((row, future))
        if self._timer is not None:
            self._timer.cancel()
        if self._groups_complete():  # flush once the samples already scheduled on this loop have joined
            self._timer = loop.call_soon(self._flush)
        else:
            self._timer = loop.call_later(self.gather_s, self._flush)
        return await future

    def _groups_complete(self) -> bool:
        if not self.group_size:
            return False
        counts: dict[Any, int] = {}
        for row, _ in self._pending:
            counts[row["group"]] = counts.get(row["group"], 0) + 1
        return None not in counts and all(c >= self.group_size for c in counts.values())

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._pending = self._pending, []
        if batch:
            self.calls.append(len(batch))
            asyncio.get_running_loop().create_task(self._send(batch))

    async def _send(self, batch: list[tuple[dict[str, Any], asyncio.Future[dict[str, float]]]]) -> None:
        rows = [row for row, _ in batch]
        try:
            outputs = await self._score(rows)
        except Exception as exc:  # noqa: BLE001 - every waiting sample fails with the call's reason
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), output in zip(batch, outputs, strict=True):
            if not future.done():
                future.set_result(output)


@cache
def _manager_class() -> type:
    from verl.experimental.reward_loop.reward_manager.base import RewardManagerBase

    class FarmRewardManager(RewardManagerBase):  # type: ignore[misc, valid-type]
        """Scores through the farm (`FARM_URL` / `FARM_APP`), whole `uid` groups per call."""

        def __init__(self, config: Any, tokenizer: Any, compute_score: Any = None, **_: Any):
            super().__init__(config, tokenizer, compute_score)
            self.client = client_from()
            self.gatherer = GroupGatherer(self._score_rows, _group_size(config), float(os.environ.get("FARM_VERL_GATHER_S", "0.5")))
            self._seen = 0

        async def _score_rows(self, rows: list[dict[str, Any]]) -> list[dict[str, float]]:
            ids: dict[str, int] = {}
            for row in rows:  # ids unique within the call
                ids[row["id"]] = ids.get(row["id"], 0) + 1
                if ids[row["id"]] > 1:
                    row["id"] = f"{row['id']}#{ids[row['id']]}"
            results = await self.client.score_async(rows)
            return verl_outputs(results, [row["group"] for row in rows])

        async def run_single(self, data: Any) -> dict[str, Any]:
            item = data[-1:][0]
            response_ids = item.batch["responses"]
            length = int(item.batch["attention_mask"][-response_ids.shape[-1] :].sum())
            response = self.tokenizer.decode(response_ids[:length], skip_special_tokens=True)
            non_tensor = item.non_tensor_batch
            reward_model = non_tensor.get("reward_model") or {}
            extra = dict(non_tensor.get("extra_info") or {})
            prompt = non_tensor.get("raw_prompt")
            if prompt is None and "prompts" in item.batch.keys():
                prompt = self.tokenizer.decode(item.batch["prompts"], skip_special_tokens=True)
            self._seen += 1
            row = rollout_from_verl(
                self._seen,
                non_tensor.get("data_source"),
                response,
                reward_model.get("ground_truth"),
                extra,
                uid=non_tensor.get("uid"),
                prompt=list(prompt) if prompt is not None and not isinstance(prompt, str) else prompt,
            )
            output = await self.gatherer.submit(row)
            return {"reward_score": output["score"], "reward_extra_info": output}

    FarmRewardManager.__module__ = __name__
    return FarmRewardManager


def _group_size(config: Any) -> int | None:
    try:
        return int(config.actor_rollout_ref.rollout.n)
    except (AttributeError, KeyError, TypeError, ValueError):
        return None


def __getattr__(name: str) -> Any:
    if name == "FarmRewardManager":
        return _manager_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
