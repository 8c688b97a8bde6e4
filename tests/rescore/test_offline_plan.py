"""Rescore bookkeeping without Ray: content fingerprints, the manifest check, the output store
(local and S3) and the choice of rows to retry."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from farm.config import parse_config
from farm.errors import ConfigError
from farm.offline.plan import MANIFEST, build_manifest, prepare_output, retryable_ids
from farm.offline.reader import describe_inputs, fingerprint
from farm.offline.store import OutputStore

RULES = parse_config({"judges": [{"name": "answer", "kind": "final_answer"}]})


def test_same_size_edit_with_the_old_mtime_changes_the_fingerprint(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"id": "a", "prompt": "p", "response": "A: 1"}\n')
    stat = source.stat()
    before = fingerprint(describe_inputs([str(source)]))
    source.write_text('{"id": "a", "prompt": "p", "response": "A: 2"}\n')  # same size
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # and the old mtime
    files = describe_inputs([str(source)])
    assert files[0].size == stat.st_size and files[0].mtime == pytest.approx(stat.st_mtime)
    assert fingerprint(files) != before

    out = OutputStore(str(tmp_path / "out"))
    source.write_text('{"id": "a", "prompt": "p", "response": "A: 1"}\n')
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert prepare_output(out, build_manifest(describe_inputs([str(source)]), RULES, 10, "parquet", None), resume=False) == set()
    source.write_text('{"id": "a", "prompt": "p", "response": "A: 2"}\n')
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(ConfigError, match="inputs_fingerprint changed"):
        prepare_output(out, build_manifest(describe_inputs([str(source)]), RULES, 10, "parquet", None), resume=True)


def test_local_store_writes_atomically_and_lists_parts(tmp_path: Path) -> None:
    store = OutputStore(str(tmp_path / "out"))
    assert store.is_empty()
    store.write("part-000001.parquet", b"x")
    store.write("errors/part-000001.jsonl", b"{}\n")
    (tmp_path / "out" / "part-000002.parquet.1234abcd.tmp").write_bytes(b"half")  # a killed writer's leftover
    assert store.list("part-", ".parquet") == ["part-000001.parquet"]
    assert store.list("part-", ".jsonl", folder="errors") == ["errors/part-000001.jsonl"]
    assert store.remove_stale() == 1 and not list((tmp_path / "out").glob("*.tmp"))
    store.sibling(".summary.json").write("", b"{}")
    assert (tmp_path / "out.summary.json").read_bytes() == b"{}" and store.read("missing") is None


def test_prepare_output_refuses_foreign_directories_and_counts_committed_chunks(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "x.txt").write_text("mine")
    manifest = {"format": "parquet", "chunk_rows": 5}
    with pytest.raises(ConfigError, match="already holds results"):
        prepare_output(OutputStore(str(foreign)), manifest, resume=False)
    with pytest.raises(ConfigError, match=f"no {MANIFEST}"):
        prepare_output(OutputStore(str(foreign)), manifest, resume=True)
    store = OutputStore(str(tmp_path / "run"))
    assert prepare_output(store, manifest, resume=False) == set()
    store.write("part-000000.parquet", b"p")
    store.write("part-000007.parquet", b"p")
    assert prepare_output(store, manifest, resume=True) == {0, 7}
    assert json.loads(store.read(MANIFEST) or b"{}") == manifest


def test_retryable_rows_are_those_with_a_failed_judge() -> None:
    import pyarrow as pa

    table = pa.table({"id": ["a", "b", "c", "d"], "flags": [[], ["judge_failed", "quorum_missed"], ["empty_response"], ["judge_failed"]]})
    assert retryable_ids(table) == ["b", "d"]


@pytest.mark.integration
def test_s3_store_round_trip(s3_env) -> None:
    store = OutputStore(f"s3://{s3_env.bucket}/unit-store")
    assert store.is_empty()
    store.write("part-000003.jsonl", b'{"id": "x"}\n')
    store.sibling(".summary.json").write("", b"{}")
    assert store.list("part-", ".jsonl") == ["part-000003.jsonl"] and store.read("part-000003.jsonl") == b'{"id": "x"}\n'
    assert s3_env.keys("unit-store") == ["unit-store.summary.json", "unit-store/part-000003.jsonl"]
    store.delete("part-000003.jsonl")
    assert store.list("part-") == [] and store.remove_stale() == 0
