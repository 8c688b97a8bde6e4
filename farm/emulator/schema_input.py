"""Tool input that satisfies a JSON schema, for forced tool calls the simulated judge cannot read.

Bedrock answers a forced `toolChoice.tool` with a `toolUse` block whose input fits the tool's
`inputSchema`; a client outside the farm's own prompt format (plain boto3, another framework)
must get the same from the emulator, not `{}`. The instance is deterministic for a given seed
and honours types, `required`, `enum`/`const`, numeric bounds, string and array lengths,
`anyOf`/`oneOf`/`allOf` and local `$ref`s.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import Any

__all__ = ["instance_for", "is_valid"]

_WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel")
_FORMATS = {
    "date-time": "2026-01-01T00:00:00Z",
    "date": "2026-01-01",
    "time": "00:00:00Z",
    "email": "judge@example.com",
    "uri": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "ipv4": "127.0.0.1",
}
_MAX_DEPTH = 12


def is_valid(instance: Any, schema: Mapping[str, Any]) -> bool:
    """Whether `instance` validates against `schema` (an invalid schema validates nothing)."""
    import jsonschema

    try:
        jsonschema.validators.validator_for(schema)(schema).validate(instance)
    except (jsonschema.ValidationError, jsonschema.SchemaError):
        return False
    return True


def instance_for(schema: Mapping[str, Any], seed: int = 0) -> Any:
    """An instance of `schema`; the top level of a tool's input is always an object."""
    value = _Generator(schema, random.Random(seed)).make(schema, 0)
    if not isinstance(value, dict) and schema.get("type", "object") == "object":
        return {}
    return value


class _Generator:
    def __init__(self, root: Mapping[str, Any], rng: random.Random):
        self.root = root
        self.rng = rng

    def resolve(self, schema: Mapping[str, Any]) -> Mapping[str, Any]:
        ref = schema.get("$ref")
        if not isinstance(ref, str) or not ref.startswith("#"):
            return schema
        node: Any = self.root
        for part in ref.lstrip("#/").split("/"):
            if not part:
                continue
            node = node.get(part.replace("~1", "/").replace("~0", "~"), {}) if isinstance(node, Mapping) else {}
        return node if isinstance(node, Mapping) else {}

    def make(self, schema: Any, depth: int) -> Any:
        if not isinstance(schema, Mapping):
            return {} if schema is not False else None
        schema = self.resolve(schema)
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return self.rng.choice(schema["enum"])
        for key in ("oneOf", "anyOf"):
            options = schema.get(key)
            if isinstance(options, list) and options:
                base = {k: v for k, v in schema.items() if k != key}
                return self.make({**base, **self.resolve(options[0])}, depth + 1)
        if isinstance(schema.get("allOf"), list):
            merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
            for part in schema["allOf"]:
                part = self.resolve(part) if isinstance(part, Mapping) else {}
                merged["properties"] = {**merged.get("properties", {}), **part.get("properties", {})}
                merged["required"] = [*merged.get("required", []), *part.get("required", [])]
                merged.update({k: v for k, v in part.items() if k not in ("properties", "required")})
            return self.make(merged, depth + 1)
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), kind[0] if kind else None)
        if kind is None:
            kind = "object" if "properties" in schema else "string"
        maker = getattr(self, f"_{kind}", None)
        return maker(schema, depth) if maker else None

    def _object(self, schema: Mapping[str, Any], depth: int) -> dict[str, Any]:
        properties = schema.get("properties") or {}
        required = [r for r in schema.get("required") or [] if isinstance(r, str)]
        out: dict[str, Any] = {}
        names = list(properties) if depth < _MAX_DEPTH else [n for n in properties if n in required]
        for name in names:
            out[name] = self.make(properties[name], depth + 1)
        for name in required:  # required but not described: any string will do
            out.setdefault(name, self.make(schema.get("additionalProperties") or {"type": "string"}, depth + 1))
        least = int(schema.get("minProperties", 0) or 0)
        extra = schema.get("additionalProperties", True)
        index = 0
        while len(out) < least and extra is not False:
            out[f"field_{index}"] = self.make(extra if isinstance(extra, Mapping) else {"type": "string"}, depth + 1)
            index += 1
        return out

    def _array(self, schema: Mapping[str, Any], depth: int) -> list[Any]:
        least = int(schema.get("minItems", 0) or 0)
        most = schema.get("maxItems")
        count = max(least, 1 if depth < _MAX_DEPTH else 0)
        if most is not None:
            count = min(count, int(most))
        prefix = schema.get("prefixItems") or []
        items = schema.get("items") or {}
        out = [self.make(prefix[i] if i < len(prefix) else items, depth + 1) for i in range(count)]
        if schema.get("uniqueItems") and count > 1:
            out = out[:1] + [v for v in out[1:] if v != out[0]]
        return out

    def _string(self, schema: Mapping[str, Any], _depth: int) -> str:
        fixed = _FORMATS.get(str(schema.get("format", "")))
        text = fixed if fixed is not None else " ".join(self.rng.choice(_WORDS) for _ in range(3))
        least = int(schema.get("minLength", 0) or 0)
        most = schema.get("maxLength")
        while len(text) < least:
            text += " " + self.rng.choice(_WORDS)
        if most is not None:
            text = text[: int(most)]
        return text[: max(least, len(text))]

    def _number(self, schema: Mapping[str, Any], _depth: int, integer: bool = False) -> float | int:
        low, high = _bounds(schema, integer)
        value = self.rng.uniform(low, high) if high > low else low
        step = schema.get("multipleOf")
        if isinstance(step, int | float) and step > 0:
            value = math.ceil(low / step) * step if low > -1e9 else step
        return int(math.floor(value)) if integer and high >= low else value

    def _integer(self, schema: Mapping[str, Any], depth: int) -> int:
        value = self._number(schema, depth, integer=True)
        return int(value)

    def _boolean(self, _schema: Mapping[str, Any], _depth: int) -> bool:
        return self.rng.random() < 0.5

    def _null(self, _schema: Mapping[str, Any], _depth: int) -> None:
        return None


def _bounds(schema: Mapping[str, Any], integer: bool) -> tuple[float, float]:
    """The closed range a value may take, from minimum/maximum and their exclusive forms."""
    nudge = 1 if integer else 1e-6
    low = schema.get("minimum")
    high = schema.get("maximum")
    ex_low, ex_high = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    if isinstance(ex_low, bool):  # draft 4: a flag on minimum
        ex_low = low if ex_low else None
    if isinstance(ex_high, bool):
        ex_high = high if ex_high else None
    lows = [float(v) for v in (low, None if ex_low is None else ex_low + nudge) if v is not None]
    highs = [float(v) for v in (high, None if ex_high is None else ex_high - nudge) if v is not None]
    lo = max(lows) if lows else (min(highs) - 100.0 if highs else 0.0)
    hi = min(highs) if highs else lo + 100.0
    if integer:
        lo, hi = math.ceil(lo), math.floor(hi)
    return float(lo), float(hi)
