"""Wire types: the only values that cross process, Ray and HTTP boundaries.

Frozen msgspec Structs, evolved by adding fields with defaults (never by changing a field's
type). `parse_rollout` is the one decoder every entry point uses (HTTP, the Serve handle, CLI
files, adapters): msgspec converts a row into a typed, constrained Struct (the plain rollout form
or Nova RFT's reward-Lambda sample form) and `input_error` turns msgspec's error into the farm's
`InputError` naming the row and the field. `decode_json` and `check_depth` hold the limits checked
once at the door (nesting depth, text that is not UTF-8); `MAX_TEXT_CHARS` and `MAX_ID_CHARS`
bound each string.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

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
    "MAX_ID_CHARS",
    "MAX_TEXT_CHARS",
    "Verdict",
    "check_depth",
    "decode_json",
    "decode_results",
    "encode_result",
    "input_error",
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
    reason: str | None = None
    """Why the status is not `ok`: a `farm.flags.FailureReason` value (None when ok, and in results
    written before the field existed); `error` keeps the human text. Typed `str` on the wire so
    that a reader older than a newly added reason still decodes the result."""
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
    escalation: dict[str, str] | None = None
    """With the cost cascade on (`aggregation.escalate`): per judge, `ran` (cheapest tier),
    `not_needed`, or why it was called (`no_reference`, `undecided`, `disagree`, `uncertain`,
    `group`, `forced`); see `farm.cascade.Reason`. None when the cascade is off."""


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


MAX_TEXT_CHARS = 1_000_000
"""Longest prompt, response, message or reference text a rollout may carry (judges read at most
`max_response_chars` of it; a bigger string is a mistake or an attack, refused naming the field)."""
MAX_ID_CHARS = 1024
"""Longest `id` or `group` (they appear in logs, manifests and cache keys)."""

_Text = Annotated[str, msgspec.Meta(max_length=MAX_TEXT_CHARS)]
_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_CHARS)] | int
_Group = Annotated[str, msgspec.Meta(max_length=MAX_ID_CHARS)] | int | None
_JsonValue = _Text | int | float | bool | None | list[Any] | dict[str, Any]
_Role = Literal["system", "user", "assistant"]
_AnyRole = Literal["system", "user", "assistant", "nova_assistant"]


class _TextBlock(msgspec.Struct):
    """A content block in Converse (`{"text"}`) or OpenAI (`{"type": "text", "text"}`) form."""

    text: _Text


_Content = _Text | list[_TextBlock]


class _MessageIn(msgspec.Struct):
    role: _Role
    content: _Content


class _TurnIn(msgspec.Struct):
    role: _AnyRole
    content: _Content


class _PlainRow(msgspec.Struct, kw_only=True):
    """The plain rollout form. Unknown fields are ignored (a trainer's extra columns ride along)."""

    id: _Id
    prompt: _Text | Annotated[list[_MessageIn], msgspec.Meta(min_length=1)]
    response: _Text
    reference: _JsonValue = None
    group: _Group = None
    metadata: dict[str, Any] | None = None


class _RftRow(msgspec.Struct, kw_only=True):
    """Nova RFT's reward-Lambda sample: the last of `messages` is the response."""

    id: _Id
    messages: Annotated[list[_TurnIn], msgspec.Meta(min_length=2)]
    reference_answer: _JsonValue = None
    group: _Group = None
    metadata: dict[str, Any] | None = None


def parse_rollout(obj: Any, *, where: str | None = None, max_depth: int = DEFAULT_MAX_DEPTH) -> Rollout:
    """Validate one rollout in either accepted form, by msgspec's typed conversion.

    `where` names the row when the object has no usable id (a line number, a list index).
    Nesting deeper than `max_depth` is refused here, not by a pickling error in a judge later.
    Every refusal is an `InputError` naming the row and the field.
    """
    if isinstance(obj, Rollout):
        check_depth(obj.metadata, max_depth - 1, where=where, path="metadata")
        return _checked_text(obj, _row_name({"id": obj.id}, where))
    if not isinstance(obj, Mapping):
        raise InputError(f"a rollout must be a JSON object, got {_json_type(obj)}", row=where)
    row = _row_name(obj, where)
    check_depth(obj, max_depth, where=row)
    kind: type[_RftRow | _PlainRow] = _RftRow if "messages" in obj and "response" not in obj else _PlainRow
    try:
        typed = msgspec.convert(obj, kind)
    except msgspec.ValidationError as exc:
        raise input_error(exc, row=row) from None
    metadata = typed.metadata or {}
    prompt: str | tuple[Message, ...]
    reference: Any
    if isinstance(typed, _RftRow):
        prompt, response = _split_rft(typed.messages, row)
        reference = typed.reference_answer if typed.reference_answer is not None else metadata.get("reference_answer")
    else:
        prompt = typed.prompt if isinstance(typed.prompt, str) else tuple(_message(m) for m in typed.prompt)
        response, reference = typed.response, typed.reference
    rollout = Rollout(
        id=str(typed.id),
        prompt=prompt,
        response=response,
        reference=reference if reference is None or isinstance(reference, str) else json.dumps(reference, ensure_ascii=False),
        group=None if typed.group is None else str(typed.group),
        metadata=metadata,
    )
    return _checked_text(rollout, row)


def input_error(exc: msgspec.ValidationError, *, row: str | None = None, prefix: str = "") -> InputError:
    """The farm's `InputError` for a msgspec validation error: msgspec's JSON path becomes the
    field (a missing field's name included), its wording becomes "must be ..., got ..." in JSON's
    type names. `prefix` places the path inside a bigger document (`query`, `rollouts[3]`)."""
    message, _, at = str(exc).partition(" - at `")
    path = ""
    if at:
        in_key = at.startswith("key` in `")
        path = at.removeprefix("key` in `").rstrip("`").removeprefix("$").removeprefix(".")
        message += " (an object key)" if in_key else ""
    missing = re.fullmatch(r"Object missing required field `(.+)`", message)
    if missing:
        path = f"{path}.{missing.group(1)}" if path else missing.group(1)
        message = "missing required field"
    if prefix:
        path = f"{prefix}{path}" if path.startswith("[") or not path else f"{prefix}.{path}"
    return InputError(_plain(message, path), row=row, field=path or None)


_KINDS = {
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "a boolean",
    "null": "null",
    "array": "an array",
    "object": "an object",
}


def _kinds(names: str) -> str:
    words = [_KINDS.get(n.strip(), f"`{n.strip()}`") for n in names.split("|")]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def _plain(message: str, path: str) -> str:
    """msgspec's wording, in the words of a JSON document's author."""
    if found := re.fullmatch(r"Expected `([^`]+)`, got `([^`]+)`(.*)", message):
        return f"must be {_kinds(found.group(1))}, got {_kinds(found.group(2)).removeprefix('a ').removeprefix('an ')}{found.group(3)}"
    if found := re.fullmatch(r"Expected `(str|array)` of length ([<>]=) (\d+)", message):
        kind, op, size = found.groups()
        unit = "characters" if kind == "str" else "items"
        if op == ">=" and size == "1":
            return f"must be a non-empty {'string' if kind == 'str' else 'array'}"
        return f"must be {_kinds(kind)} of {'at least' if op == '>=' else 'at most'} {size} {unit}"
    if found := re.fullmatch(r"Invalid enum value (.+)", message):
        roles = _ASSISTANT_ROLES | _ROLES if path.startswith("messages") else _ROLES
        what = f"one of {sorted(roles)}" if path.endswith("role") else "one of the accepted values"
        return f"must be {what}, got {found.group(1)}"
    return message


def _message(message: _MessageIn | _TurnIn) -> Message:
    content = message.content if isinstance(message.content, str) else "\n".join(b.text for b in message.content)
    return Message(role="assistant" if message.role == "nova_assistant" else message.role, content=content)


def _split_rft(messages: list[_TurnIn], row: str | None) -> tuple[tuple[Message, ...], str]:
    last = messages[-1]
    if last.role not in _ASSISTANT_ROLES:
        raise InputError(
            f"the last message must have role 'assistant' or 'nova_assistant', got {last.role!r}",
            row=row,
            field=f"messages[{len(messages) - 1}].role",
        )
    return tuple(_message(m) for m in messages[:-1]), _message(last).content


def _checked_text(rollout: Rollout, row: str | None) -> Rollout:
    """Refuse strings that cannot be sent on as UTF-8 (lone surrogates from `\\ud800` escapes):
    one encode in C, and a walk to name the field only when it fails."""
    try:
        _encoder.encode(rollout)
    except UnicodeEncodeError:
        _check_text(rollout.response, row, "response")
        _check_text(rollout.reference or "", row, "reference")
        if isinstance(rollout.prompt, str):
            _check_text(rollout.prompt, row, "prompt")
        else:
            for i, m in enumerate(rollout.prompt):
                _check_text(m.content, row, f"prompt[{i}].content")
        _check_text(rollout.id, row, "id")
        _check_text(rollout.group or "", row, "group")
        _check_metadata_text(rollout.metadata, row)
        raise InputError("not valid UTF-8 text", row=row) from None
    return rollout


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


def decode_json(data: bytes, *, max_depth: int = DEFAULT_MAX_DEPTH, where: str | None = None, what: str = "body") -> Any:
    """Decode a request body (or one JSONL line: `what="line"`, `where` its name), with errors that
    say what is wrong: `InputError` for nesting beyond `max_depth` (naming the field) and for
    malformed JSON (with the position). A lone surrogate escape (`"\\ud800"`) decodes, so that the
    row check can name the field that holds it."""
    try:
        value = msgspec.json.decode(data)
    except RecursionError:
        raise _too_deep(_scan_too_deep(data, max_depth), max_depth, where) from None
    except msgspec.DecodeError as exc:
        value = _decode_stdlib(data, exc, max_depth, where, what)
    check_depth(value, max_depth, where=where)
    return value


def _decode_stdlib(data: bytes, exc: msgspec.DecodeError, max_depth: int, where: str | None, what: str) -> Any:
    """msgspec refuses lone surrogates with a misleading "truncated"; the stdlib parser tells the truth."""
    try:
        return json.loads(data, parse_constant=_refuse_constant)
    except RecursionError:
        raise _too_deep(_scan_too_deep(data, max_depth), max_depth, where) from None
    except json.JSONDecodeError as err:
        raise InputError(f"{what} is not valid JSON: {err.msg} at line {err.lineno} column {err.colno}", row=where) from None
    except UnicodeDecodeError:
        raise InputError(f"{what} is not valid JSON: {exc}", row=where) from None
    except InputError as err:  # NaN / Infinity
        raise InputError(str(err).replace("body", what, 1), row=where) from None


def _refuse_constant(name: str) -> Any:
    """`NaN`, `Infinity` and `-Infinity` are not JSON; msgspec refuses them, and so must the fallback."""
    raise InputError(f"body is not valid JSON: {name} is not a JSON number")


def _row_name(obj: Mapping[str, Any], where: str | None) -> str | None:
    rollout_id = obj.get("id")
    if isinstance(rollout_id, str) and rollout_id:
        return f"{rollout_id!r}" + (f" ({where})" if where else "")
    return where


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
