"""Results as files: one Parquet row (flattened) or one JSONL line per input row, and back."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import msgspec

from farm.cascade import escalated
from farm.wire import RewardResult

__all__ = ["ScoreColumns", "encode_part", "read_columns", "read_part_table", "results_table"]

_encode = msgspec.json.Encoder().encode
_JUDGE_FIELDS = ("score", "status", "error", "reason", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "cached")
_TOKENS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")
"""Token columns per judge: billed input, output, and prompt tokens read from / written to Bedrock's prompt cache."""


def results_table(
    results: Sequence[RewardResult], judges: Sequence[str], labels: Sequence[Any] | None = None, attempts: Sequence[int] | None = None
) -> Any:
    """A pyarrow Table: id, attempts, reward, status, disagreement, flags, judges (full JSON), and
    `judge.<name>.<field>` columns for analysis; `label` when given."""
    import pyarrow as pa

    columns: dict[str, Any] = {
        "id": pa.array([r.id for r in results], pa.string()),
        "attempts": pa.array(list(attempts) if attempts is not None else [1] * len(results), pa.int32()),
        "reward": pa.array([r.reward for r in results], pa.float64()),
        "status": pa.array([r.status for r in results], pa.string()),
        "disagreement": pa.array([r.disagreement for r in results], pa.float64()),
        "flags": pa.array([list(r.flags) for r in results], pa.list_(pa.string())),
        "judges": pa.array([_encode(r.judges).decode() for r in results], pa.string()),
        "escalation": pa.array([None if r.escalation is None else _encode(r.escalation).decode() for r in results], pa.string()),
    }
    types = {
        "score": pa.float64(),
        "status": pa.string(),
        "error": pa.string(),
        "reason": pa.string(),
        "input_tokens": pa.int64(),
        "output_tokens": pa.int64(),
        "cache_read_tokens": pa.int64(),
        "cache_write_tokens": pa.int64(),
        "cached": pa.bool_(),
    }
    for name in judges:
        verdicts = [r.judges.get(name) for r in results]
        for field in _JUDGE_FIELDS:
            columns[f"judge.{name}.{field}"] = pa.array([getattr(v, field) if v is not None else None for v in verdicts], types[field])
    if labels is not None:
        columns["label"] = pa.array([_label(v) for v in labels], pa.float64())
    return pa.table(columns)


def _label(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool | int | float):
        return float(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "1", "correct", "chosen"):
        return 1.0
    if isinstance(value, str) and value.strip().lower() in ("false", "no", "0", "incorrect", "rejected"):
        return 0.0
    return None


def encode_part(
    results: Sequence[RewardResult],
    judges: Sequence[str],
    labels: Sequence[Any] | None,
    fmt: str,
    attempts: Sequence[int] | None = None,
) -> bytes:
    """One part file's bytes (Parquet, or JSONL with `attempts` and `label` added to each result)."""
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        sink = pa.BufferOutputStream()
        pq.write_table(results_table(results, judges, labels, attempts), sink, compression="zstd")
        return sink.getvalue().to_pybytes()
    lines = []
    for index, result in enumerate(results):
        line = _encode(result)[:-1] + b',"attempts":' + str(attempts[index] if attempts is not None else 1).encode()
        if labels is not None:
            line += b',"label":' + json.dumps(_label(labels[index])).encode()
        lines.append(line + b"}\n")
    return b"".join(lines)


def read_part_table(data: bytes, fmt: str, columns: Sequence[str] | None = None) -> Any:
    """A part file's bytes back as a pyarrow Table (JSONL parts keep id, attempts, flags, judges)."""
    import pyarrow as pa

    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.read_table(pa.BufferReader(data), columns=list(columns) if columns else None)
    rows = [msgspec.json.decode(line) for line in data.splitlines() if line.strip()]
    table = pa.table(
        {
            "id": [r["id"] for r in rows],
            "attempts": pa.array([r.get("attempts", 1) for r in rows], pa.int32()),
            "flags": pa.array([r.get("flags") or [] for r in rows], pa.list_(pa.string())),
            "judges": [json.dumps(r.get("judges") or {}) for r in rows],
        }
    )
    return table.select(list(columns)) if columns else table


class ScoreColumns:
    """What the report needs, accumulated part by part in compact arrays (NaN = no value), so that
    a million rows cost tens of megabytes in the driver, not gigabytes of Python objects."""

    def __init__(self, judges: Sequence[str]):
        self.judges = list(judges)
        self.rows = 0
        self.reward: list[Any] = []
        self.label: list[Any] = []
        self.status: Counter[str] = Counter()
        self.flags: Counter[str] = Counter()
        self.score: dict[str, list[Any]] = {n: [] for n in judges}
        self.judge_status: dict[str, Counter[str]] = {n: Counter() for n in judges}
        self.reasons: dict[str, Counter[str]] = {n: Counter() for n in judges}
        self.tokens: dict[str, list[int]] = {n: [0] * len(_TOKENS) for n in judges}
        """Per judge, tokens of the calls it made (cached verdicts spent none), in `_TOKENS` order."""
        self.escalated = 0
        """Rows for which the cost cascade called a judge beyond the cheapest tier."""
        self.escalation: dict[str, Counter[str]] = {}
        """Per judge, the cascade's record counted (ran, not_needed, or why it was called)."""

    def add(self, part: dict[str, Any]) -> None:
        """One part's columns: numpy arrays for numbers, lists for the rest."""
        from farm.judges.base import reason_for

        self.rows += len(part["status"])
        self.reward.append(part["reward"])
        self.label.append(part["label"])
        self.status.update(part["status"])
        for flags in part["flags"]:
            self.flags.update(flags or ())
        for record in part.get("escalation") or ():
            self.escalated += escalated(record)
            for name, reason in (record or {}).items():
                self.escalation.setdefault(name, Counter())[reason] += 1
        for name in self.judges:
            self.score[name].append(part[f"{name}.score"])
            statuses = part[f"{name}.status"]
            self.judge_status[name].update(s for s in statuses if s is not None)
            self.reasons[name].update(
                r
                for r in (
                    reason_for(s or "", e, k) for s, e, k in zip(statuses, part[f"{name}.error"], part[f"{name}.reason"], strict=True)
                )
                if r
            )
            fresh = ~part[f"{name}.cached"]
            for i, kind in enumerate(_TOKENS):
                spent = part.get(f"{name}.{kind}")  # None: a part read by an older reader, without cache columns
                self.tokens[name][i] += 0 if spent is None else int(spent[fresh].sum())

    def arrays(self) -> tuple[Any, Any, dict[str, Any]]:
        """(reward, label, {judge: score}) as aligned float arrays."""
        import numpy as np

        def joined(chunks: list[Any]) -> Any:
            return np.concatenate(chunks) if chunks else np.zeros(0)

        return joined(self.reward), joined(self.label), {n: joined(c) for n, c in self.score.items()}


def read_columns(parts: Iterable[bytes | Path], judges: Sequence[str], fmt: str = "parquet") -> ScoreColumns:
    """The report's columns from part files (their bytes, or local paths)."""
    out = ScoreColumns(judges)
    for part in parts:
        if isinstance(part, Path):
            fmt, part = ("parquet" if part.suffix == ".parquet" else "jsonl"), part.read_bytes()
        out.add(_parquet_part(part, judges) if fmt == "parquet" else _jsonl_part(part, judges))
    return out


def _floats(values: Any) -> Any:
    import numpy as np

    return np.array([np.nan if v is None else v for v in values], dtype=float) if isinstance(values, list) else values


def _parquet_part(part: bytes, judges: Sequence[str]) -> dict[str, Any]:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(pa.BufferReader(part))
    n = table.num_rows

    def numbers(name: str, fill: float = np.nan) -> Any:
        if name not in table.column_names:
            return np.full(n, fill)
        return table.column(name).to_numpy(zero_copy_only=False).astype(float)

    out: dict[str, Any] = {
        "reward": numbers("reward"),
        "label": numbers("label"),
        "status": table.column("status").to_pylist(),
        "flags": table.column("flags").to_pylist(),
        "escalation": [None if e is None else json.loads(e) for e in table.column("escalation").to_pylist()]
        if "escalation" in table.column_names
        else [],
    }
    for name in judges:
        out[f"{name}.score"] = numbers(f"judge.{name}.score")
        out[f"{name}.status"] = table.column(f"judge.{name}.status").to_pylist()
        out[f"{name}.error"] = table.column(f"judge.{name}.error").to_pylist()
        reasons = f"judge.{name}.reason"  # absent from parts written before verdicts carried a reason
        out[f"{name}.reason"] = table.column(reasons).to_pylist() if reasons in table.column_names else [None] * n
        for kind in _TOKENS:  # cache columns are absent from parts written before they existed: 0
            out[f"{name}.{kind}"] = np.nan_to_num(numbers(f"judge.{name}.{kind}", 0)).astype(np.int64)
        out[f"{name}.cached"] = np.nan_to_num(numbers(f"judge.{name}.cached", 0)).astype(bool)
    return out


def _jsonl_part(part: bytes, judges: Sequence[str]) -> dict[str, Any]:
    import numpy as np

    decoder = msgspec.json.Decoder()
    rows = [decoder.decode(line) for line in part.splitlines() if line.strip()]
    out: dict[str, Any] = {
        "reward": _floats([r.get("reward") for r in rows]),
        "label": _floats([r.get("label") for r in rows]),
        "status": [r.get("status") for r in rows],
        "flags": [r.get("flags") for r in rows],
        "escalation": [r.get("escalation") for r in rows],
    }
    for name in judges:
        verdicts = [(r.get("judges") or {}).get(name) or {} for r in rows]
        out[f"{name}.score"] = _floats([v.get("score") for v in verdicts])
        out[f"{name}.status"] = [v.get("status") for v in verdicts]
        out[f"{name}.error"] = [v.get("error") for v in verdicts]
        out[f"{name}.reason"] = [v.get("reason") for v in verdicts]
        for kind in _TOKENS:
            out[f"{name}.{kind}"] = np.array([v.get(kind) or 0 for v in verdicts], dtype=np.int64)
        out[f"{name}.cached"] = np.array([bool(v.get("cached")) for v in verdicts], dtype=bool)
    return out
