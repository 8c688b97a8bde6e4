"""OpenRLHF's `--remote_rm_url` format, served by the farm at `POST /openrlhf` (or, with auth,
`POST /openrlhf/<token>`: OpenRLHF sends no headers, so its API token is in the path).

Request `{"query": [prompt + response, ...], "prompts": [prompt, ...], "labels": [reference, ...]}`;
response `{"rewards": [...], "scores": [...], "extra_logs": {...}}`.

OpenRLHF decodes the query with its special tokens and its prompt carries the chat template, so
by default the markup is stripped before judging: a ChatML, Llama-3 or Gemma prompt becomes chat
messages, and special tokens (`<|im_end|>`, `</s>`, `<end_of_turn>`...) leave the response
(`strip_template=False`, or `FARM_OPENRLHF_STRIP=0` on the ingress, judges the raw text).

Failure policy: OpenRLHF turns every value into a tensor and crashes on a null, so the response
carries numbers only. A rollout the farm could not score gets `failed_reward` (default 0.0,
`FARM_OPENRLHF_FAILED_REWARD` on the ingress) with `farm_failed` 1 in `extra_logs`, which
OpenRLHF averages into its logged metrics beside `farm_partial`, `farm_disagreement` and each
judge's `farm_judge_<name>` / `farm_judge_<name>_scored`. OpenRLHF 0.11 sends one query per
request, so its samples reach the preference judge one at a time (against the label).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import msgspec

from farm.adapters.common import group_key, sample_metrics
from farm.errors import InputError
from farm.wire import MAX_TEXT_CHARS, RewardResult, Rollout, input_error, parse_rollout

__all__ = ["OpenRLHFRequest", "openrlhf_response", "rollouts_from_openrlhf", "split_chat_template", "strip_special_tokens"]

_TEMPLATES = (
    re.compile(r"<\|im_start\|>(\w+)\n(.*?)(?:<\|im_end\|>|\Z)", re.S),  # ChatML (Qwen, ...)
    re.compile(r"<\|start_header_id\|>(\w+)<\|end_header_id\|>\n*(.*?)(?:<\|eot_id\|>|\Z)", re.S),  # Llama 3
    re.compile(r"<start_of_turn>(\w+)\n(.*?)(?:<end_of_turn>|\Z)", re.S),  # Gemma
)
_SPECIAL = re.compile(r"<\|[A-Za-z0-9_]{1,40}\|>|</?s>|<(?:bos|eos|pad|start_of_turn|end_of_turn)>|\[/?INST\]")
_Text = Annotated[str, msgspec.Meta(max_length=MAX_TEXT_CHARS)]
_ROLES = {"system": "system", "user": "user", "assistant": "assistant", "model": "assistant"}


def strip_special_tokens(text: str) -> str:
    return _SPECIAL.sub("", text).strip()


def split_chat_template(text: str) -> list[dict[str, str]] | None:
    """Chat messages from a templated prompt, without the empty assistant turn that opens the
    generation; None when no known template is found."""
    for pattern in _TEMPLATES:
        turns = [(_ROLES.get(role), content.strip()) for role, content in pattern.findall(text)]
        if turns and all(role is not None for role, _ in turns):
            messages = [{"role": role, "content": strip_special_tokens(content)} for role, content in turns if role is not None]
            while messages and messages[-1]["role"] == "assistant" and not messages[-1]["content"]:
                messages.pop()
            if messages:
                return messages
    return None


class OpenRLHFRequest(msgspec.Struct):
    """The body OpenRLHF posts; other fields are ignored."""

    query: list[_Text]
    prompts: list[_Text] | None = None
    labels: list[Any] | None = None


def rollouts_from_openrlhf(payload: Mapping[str, Any], *, strip_template: bool = True) -> list[Rollout]:
    try:
        request = msgspec.convert(payload, OpenRLHFRequest)
    except msgspec.ValidationError as exc:
        raise input_error(exc) from None
    queries, prompts, labels = request.query, request.prompts, request.labels
    for name, values in (("prompts", prompts), ("labels", labels)):
        if values is not None and len(values) != len(queries):
            raise InputError(f"must be a list as long as `query` ({len(queries)})", field=name)
    out = []
    for index, query in enumerate(queries):
        prompt = prompts[index] if prompts is not None else ""
        response = query[len(prompt) :] if prompt and query.startswith(prompt) else query
        label = labels[index] if labels is not None else None
        judged_prompt: str | list[dict[str, str]] = prompt
        if strip_template:
            response = strip_special_tokens(response)
            judged_prompt = split_chat_template(prompt) or strip_special_tokens(prompt)
        key = group_key(prompt)
        group = key if prompt else None  # without `prompts` (older OpenRLHF) no two queries are known to share a prompt
        out.append(
            parse_rollout(
                {
                    "id": f"{key}-{index}",
                    "prompt": judged_prompt,
                    "response": response,
                    "reference": label if label is None or isinstance(label, str) else str(label),
                    "group": group,
                },
                where=f"query[{index}]",
            )
        )
    return out


def openrlhf_response(results: Sequence[RewardResult], *, failed_reward: float = 0.0) -> dict[str, Any]:
    """Numbers only: `rewards`/`scores` with `failed_reward` where the farm could not score, and
    `extra_logs` with the same keys for every rollout."""
    rewards = [failed_reward if r.reward is None else float(r.reward) for r in results]
    per_sample = [sample_metrics(r) for r in results]
    keys = sorted({key for sample in per_sample for key in sample})
    return {
        "rewards": rewards,
        "scores": list(rewards),
        "extra_logs": {key: [sample.get(key, 0.0) for sample in per_sample] for key in keys},
    }
