"""`max_tokens: auto` on one GRPO step: maxTokens sized from measured output against the fixed limits.

The step of `benchmarks/grpo_step.py` (512 GSM8K rollouts in 64 groups of 8, `farm score` with the
packaged default ensemble in its own process, `farm emulator --latency-ms 300` enforcing `--rpm` /
`--tpm` per model), twice against a freshly reset emulator:

- sized: the packaged default, `max_tokens: auto` (warm-up at the ceiling, then p99 x 1.5);
  with `--warmup-wait-s S` also a third run where calls beyond the warm-up wait up to S for it;
- baseline: the same ensemble with `maxTokens` pinned at the former fixed defaults
  (rubric 512, preference 384).

Per run: step seconds, the span the emulator was busy, 429s, calls, and per judge and kind of call
the output tokens the emulator wrote (p50/p99/max), the `maxTokens` sent at the end and on average,
calls sent at the ceiling, answers cut off and asked again. `--verbosity N` makes the emulator's
judge write about N more rationale tokens per answer (0.5-1.5 x N): the emulator's own answers are
terse (tens of tokens); real Nova writes differently, and this figure does not measure Nova.

    python benchmarks/max_tokens.py --rpm 20000             # 4M tpm: tokens bind
    python benchmarks/max_tokens.py --rpm 2000              # requests bind
    python benchmarks/max_tokens.py --rpm 20000 --verbosity 150
    python benchmarks/max_tokens.py --rpm 20000 --warmup-wait-s 2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import print_report  # noqa: E402
from benchmarks.grpo_step import config_file, run_step, step_arguments, step_rollouts  # noqa: E402
from benchmarks.quota import start_emulator, watchdog  # noqa: E402

PINNED = {"rubric": 512, "preference": 384}
"""The fixed defaults before `max_tokens: auto`."""


def pinned_config(directory: Path, rpm: int, tpm: int) -> Path:
    path = config_file(directory, rpm, tpm, baseline=False)
    raw = json.loads(path.read_text())
    raw["judges"] = [{**j, "max_tokens": PINNED[j["kind"]]} if j.get("kind") in PINNED else j for j in raw["judges"]]
    out = directory / "pinned.yaml"
    out.write_text(json.dumps(raw))
    return out


def waiting_config(directory: Path, rpm: int, tpm: int, wait_s: float) -> Path:
    path = config_file(directory, rpm, tpm, baseline=False)
    raw = json.loads(path.read_text())
    raw["judges"] = [{**j, "max_tokens_auto": {"warmup_wait_s": wait_s}} if j.get("kind") in PINNED else j for j in raw["judges"]]
    out = directory / "waiting.yaml"
    out.write_text(json.dumps(raw))
    return out


def reserved_output(tokens: dict[str, Any]) -> float | None:
    """Mean `maxTokens` sent per call over every judge and kind: the output share of each reservation."""
    calls = sent = 0.0
    for kinds in tokens.values():
        for seen in kinds.values():
            n = seen["answers"] + seen["cut_off"]
            calls += n
            sent += seen["mean_max_tokens_sent"] * n
    return round(sent / calls, 1) if calls else None


def summary_tokens(workdir: Path, config: Path) -> dict[str, Any]:
    """The `max_tokens` section of the run's `farm score` summary: output tokens per judge and kind."""
    summary = json.loads((workdir / f"{config.stem}.jsonl.summary.json").read_text())
    return summary.get("max_tokens", {})


def patch_emulator(url: str, patch: dict[str, Any]) -> None:
    request = urllib.request.Request(f"{url}/_emulator/settings", method="POST", data=json.dumps(patch).encode())
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


def measure(args: argparse.Namespace) -> dict[str, Any]:
    for name, value in (("AWS_ACCESS_KEY_ID", "benchmark"), ("AWS_SECRET_ACCESS_KEY", "benchmark"), ("AWS_EC2_METADATA_DISABLED", "true")):
        os.environ.setdefault(name, value)
    emulator_args = argparse.Namespace(rpm=args.rpm, tpm=args.tpm, latency_ms=args.latency_ms, emulator_burst_s=args.burst_s, faults=[])
    process, url = start_emulator(emulator_args)
    timer = watchdog(args.timeout_s, process.kill)
    rows = step_rollouts(args.groups, args.group_size)
    runs: dict[str, Any] = {}
    try:
        if args.verbosity:
            patch_emulator(url, {"judge": {"verbosity": args.verbosity}})
        with tempfile.TemporaryDirectory() as tmp:
            directory = Path(tmp)
            source = directory / "step.jsonl"
            source.write_text("".join(json.dumps(r) + "\n" for r in rows))
            sized = config_file(directory, args.rpm, args.tpm, baseline=False)
            pinned = pinned_config(directory, args.rpm, args.tpm)
            plan = [("sized", sized), ("baseline_pinned", pinned)]
            if args.warmup_wait_s:
                plan.append(("sized_warmup_wait", waiting_config(directory, args.rpm, args.tpm, args.warmup_wait_s)))
            for label, config in plan:
                run = run_step(url, source, config, directory, len(rows))
                run["output_tokens"] = summary_tokens(directory, config) if "error" not in run else {}
                run["mean_max_tokens_sent_per_call"] = reserved_output(run["output_tokens"])
                runs[label] = run
    finally:
        timer.cancel()
        process.terminate()
        process.wait(timeout=10)
    new, base = runs["sized"], runs["baseline_pinned"]

    def ratio(key: str) -> float | None:
        return round(new[key] / base[key], 3) if new.get(key) is not None and base.get(key) else None

    return {
        "benchmark": "max_tokens",
        "figure": "one GRPO step with maxTokens sized from measured output (max_tokens: auto) vs pinned at 512/384",
        "params": {**vars(args), "rollouts": len(rows)},
        "emulator_note": "the emulator's simulated judge writes terse answers (see output_tokens p50 per kind); real Nova writes "
        "differently, so the sized limits here are the emulator's, not Nova's: read a real run's `farm score` summary to pin them",
        "sized": {"how": "packaged default, max_tokens: auto", **new},
        "baseline_pinned": {"how": f"same ensemble, max_tokens pinned {PINNED}", **base},
        "ratio_sized_over_pinned": {
            k: ratio(k) for k in ("step_s", "emulator_busy_s", "mean_max_tokens_sent_per_call", "nova_calls_per_rollout", "throttled_429")
        },
        **(
            {"sized_warmup_wait": {"how": f"sized, max_tokens_auto.warmup_wait_s {args.warmup_wait_s}", **runs["sized_warmup_wait"]}}
            if "sized_warmup_wait" in runs
            else {}
        ),
    }


def main() -> None:
    parser = step_arguments(__doc__, rpm=20_000)
    parser.add_argument("--verbosity", type=int, default=0, help="Emulator: extra rationale tokens per answer (0.5-1.5 x this).")
    parser.add_argument("--warmup-wait-s", type=float, default=0.0, help="Also run sized with max_tokens_auto.warmup_wait_s set so.")
    args = parser.parse_args()
    print_report(lambda: measure(args))


if __name__ == "__main__":
    main()
