"""The emulator's schema-valid tool input for forced tool calls it cannot read as a judge prompt."""

import pytest

from farm.emulator.schema_input import instance_for, is_valid

SCHEMAS = [
    {"type": "object", "properties": {"winner": {"type": "string", "enum": ["A", "B", "tie"]}}, "required": ["winner"]},
    {
        "type": "object",
        "properties": {
            "score": {"type": "integer", "minimum": 1, "maximum": 5},
            "p": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
            "ok": {"type": "boolean"},
            "tags": {"type": "array", "items": {"type": "string", "minLength": 3, "maxLength": 5}, "minItems": 2, "maxItems": 4},
            "nested": {"type": "object", "properties": {"id": {"const": 7}}, "required": ["id"], "additionalProperties": False},
            "when": {"type": "string", "format": "date-time"},
            "maybe": {"type": ["null", "integer"], "minimum": 10},
        },
        "required": ["score", "p", "ok", "tags", "nested", "missing"],
    },
    {"type": "object", "properties": {"choice": {"anyOf": [{"type": "integer", "multipleOf": 5, "minimum": 12}, {"type": "string"}]}}},
    {
        "type": "object",
        "$defs": {"c": {"type": "object", "properties": {"n": {"type": "integer", "maximum": -3}}, "required": ["n"]}},
        "properties": {"crit": {"$ref": "#/$defs/c"}},
        "required": ["crit"],
    },
    {"type": "object", "allOf": [{"properties": {"a": {"type": "string"}}, "required": ["a"]}, {"properties": {"b": {"type": "number"}}}]},
    {"type": "object", "minProperties": 2},
]


@pytest.mark.parametrize("schema", SCHEMAS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_instances_validate_against_their_schema(schema, seed):
    instance = instance_for(schema, seed)
    assert isinstance(instance, dict)
    assert is_valid(instance, schema), instance


def test_validation_can_fail():
    assert not is_valid({}, SCHEMAS[0])
    assert not is_valid({"winner": "C"}, SCHEMAS[0])
