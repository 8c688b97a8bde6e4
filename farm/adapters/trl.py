"""TRL: `reward_funcs` entries for `GRPOTrainer` (and other TRL trainers that take reward functions).

    from farm.adapters.trl import FarmReward, AsyncFarmReward
    reward_funcs=[FarmReward(url="http://farm:8000", reference_column="answer")]   # over HTTP
    reward_funcs=[AsyncFarmReward(app_name="reward-farm")]                         # awaited by TRL
    reward_funcs=[FarmReward(config="farm.yaml")]                                  # in this process, no Serve

Failure policy: a rollout the farm could not score is `None`, which TRL turns into NaN and
leaves out of the group's statistics (its advantage becomes 0); it is never 0, which would bias
the group baseline. Degraded rewards are visible: every call logs `farm/ok`, `farm/partial`,
`farm/failed`, `farm/disagreement` and `farm/judge/<name>` through TRL's `log_metric`, and
each completion's result status through `log_extra` (the completions table). Picklable: it
holds settings and opens its client lazily.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from farm.adapters.common import batch_metrics, client_from, group_key, text_of
from farm.errors import ConfigError
from farm.wire import RewardResult

__all__ = ["AsyncFarmReward", "FarmReward"]

_REFERENCE_COLUMNS = ("reference", "answer", "solution", "ground_truth")


class FarmReward:
    def __init__(
        self,
        *,
        url: str | None = None,
        app_name: str | None = None,
        token: str | None = None,
        config: Any = None,
        reference_column: str | None = None,
        judge: str | None = None,
        name: str = "farm_reward",
        log_metrics: bool = True,
    ):
        self.url, self.app_name, self.token, self.config = url, app_name, token, config
        self.reference_column = reference_column
        self.judge = judge
        self.log_metrics = log_metrics
        self.__name__ = name
        self._client: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_client": None}

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float | None]:
        rollouts = self._rollouts(prompts, completions, kwargs)
        return self._rewards(self._get_client().score(rollouts), kwargs)

    def _get_client(self) -> Any:
        if self._client is None:
            self._client = client_from(self.url, self.app_name, self.token, self.config)
        return self._client

    def _rollouts(self, prompts: Sequence[Any], completions: Sequence[Any], kwargs: dict[str, Any]) -> list[dict[str, Any]]:
        if len(prompts) != len(completions):
            raise ConfigError(f"TRL passed {len(prompts)} prompts and {len(completions)} completions")
        references = self._references(kwargs, len(prompts))
        rollouts = []
        for index, (prompt, completion) in enumerate(zip(prompts, completions, strict=True)):
            group = group_key(prompt)
            rollouts.append(
                {
                    "id": f"{group}-{index}",
                    "prompt": prompt if isinstance(prompt, str) else [dict(m) for m in prompt],
                    "response": text_of(completion),
                    "reference": None if references is None else _as_text(references[index]),
                    "group": group,
                }
            )
        return rollouts

    def _rewards(self, results: list[RewardResult], kwargs: dict[str, Any]) -> list[float | None]:
        log_metric: Callable[[str, float], None] | None = kwargs.get("log_metric")
        log_extra: Callable[[str, list[Any]], None] | None = kwargs.get("log_extra")
        if self.log_metrics and log_metric is not None:
            for name, value in batch_metrics(results).items():
                log_metric(name, value)
        if self.log_metrics and log_extra is not None:
            log_extra("farm_status", [r.status for r in results])
        if self.judge is None:
            return [r.reward for r in results]
        return [r.judges[self.judge].score if self.judge in r.judges else None for r in results]

    def _references(self, kwargs: dict[str, Any], n: int) -> list[Any] | None:
        columns = [self.reference_column] if self.reference_column else [c for c in _REFERENCE_COLUMNS if c in kwargs]
        for column in columns:
            if column in kwargs:
                values = list(kwargs[column])
                if len(values) != n:
                    raise ConfigError(f"column {column!r} has {len(values)} values for {n} completions")
                return values
        if self.reference_column:
            known = sorted(k for k in kwargs if k not in ("log_metric", "log_extra", "trainer_state", "completion_ids"))
            raise ConfigError(f"reference column {self.reference_column!r} is not in the batch (have {known})")
        return None


class AsyncFarmReward(FarmReward):
    """The same reward as a coroutine: TRL awaits it alongside its other async reward functions,
    so the farm's call overlaps theirs instead of blocking the step."""

    async def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float | None]:  # type: ignore[override]
        rollouts = self._rollouts(prompts, completions, kwargs)
        return self._rewards(await self._get_client().score_async(rollouts), kwargs)


def _as_text(value: Any) -> str | None:
    return None if value is None else value if isinstance(value, str) else str(value)
