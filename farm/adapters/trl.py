"""TRL: a `reward_funcs` entry for `GRPOTrainer` (and other TRL trainers that take reward functions).

    from farm.adapters.trl import FarmReward
    trainer = GRPOTrainer(..., reward_funcs=[FarmReward(url="http://farm:8000", reference_column="answer")])

A rollout the farm could not score is `None`, which TRL turns into NaN and leaves out of the
group's statistics; it is never 0, which would bias the group baseline and hand the other
completions a spurious advantage. Picklable: it holds settings, and opens its client lazily.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from farm.adapters.common import client_from, group_key, text_of
from farm.errors import ConfigError

__all__ = ["FarmReward"]

_REFERENCE_COLUMNS = ("reference", "answer", "solution", "ground_truth")


class FarmReward:
    def __init__(
        self,
        *,
        url: str | None = None,
        app_name: str | None = None,
        token: str | None = None,
        reference_column: str | None = None,
        judge: str | None = None,
        name: str = "farm_reward",
    ):
        self.url, self.app_name, self.token = url, app_name, token
        self.reference_column = reference_column
        self.judge = judge
        self.__name__ = name
        self._client: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_client": None}

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float | None]:
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
        if self._client is None:
            self._client = client_from(self.url, self.app_name, self.token)
        results = self._client.score(rollouts)
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
            raise ConfigError(f"reference column {self.reference_column!r} is not in the batch (have {sorted(kwargs)})")
        return None


def _as_text(value: Any) -> str | None:
    return None if value is None else value if isinstance(value, str) else str(value)
