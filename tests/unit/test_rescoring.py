"""The Ray-free parts of a rescore (farm.offline.rescoring), without starting Ray: row decoding,
a retry merged into its committed part, and the ownership fence on commits."""

import json
from pathlib import Path

import pytest

from farm.offline.plan import part_name
from farm.offline.rescoring import OWNER, commit_chunk, decode_chunk, encode_chunk, label_of
from farm.offline.store import OutputStore
from farm.wire import RewardResult, Verdict


def _result(rid: str, score: float | None) -> RewardResult:
    ok = score is not None
    verdict = Verdict(score=score, status="ok" if ok else "failed", error=None if ok else "boom")
    return RewardResult(id=rid, reward=score, status="ok" if ok else "failed", judges={"j": verdict}, flags=() if ok else ("judge_failed",))


def test_decode_chunk_keeps_valid_rows_and_records_invalid_ones() -> None:
    rows = [
        ("in.jsonl", 1, {"id": "a", "prompt": "p", "response": "r", "metadata": {"gold": 1}}),
        ("in.jsonl", 2, {"id": "b", "prompt": "p"}),
    ]
    rollouts, labels, errors = decode_chunk(rows, "gold")
    assert [r.id for r in rollouts] == ["a"] and labels == [1]
    assert errors[0]["source"] == "in.jsonl" and errors[0]["line"] == 2 and errors[0]["id"] == "b" and "response" in errors[0]["error"]
    assert label_of({"gold": 0, "metadata": {"gold": 1}}, "gold") == 0 and label_of({}, None) is None


def test_a_retry_replaces_only_its_rows_and_counts_attempts() -> None:
    first = encode_chunk([_result("a", 0.5), _result("b", None)], ["j"], None, "jsonl", None)
    merged = encode_chunk([_result("b", 1.0)], ["j"], None, "jsonl", first)
    rows = {d["id"]: d for d in (json.loads(line) for line in merged.splitlines())}
    assert rows["a"]["reward"] == 0.5 and rows["a"]["attempts"] == 1
    assert rows["b"]["reward"] == 1.0 and rows["b"]["attempts"] == 2


def test_commit_is_fenced_by_the_owning_run(tmp_path: Path) -> None:
    store = OutputStore(str(tmp_path / "out"))
    store.write(OWNER, b"new-run")
    with pytest.raises(RuntimeError, match="belongs to another run; not committing chunk 3"):
        commit_chunk(store, "old-run", 3, "jsonl", b"{}\n", b"", retry=False)
    assert store.read(part_name(3, "jsonl")) is None
    commit_chunk(store, "new-run", 3, "jsonl", b"{}\n", b'{"line": 1}\n', retry=False)
    assert store.read(part_name(3, "jsonl")) == b"{}\n" and store.read("errors/part-000003.jsonl") == b'{"line": 1}\n'
