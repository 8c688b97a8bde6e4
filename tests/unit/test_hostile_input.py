"""Hostile rows through a CLI file: `farm score` (in process, rule judge only) reports each bad line
with the field that is wrong, scores the rest, and ignores unknown fields as it always has. The
same rows through HTTP are in tests/serve/test_security.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from farm.cli import main
from farm.errors import InputError
from farm.wire import MAX_ID_CHARS, MAX_TEXT_CHARS, parse_rollout

OK = {"id": "fine", "prompt": "p", "response": "a fine answer", "unknown": {"junk": [1, 2]}}

HOSTILE: list[tuple[dict | bytes, str, str]] = [  # (row, field named, words in the error)
    ({"id": "t1", "prompt": "p", "response": 5}, "response", "must be a string, got integer"),
    ({"id": "t2", "prompt": {"role": "user"}, "response": "r"}, "prompt", "must be a string or an array, got object"),
    ({"id": True, "prompt": "p", "response": "r"}, "id", "got boolean"),
    ({"id": "t4", "prompt": "p", "response": "r", "group": {"a": 1}}, "group", "got object"),
    (
        {"id": "t5", "prompt": [{"role": "user", "content": [{"text": {"x": [1]}}]}], "response": "r"},
        "prompt[0].content[0].text",
        "got object",
    ),
    ({"id": "t6", "prompt": [{"role": "root", "content": "c"}], "response": "r"}, "prompt[0].role", "must be one of"),
    ({"id": "t7", "prompt": "p", "response": "x" * (MAX_TEXT_CHARS + 1)}, "response", f"at most {MAX_TEXT_CHARS} characters"),
    ({"id": "i" * (MAX_ID_CHARS + 1), "prompt": "p", "response": "r"}, "id", f"at most {MAX_ID_CHARS} characters"),
    ({"id": "t9", "prompt": "p", "response": "r", "metadata": {"k": json.loads("[" * 80 + "]" * 80)}}, "metadata.k", "nested deeper"),
    ({"id": "t10", "messages": [{"role": "user", "content": "q"}]}, "messages", "at least 2 items"),
    ({"id": "t11", "prompt": "p", "response": "r", "metadata": [1]}, "metadata", "must be an object or null, got array"),
    (b'{"id": "t12", "prompt": "p", "response": "\\ud800"}', "response", "not valid UTF-8"),
]


def _line(row: dict | bytes) -> bytes:
    return row if isinstance(row, bytes) else json.dumps(row).encode()


@pytest.mark.parametrize(("row", "field", "words"), HOSTILE, ids=[f"{f}:{w[:20]}" for _, f, w in HOSTILE])
def test_the_decoder_names_the_field(row, field, words):
    obj = json.loads(row) if isinstance(row, bytes) else row
    with pytest.raises(InputError) as info:
        parse_rollout(obj, where="line 3")
    assert info.value.field is not None and info.value.field.startswith(field), str(info.value)
    assert words in str(info.value) and f"field `{info.value.field}`" in str(info.value)


def test_a_cli_file_of_hostile_rows_names_each_field(tmp_path: Path):
    lines = [_line(OK), *(_line(row) for row, _, _ in HOSTILE), b'{"id": "deep", "metadata": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"]
    source, out, config = tmp_path / "in.jsonl", tmp_path / "out.jsonl", tmp_path / "farm.yaml"
    source.write_bytes(b"\n".join(lines) + b"\n")
    config.write_text(yaml.safe_dump({"judges": [{"name": "length", "kind": "length", "min_chars": 1}]}))
    run = CliRunner().invoke(main, ["score", str(source), "--config", str(config), "--out", str(out)])
    assert run.exit_code == 1, run.output  # bad rows make the run fail loudly, after scoring the rest
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["fine"]  # unknown fields ride along, ignored
    errors = {e["line"]: e["error"] for e in map(json.loads, (tmp_path / "out.jsonl.errors.jsonl").read_text().splitlines())}
    assert set(errors) == set(range(2, len(lines) + 1))
    for number, (_, field, words) in enumerate(HOSTILE, start=2):
        assert f"field `{field}" in errors[number] and words in errors[number], (number, errors[number])
        assert f"line {number}" in errors[number]
    deepest = errors[len(lines)]  # 50,000 levels: refused with its path, not a RecursionError
    assert "field `metadata[0][0]" in deepest and "nested deeper than the limit" in deepest
