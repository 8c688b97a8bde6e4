"""Rescore benchmark: N rows (the GSM8K rollouts replicated with new ids) scored by rule judges,
`farm rescore` on Ray against a plain single-process Python loop over the same rows, same run.

Reports rows/s of each and the peak RSS of the `farm rescore` driver process. Prints one JSON
document.

    python benchmarks/rescore.py --rows 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO, gsm8k_rollouts, print_report  # noqa: E402

RULES = """judges:
  - {name: answer, kind: final_answer}
  - {name: length, kind: length, min_chars: 10, max_chars: 4000}
  - {name: format, kind: regex, pattern: "A:\\\\s*-?[\\\\d,.]+\\\\s*$"}
cache: {enabled: false}
"""


def write_input(path: Path, rows: int) -> None:
    base = gsm8k_rollouts(10**9)
    with path.open("w") as handle:
        for i in range(rows):
            row = base[i % len(base)]
            handle.write(json.dumps({**row, "id": f"{row['id']}-r{i // len(base)}"}) + "\n")


def single_process_loop(source: Path, out: Path, config_path: Path) -> float:
    """The baseline: read, parse, run the same three rule judges, aggregate, write JSONL."""
    import asyncio

    from farm.config import load_config
    from farm.ensemble import Ensemble
    from farm.jsonl import LineError, read_rollouts
    from farm.wire import encode_result

    ensemble = Ensemble.from_config(load_config(config_path))
    started = time.monotonic()
    batch = []
    with out.open("wb") as handle:

        def flush() -> None:
            for result in asyncio.run(ensemble.score(batch)):
                handle.write(encode_result(result) + b"\n")
            batch.clear()

        n = 0
        for item in read_rollouts(source):
            if isinstance(item, LineError):
                continue
            batch.append(item)
            n += 1
            if len(batch) == 2000:
                flush()
        if batch:
            flush()
    return n / (time.monotonic() - started)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        work = Path(tmp)
        source = work / "rollouts.jsonl"
        write_input(source, args.rows)
        config = work / "rules.yaml"
        config.write_text(RULES)
        baseline = single_process_loop(source, work / "baseline.jsonl", config)
        command = [sys.executable, "-m", "farm.cli", "rescore", str(source), "--out", str(work / "out"), "--config", str(config)]
        command += ["--chunk-rows", str(args.chunk_rows), "--format", args.format]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        started = time.monotonic()
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.monotonic() - started
        stderr = process.stderr.read() if process.stderr else ""
        if status != 0:
            raise RuntimeError(f"farm rescore failed: {stderr[-2000:]}")
        summary = json.loads((work / "out.summary.json").read_text())
        assert summary["rows"] == args.rows, summary["rows"]
        farm_rate = args.rows / elapsed
        return {
            "benchmark": "rescore",
            "figure": "rows/s of `farm rescore` (whole command: Ray start, reading, scoring, writing, report) and its driver's peak RSS",
            "params": {**vars(args), "judges": ["final_answer", "length", "regex"], "cpus": os.cpu_count()},
            "farm_rescore": {
                "rows_per_s": round(farm_rate, 1),
                "elapsed_s": round(elapsed, 1),
                "driver_peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            },
            "baseline_single_process": {"rows_per_s": round(baseline, 1)},
            "ratio": {"farm_over_baseline": round(farm_rate / baseline, 3)},
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunk-rows", type=int, default=5000)
    parser.add_argument("--format", default="parquet", choices=["parquet", "jsonl"])
    parser.add_argument("--tmp", default=None, help="Directory for the input and outputs (needs ~2 GB for 1M rows).")
    args = parser.parse_args()
    print_report(lambda: measure(args))


if __name__ == "__main__":
    main()
