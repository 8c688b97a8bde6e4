"""Wire types: the only values that cross process, Ray and HTTP boundaries.

Frozen msgspec Structs, evolved by adding fields with defaults (never by changing a field's
type). `parse_rollout` is the boundary: it accepts the plain rollout form and Nova RFT's
reward-Lambda sample form and raises `InputError` naming the row and the field. `decode_json`
and `check_depth` hold the limits checked once at the door (nesting depth, text that is not UTF-8).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import msgspec

from farm.errors import InputError

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "JudgeStatus",
    "Message",
    "ResultStatus",
    "RewardResult",
    "Rollout",
    "FRESH",
    "Verdict",
    "check_depth",
    "decode_json",
    "decode_results",
    "encode_result",
    "mark_fresh",
    "parse_rollout",
    "parse_rollouts",
    "prompt_text",
    "wants_fresh",
]

JudgeStatus = Literal["ok", "failed", "timeout", "skipped"]
ResultStatus = Literal["ok", "partial", "failed"]

_ROLES = frozenset({"system", "user", "assistant"})
_ASSISTANT_ROLES = frozenset({"assistant", "nova_assistant"})


class Message(msgspec.Struct, frozen=True):
    role: str
    content: str


class Rollout(msgspec.Struct, frozen=True, kw_only=True):
    """One policy sample to be rewarded."""

    id: str
    prompt: str | tuple[Message, ...]
    response: str
    reference: str | None = None
    group: str | None = None
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)


class Verdict(msgspec.Struct, frozen=True, kw_only=True):
    """One judge's answer for one rollout. A failure is a status with a reason, never a 0."""

    score: float | None
    status: JudgeStatus
    criteria: dict[str, float] = msgspec.field(default_factory=dict)
    rationale: str = ""
    latency_ms: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    cached: bool = False
    error: str | None = None
    flags: tuple[str, ...] = ()
    cache_read_tokens: int = 0
    """Prompt tokens Bedrock read from its prompt cache (billed at the cache-read rate, not in `input_tokens`)."""
    cache_write_tokens: int = 0
    """Prompt tokens written to Bedrock's prompt cache (not in `input_tokens`)."""


class RewardResult(msgspec.Struct, frozen=True, kw_only=True):
    """The farm's answer for one rollout (DESIGN.md result contract)."""

    id: str
    reward: float | None
    status: ResultStatus
    judges: dict[str, Verdict]
    disagreement: float | None = None
    flags: tuple[str, ...] = ()


_encoder = msgspec.json.Encoder()
_results_decoder = msgspec.json.Decoder(list[RewardResult])


def encode_result(result: RewardResult) -> bytes:
    return _encoder.encode(result)


def decode_results(data: bytes) -> list[RewardResult]:
    return _results_decoder.decode(data)


DEFAULT_MAX_DEPTH = 64
"""Deepest nesting of arrays and objects a rollout may carry (`serve.max_json_depth` online)."""


FRESH = "farm_fresh"
"""Metadata key: `true` makes every judge look afresh instead of reading its verdict cache
(canaries and consistency checks set it; it reaches judges in other processes with the rollout)."""


def wants_fresh(rollout: Rollout) -> bool:
    return rollout.metadata.get(FRESH) is True


def mark_fresh(rollout: Rollout, **changes: Any) -> Rollout:
    """A copy every judge scores afresh (no cache), with `changes` applied (`metadata` merged)."""
    metadata = {**rollout.metadata, **changes.pop("metadata", {}), FRESH: True}
    return msgspec.structs.replace(rollout, metadata=metadata, **changes)


def prompt_text(prompt: str | tuple[Message, ...]) -> str:
    """The prompt as judges read it: a string, or the turns rendered one per block."""
    if isinstance(prompt, str):
        return prompt
    return "\n\n".join(f"[{m.role}]\n{m.content}" for m in prompt)


def parse_rollouts(objs: Sequence[Mapping[str, Any]]) -> list[Rollout]:
    """Parse a batch; the first bad row raises, naming its index as well as its id."""
    out = []
    for index, obj in enumerate(objs):
        out.append(parse_rollout(obj, where=f"rollouts[{index}]"))
    return out


def parse_rollout(obj: Any, *, where: str | None = None, max_depth: int = DEFAULT_MAX_DEPTH) -> Rollout:
    """Validate one rollout in either accepted form.

    `where` names the row when the object has no usable id (a line number, a list index).
    Nesting deeper than `max_depth` is refused here, not by a pickling error in a judge later.
    """
    if isinstance(obj, Rollout):
        check_depth(obj.metadata, max_depth - 1, where=where, path="metadata")
        _check_metadata_text(obj.metadata, _row_name({"id": obj.id}, where))
        return obj
    if not isinstance(obj, Mapping):
        raise InputError(f"a rollout must be a JSON object, got {type(obj).__name__}", row=where)
    row = _row_name(obj, where)
    check_depth(obj, max_depth, where=row)
    rollout_id = obj.get("id")
    if rollout_id is None:
        raise InputError("missing required field", row=row, field="id")
    if isinstance(rollout_id, int) and not isinstance(rollout_id, bool):
        rollout_id = str(rollout_id)
    if not isinstance(rollout_id, str) or not rollout_id:
        raise InputError("must be a non-empty string", row=row, field="id")
    if "messages" in obj and "response" not in obj:
        prompt, response = _split_rft_messages(obj["messages"], row)
        reference = obj.get("reference_answer")
        metadata = obj.get("metadata") or {}
        if reference is None and isinstance(metadata, Mapping):
            reference = metadata.get("reference_answer")
    else:
        if "prompt" not in obj:
            raise InputError("missing required field", row=row, field="prompt")
        if "response" not in obj:
            raise InputError("missing required field", row=row, field="response")
        prompt = _parse_prompt(obj["prompt"], row)
        response = obj["response"]
        reference = obj.get("reference")
        metadata = obj.get("metadata") or {}
    if not isinstance(response, str):
        raise InputError(f"must be a string, got {_json_type(response)}", row=row, field="response")
    _check_text(response, row, "response")
    if reference is not None and not isinstance(reference, str):
        reference = json.dumps(reference, ensure_ascii=False)
    if reference is not None:
        _check_text(reference, row, "reference")
    group = obj.get("group")
    if group is not None and not isinstance(group, str):
        if isinstance(group, int) and not isinstance(group, bool):
            group = str(group)
        else:
            raise InputError(f"must be a string or null, got {_json_type(group)}", row=row, field="group")
    if not isinstance(metadata, Mapping):
        raise InputError(f"must be an object, got {_json_type(metadata)}", row=row, field="metadata")
    _check_metadata_text(metadata, row)
    return Rollout(
        id=rollout_id,
        prompt=prompt,
        response=response,
        reference=reference,
        group=group,
        metadata=dict(metadata),
    )


def check_depth(value: Any, limit: int, *, where: str | None = None, path: str = "") -> None:
    """Raise `InputError` naming the field where `value` nests deeper than `limit`; iterative, so
    a hostile document cannot exhaust the stack here."""
    stack: list[tuple[Any, int, str]] = [(value, 1, path)]
    while stack:
        node, depth, here = stack.pop()
        if isinstance(node, Mapping):
            items: Any = ((f"{here}.{k}" if here else str(k), v) for k, v in node.items())
        elif isinstance(node, (list, tuple)):
            items = ((f"{here}[{i}]", v) for i, v in enumerate(node))
        else:
            continue
        if depth > limit:
            raise _too_deep(here, limit, where)
        stack.extend((v, depth + 1, p) for p, v in items if isinstance(v, (Mapping, list, tuple)))


def _too_deep(path: str, limit: int, where: str | None) -> InputError:
    field = _short_path(path) or "body"
    return InputError(f"nested deeper than the limit of {limit} levels of arrays/objects", row=where, field=field)


def _short_path(path: str, keep: int = 6) -> str:
    parts = re.findall(r"\[\d+\]|[^.\[]+", path)
    if len(parts) <= keep:
        return path
    head = "".join(p if p.startswith("[") or i == 0 else f".{p}" for i, p in enumerate(parts[:keep]))
    return f"{head}...({len(parts) - keep} more levels)"


_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{},:]')


def _scan_too_deep(data: bytes, limit: int) -> str:
    """The path where raw JSON first nests deeper than `limit` (for documents too deep to decode)."""
    stack: list[list[Any]] = []  # [kind, key-or-index, expecting-key]
    path: list[str] = []
    for match in _TOKENS.finditer(data):
        token = match.group()
        if token in (b"{", b"["):
            if len(stack) >= limit:
                return "".join(path)
            if stack:
                top = stack[-1]
                path.append(f"[{top[1]}]" if top[0] == "[" else f".{top[1]}" if path else str(top[1]))
            stack.append(["{", "", True] if token == b"{" else ["[", 0, False])
        elif token in (b"}", b"]"):
            if stack:
                stack.pop()
            if path and len(path) >= len(stack):
                path.pop()
        elif token == b",":
            if stack and stack[-1][0] == "[":
                stack[-1][1] += 1
            elif stack:
                stack[-1][2] = True
        elif token != b":" and stack and stack[-1][0] == "{" and stack[-1][2]:
            try:
                stack[-1][1] = json.loads(token)
            except ValueError:
                stack[-1][1] = token.decode("utf-8", "replace")[1:-1]
            stack[-1][2] = False
    return "".join(path)


def decode_json(data: bytes, *, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """Decode a request body, with errors that say what is wrong: `InputError` for nesting beyond
    `max_depth` (naming the field) and for malformed JSON (with the position). A lone surrogate
    escape (`"\\ud800"`) decodes, so that the row check can name the field that holds it."""
    try:
        value = msgspec.json.decode(data)
    except RecursionError:
        raise _too_deep(_scan_too_deep(data, max_depth), max_depth, None) from None
    except msgspec.DecodeError as exc:
        value = _decode_stdlib(data, exc, max_depth)
    check_depth(value, max_depth)
    return value


def _decode_stdlib(data: bytes, exc: msgspec.DecodeError, max_depth: int) -> Any:
    """msgspec refuses lone surrogates with a misleading "truncated"; the stdlib parser tells the truth."""
    try:
        return json.loads(data, parse_constant=_refuse_constant)
    except RecursionError:
        raise _too_deep(_scan_too_deep(data, max_depth), max_depth, None) from None
    except json.JSONDecodeError as err:
        raise InputError(f"body is not valid JSON: {err.msg} at line {err.lineno} column {err.colno}") from None
    except UnicodeDecodeError:
        raise InputError(f"body is not valid JSON: {exc}") from None


def _refuse_constant(name: str) -> Any:
    """`NaN`, `Infinity` and `-Infinity` are not JSON; msgspec refuses them, and so must the fallback."""
    raise InputError(f"body is not valid JSON: {name} is not a JSON number")


def _row_name(obj: Mapping[str, Any], where: str | None) -> str | None:
    rollout_id = obj.get("id")
    if isinstance(rollout_id, str) and rollout_id:
        return f"{rollout_id!r}" + (f" ({where})" if where else "")
    return where


def _parse_prompt(prompt: Any, row: str) -> str | tuple[Message, ...]:
    if isinstance(prompt, str):
        _check_text(prompt, row, "prompt")
        return prompt
    if isinstance(prompt, list):
        if not prompt:
            raise InputError("a message list must not be empty", row=row, field="prompt")
        return tuple(_parse_message(m, row, f"prompt[{i}]") for i, m in enumerate(prompt))
    raise InputError(f"must be a string or a list of messages, got {_json_type(prompt)}", row=row, field="prompt")


def _parse_message(message: Any, row: str, field: str, roles: frozenset[str] = _ROLES) -> Message:
    if not isinstance(message, Mapping):
        raise InputError(f"must be an object with `role` and `content`, got {_json_type(message)}", row=row, field=field)
    role = message.get("role")
    if role not in roles:
        raise InputError(f"`role` must be one of {sorted(roles)}, got {role!r}", row=row, field=f"{field}.role")
    content = _content_text(message.get("content"), row, f"{field}.content")
    return Message(role="assistant" if role == "nova_assistant" else role, content=content)


def _content_text(content: Any, row: str, field: str) -> str:
    """Accept a string, or content blocks in Converse (`{"text"}`) or OpenAI (`{"type": "text"}`) form."""
    if isinstance(content, str):
        _check_text(content, row, field)
        return content
    if isinstance(content, list):
        parts = []
        for i, block in enumerate(content):
            if not isinstance(block, Mapping) or not isinstance(block.get("text"), str):
                raise InputError("content blocks must carry a string `text`", row=row, field=f"{field}[{i}]")
            parts.append(block["text"])
        text = "\n".join(parts)
        _check_text(text, row, field)
        return text
    raise InputError(f"must be a string or a list of text blocks, got {_json_type(content)}", row=row, field=field)


def _split_rft_messages(messages: Any, row: str) -> tuple[tuple[Message, ...], str]:
    if not isinstance(messages, list) or len(messages) < 2:
        raise InputError("must be a list of at least two messages ending with the assistant turn", row=row, field="messages")
    last = messages[-1]
    if not isinstance(last, Mapping) or last.get("role") not in _ASSISTANT_ROLES:
        got = last.get("role") if isinstance(last, Mapping) else _json_type(last)
        raise InputError(
            f"the last message must have role 'assistant' or 'nova_assistant', got {got!r}",
            row=row,
            field=f"messages[{len(messages) - 1}].role",
        )
    response = _content_text(last.get("content"), row, f"messages[{len(messages) - 1}].content")
    roles = _ROLES | _ASSISTANT_ROLES
    prompt = tuple(_parse_message(m, row, f"messages[{i}]", roles) for i, m in enumerate(messages[:-1]))
    return prompt, response


def _check_text(text: str, row: str | None, field: str) -> None:
    """Reject strings that cannot be sent on as UTF-8 (lone surrogates from `\\ud800` escapes)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError(f"not valid UTF-8 text ({exc.reason} at character {exc.start})", row=row, field=field) from None


def _check_metadata_text(metadata: Any, row: str | None) -> None:
    """`_check_text` for every string key and value in `metadata` (iterative; depth is checked first)."""
    stack: list[tuple[Any, str]] = [(metadata, "metadata")]
    while stack:
        node, here = stack.pop()
        if isinstance(node, str):
            _check_text(node, row, here)
        elif isinstance(node, Mapping):
            for key, value in node.items():
                if isinstance(key, str):
                    _check_text(key, row, f"{here} key")
                    stack.append((value, f"{here}.{key}"))
                else:
                    stack.append((value, f"{here}.{key}"))
        elif isinstance(node, (list, tuple)):
            stack.extend((value, f"{here}[{index}]") for index, value in enumerate(node))


def _json_type(value: Any) -> str:
    return {
        type(None): "null",
        bool: "boolean",
        int: "number",
        float: "number",
        str: "string",
        list: "array",
        dict: "object",
    }.get(type(value), type(value).__name__)
