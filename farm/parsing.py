"""Pure parsers for judge output: each returns a value or raises `ParseError` with the raw text.

`extract_json` finds a JSON object in free text and, when it is malformed, repairs the common
breakages (code fences, trailing commas, smart quotes, Python literals, output cut off by
`maxTokens`) and reports that it did.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from farm.config import Criterion
from farm.errors import ParseError

__all__ = ["PreferenceAnswer", "RankingAnswer", "RubricAnswer", "extract_json", "parse_preference", "parse_ranking", "parse_rubric"]

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)(?:```|$)", re.DOTALL)
_TRAILING_COMMA = re.compile(r",(\s*[}\]])")
_SMART_QUOTES = str.maketrans({"\u201c": '"', "\u201d": '"', "\u2018": "'", "\u2019": "'"})
_PY_LITERALS = {"True": "true", "False": "false", "None": "null"}


def extract_json(text: str) -> tuple[dict[str, Any], bool]:
    """The first JSON object in `text`, and whether it had to be repaired."""
    if not text or not text.strip():
        raise ParseError("the judge returned no text", raw=text)
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    for candidate in candidates:
        start = candidate.find("{")
        if start < 0:
            continue
        body = candidate[start:]
        strict = _first_object(body)
        if strict is not None:
            return strict, False
        repaired = _repair(body)
        try:
            value = json.loads(repaired)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value, True
    raise ParseError("no JSON object could be read from the judge's answer", raw=text)


def _first_object(body: str) -> dict[str, Any] | None:
    try:
        value, _ = json.JSONDecoder().raw_decode(body)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _repair(body: str) -> str:
    text = body.translate(_SMART_QUOTES)
    text = _replace_outside_strings(text)
    text = _TRAILING_COMMA.sub(r"\1", text)
    return _close_open(text)


def _replace_outside_strings(text: str) -> str:
    """Single-quoted strings to double-quoted, Python literals to JSON, outside JSON strings."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == '"':
            j = _string_end(text, i, '"')
            out.append(text[i:j])
            i = j
        elif ch == "'":
            j = _string_end(text, i, "'")
            inner = text[i + 1 : j - 1 if j <= n and text[j - 1 : j] == "'" else j]
            out.append(json.dumps(inner.replace("\\'", "'")))
            i = j
        elif ch.isalpha():
            j = i
            while j < n and (text[j].isalnum() or text[j] == "_"):
                j += 1
            word = text[i:j]
            out.append(_PY_LITERALS.get(word, word))
            i = j
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _string_end(text: str, start: int, quote: str) -> int:
    i = start + 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == quote:
            return i + 1
        i += 1
    return len(text)


def _close_open(text: str) -> str:
    """Close a string and the brackets left open by output that was cut off."""
    stack: list[str] = []
    in_string = False
    escaped = False
    for i, ch in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch == '"':
            in_string = True
        elif ch in "{[":
            stack.append("}" if ch == "{" else "]")
        elif ch in "}]":
            if stack:
                stack.pop()
            if not stack:
                return text[: i + 1]
    if in_string:
        text += '"'
    text = text.rstrip()
    if text.endswith(","):
        text = text[:-1]
    if text.endswith(":"):
        text += " null"
    return text + "".join(reversed(stack))


@dataclass(frozen=True)
class RubricAnswer:
    criteria: dict[str, float]
    """Each criterion normalised to [0, 1]."""
    score: float
    """The weighted mean of the criteria."""
    rationale: str


def parse_rubric(payload: Mapping[str, Any], criteria: Sequence[Criterion]) -> RubricAnswer:
    """Read per-criterion scores from a tool input or a parsed JSON answer.

    Accepts `{"crit": {"score": 4, "rationale": "..."}}`, `{"crit": 4}` and either nested under
    `"scores"` or `"criteria"`. Every configured criterion must be present and in range.
    """
    for key in ("scores", "criteria"):
        nested = payload.get(key)
        if isinstance(nested, Mapping) and all(c.name in nested for c in criteria):
            payload = nested
            break
    normalised: dict[str, float] = {}
    rationales: list[str] = []
    for criterion in criteria:
        if criterion.name not in payload:
            raise ParseError(f"criterion `{criterion.name}` missing from the judge's answer", raw=json.dumps(payload)[:2000])
        entry = payload[criterion.name]
        raw_score: Any = entry
        if isinstance(entry, Mapping):
            raw_score = entry.get("score", entry.get("value"))
            rationale = entry.get("rationale") or entry.get("reason") or ""
            if rationale:
                rationales.append(f"{criterion.name}: {rationale}")
        normalised[criterion.name] = _normalise(raw_score, criterion, payload)
    total_weight = sum(c.weight for c in criteria)
    score = sum(normalised[c.name] * c.weight for c in criteria) / total_weight
    overall = payload.get("rationale") if isinstance(payload.get("rationale"), str) else ""
    rationale = "\n".join([overall] + rationales if overall else rationales)
    return RubricAnswer(criteria=normalised, score=score, rationale=rationale)


def _normalise(value: Any, criterion: Criterion, payload: Mapping[str, Any]) -> float:
    raw = json.dumps(payload)[:2000]
    if criterion.scale == "boolean":
        if isinstance(value, bool):
            return 1.0 if value else 0.0
        if isinstance(value, str) and value.strip().lower() in {"yes", "true", "pass", "1"}:
            return 1.0
        if isinstance(value, str) and value.strip().lower() in {"no", "false", "fail", "0"}:
            return 0.0
        if isinstance(value, int | float) and value in (0, 1):
            return float(value)
        raise ParseError(f"criterion `{criterion.name}` needs yes/no, got {value!r}", raw=raw)
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise ParseError(f"criterion `{criterion.name}` needs a score 1-5, got {value!r}", raw=raw) from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 1 <= value <= 5:
        raise ParseError(f"criterion `{criterion.name}` needs a score 1-5, got {value!r}", raw=raw)
    return (float(value) - 1.0) / 4.0


@dataclass(frozen=True)
class PreferenceAnswer:
    winner: str
    """`A`, `B` or `tie`."""
    rationale: str


def parse_preference(payload: Mapping[str, Any]) -> PreferenceAnswer:
    value = payload.get("winner", payload.get("preferred", payload.get("better")))
    if not isinstance(value, str):
        raise ParseError(f"`winner` must be 'A', 'B' or 'tie', got {value!r}", raw=json.dumps(payload)[:2000])
    token = value.strip().strip("\"'").lower()
    token = {"a": "A", "response a": "A", "b": "B", "response b": "B", "tie": "tie", "equal": "tie", "draw": "tie"}.get(token, "")
    if not token:
        raise ParseError(f"`winner` must be 'A', 'B' or 'tie', got {value!r}", raw=json.dumps(payload)[:2000])
    rationale = payload.get("rationale") or payload.get("reason") or ""
    return PreferenceAnswer(winner=token, rationale=str(rationale))


@dataclass(frozen=True)
class RankingAnswer:
    ranking: tuple[str, ...]
    """Every label exactly once, best first."""
    rationale: str


_RANK_SPLIT = re.compile(r"\s*(?:>|,|;|\n)\s*")
_LABEL_NOISE = re.compile(r"(?i)^(?:response|item|#)\s*")


def parse_ranking(payload: Mapping[str, Any], labels: Sequence[str]) -> RankingAnswer:
    """Read a ranking (best first) that names every label exactly once.

    Accepts a list (`["2", 1, "Response 3"]`) or a string (`"2 > 1 > 3"`, `"2, 1, 3"`) under
    `ranking` (or `order`/`rank`). A missing, repeated or unknown label is a `ParseError`: a
    partial ranking would silently drop a rollout from its group's comparisons."""
    raw = json.dumps(payload)[:2000]
    value = payload.get("ranking", payload.get("order", payload.get("rank")))
    if isinstance(value, str):
        value = [part for part in _RANK_SPLIT.split(value.strip()) if part]
    if not isinstance(value, list):
        raise ParseError(f"`ranking` must be a list of the labels {', '.join(labels)}, got {value!r}", raw=raw)
    known = {label.lower(): label for label in labels}
    ranking: list[str] = []
    for item in value:
        token = _LABEL_NOISE.sub("", str(item).strip().strip("\"'")).strip().lower()
        label = known.get(token) or (known.get("r") if token in ("reference", "ref") else None)
        if label is None:
            raise ParseError(f"`ranking` names {item!r}, which is not one of {', '.join(labels)}", raw=raw)
        if label in ranking:
            raise ParseError(f"`ranking` names {label!r} twice", raw=raw)
        ranking.append(label)
    missing = [label for label in labels if label not in ranking]
    if missing:
        raise ParseError(f"`ranking` leaves out {', '.join(missing)}", raw=raw)
    rationale = payload.get("rationale") or payload.get("reason") or ""
    return RankingAnswer(ranking=tuple(ranking), rationale=str(rationale))
