"""The `farm` command line. Heavy imports happen inside commands, so `farm --help` is instant."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import click

__all__ = ["main"]


@click.group()
@click.version_option(package_name="reward-farm")
def main() -> None:
    """Reward farm: LLM-judge and rule rewards for RL fine-tuning."""


@main.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "output_path", required=True, type=click.Path(dir_okay=False), help="Results JSONL to write.")
@click.option(
    "--config", "config_path", type=click.Path(exists=True, dir_okay=False), help="Farm config YAML (default: the packaged ensemble)."
)
@click.option("--concurrency", default=4, show_default=True, help="Batches scored at once.")
def score(input_path: str, output_path: str, config_path: str | None, concurrency: int) -> None:
    """Score a JSONL file of rollouts in this process and write one result per row."""
    from farm.scorefile import score_file

    config, emulator, _ = _load(config_path)
    from farm.offline.reader import count_rows, describe_inputs

    total = count_rows(describe_inputs([input_path])) or 0
    try:
        with click.progressbar(length=total, label="scoring", file=sys.stderr, show_pos=True, show_eta=True) as bar:
            summary = asyncio.run(score_file(input_path, output_path, config, concurrency=concurrency, on_progress=bar.update))
    finally:
        if emulator is not None:
            emulator.stop()
    summary_path = Path(output_path).with_name(Path(output_path).name + ".summary.json")
    summary_path.write_text(json.dumps(summary.as_dict(), indent=2) + "\n", encoding="utf-8")
    _print_summary(summary.as_dict(), summary_path)
    if summary.invalid_rows:
        raise click.ClickException(f"{summary.invalid_rows} invalid input row(s); see {summary.errors_file}")


@main.command()
@click.option(
    "--config", "config_path", type=click.Path(exists=True, dir_okay=False), help="Farm config YAML (default: the packaged ensemble)."
)
@click.option("--host", default="127.0.0.1", show_default=True, help="HTTP bind address (0.0.0.0 only behind a firewall).")
@click.option("--port", default=8000, show_default=True)
@click.option("--num-cpus", type=int, default=None, help="CPUs for a local Ray started here (default: all).")
@click.option("--detach", is_flag=True, help="Deploy to the cluster at RAY_ADDRESS and exit, leaving the app running.")
def serve(config_path: str | None, host: str, port: int, num_cpus: int | None, detach: bool) -> None:
    """Deploy the reward farm on Ray Serve: HTTP POST /score, and the app for handle clients."""
    import os
    import signal
    import time

    config, emulator, env = _load(config_path)
    cluster = os.environ.get("RAY_ADDRESS")
    if detach and (not cluster or emulator is not None):
        if emulator is not None:
            emulator.stop()
        raise click.ClickException("--detach needs RAY_ADDRESS and Bedrock credentials: an emulator would stop with this process")
    for name in ("FARM_API_TOKEN", "FARM_BACKEND", "FARM_OPENRLHF_KEY_SHA256", "FARM_OPENRLHF_STRIP", "FARM_OPENRLHF_FAILED_REWARD"):
        if os.environ.get(name):
            env[name] = os.environ[name]
    if os.environ.get("FARM_OPENRLHF_KEY"):  # replicas get its digest: Ray logs runtime envs
        import hashlib

        env["FARM_OPENRLHF_KEY_SHA256"] = hashlib.sha256(os.environ["FARM_OPENRLHF_KEY"].encode("utf-8")).hexdigest()

    import ray
    from ray import serve as ray_serve

    from deploy.app import FarmAppArgs, build_app

    if cluster:
        ray.init(address=cluster)
    else:
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False)
    ray_serve.start(http_options={"host": host, "port": port})
    app_name = config.serve.app_name
    try:
        ray_serve.run(build_app(FarmAppArgs(config_path=config_path, env=env)), name=app_name, route_prefix=config.serve.route_prefix)
    except Exception as exc:
        raise click.ClickException(f"deploying {app_name!r} failed: {exc}") from None
    url = f"http://{host}:{port}{config.serve.route_prefix.rstrip('/')}"
    click.echo(f"reward farm app {app_name!r} is serving at {url}", err=True)
    click.echo(f"  curl -s {url}/healthz", err=True)
    click.echo(f"  curl -s {url}/score -H 'Content-Type: application/json' -d @request.json", err=True)
    click.echo(f"  handle: farm.client.FarmClient({app_name!r}) from any process attached to this cluster", err=True)
    if detach:
        return
    stop = {"now": False}

    def _stop(*_: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        while not stop["now"]:
            time.sleep(0.5)
    finally:
        click.echo("shutting down", err=True)
        if cluster:
            ray_serve.delete(app_name)
        else:
            ray_serve.shutdown()
        ray.shutdown()
        if emulator is not None:
            emulator.stop()


@main.command()
@click.argument("inputs", metavar="INPUT...", nargs=-1, required=True)
@click.option("--out", "out", required=True, help="Output directory of part files (local path).")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), help="Farm config YAML (default: packaged).")
@click.option("--resume", is_flag=True, help="Finish a run that stopped: only chunks without a part file are scored.")
@click.option("--format", "fmt", type=click.Choice(["parquet", "jsonl"]), default="parquet", show_default=True)
@click.option("--label-column", default=None, help="Gold label (top level or in metadata) to report accuracy/AUC against.")
@click.option("--workers", type=int, default=None, help="Scoring actors (default: one per CPU in the cluster).")
@click.option("--chunk-rows", type=int, default=2000, show_default=True, help="Rows per committed part file.")
def rescore(
    inputs: tuple[str, ...],
    out: str,
    config_path: str | None,
    resume: bool,
    fmt: str,
    label_column: str | None,
    workers: int | None,
    chunk_rows: int,
) -> None:
    """Re-score JSONL (plain/gzip) or Parquet files, local or s3://, on Ray; resumable, with a report."""
    import os

    from farm.errors import ConfigError

    config, emulator, env = _load(config_path)
    import ray

    from actors.rescore import progress_printer
    from actors.rescore import rescore as run

    cluster = os.environ.get("RAY_ADDRESS")
    if cluster:
        ray.init(address=cluster, log_to_driver=False)
    else:
        ray.init(address="local", include_dashboard=False, log_to_driver=False)
    try:
        summary = run(
            list(inputs),
            out,
            config,
            resume=resume,
            label_column=label_column,
            workers=workers,
            chunk_rows=chunk_rows,
            fmt=fmt,
            env=env,
            on_progress=progress_printer(),
        )
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        ray.shutdown()
        if emulator is not None:
            emulator.stop()
    base = out.rstrip("/")
    report = summary.report
    click.echo("", err=True)
    click.echo(
        f"rescored {summary.rows} rows in {summary.elapsed_s}s ({summary.scored} now, {summary.skipped_chunks} chunks already done), "
        f"{report['invalid_rows']} invalid rows",
        err=True,
    )
    click.echo(f"  results: {out}/part-*.{fmt}   report: {base}.report.html   summary: {base}.summary.json", err=True)
    if report["invalid_rows"]:
        click.echo(f"  invalid rows, with file and line: {base}.errors.jsonl", err=True)
    for name, judge in report["judges"].items():
        label = f", vs label {judge['against_label']}" if judge["against_label"] else ""
        click.echo(f"  judge {name:<14} mean {judge['mean_score']} status {judge['status']}{label}", err=True)


@main.command()
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), help="Farm config YAML (default: packaged).")
@click.option("--data", "data_path", type=click.Path(exists=True), help="Rollouts JSONL to attack (default: the packaged GSM8K sample).")
@click.option("--limit", type=int, default=40, show_default=True, help="Rollouts to attack.")
@click.option("--label", "label_key", default="is_correct", show_default=True, help="Metadata key of a gold label (for length bias).")
@click.option("--repeats", type=int, default=3, show_default=True, help="Identical calls per rollout for self-consistency (0: skip).")
@click.option(
    "--pairs", "pairs_path", type=click.Path(exists=True), help="Human-labelled preference pairs (default: packaged HH-RLHF sample)."
)
@click.option("--pairs-limit", type=int, default=50, show_default=True, help="Pairs for position bias and human agreement (0: skip).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write the report as JSON here.")
def probe(
    config_path: str | None,
    data_path: str | None,
    limit: int,
    label_key: str,
    repeats: int,
    pairs_path: str | None,
    pairs_limit: int,
    json_path: str | None,
) -> None:
    """Attack real rollouts (injection, flattery, padding, master keys...) and report each judge's
    inflation, position and length bias, and self-consistency."""
    from farm.integrity.pairs import read_pairs
    from farm.integrity.probes import format_table, run_probes
    from farm.integrity.samples import HH_SAMPLE, gold_labels, packaged_data, read_sample

    rollouts = _read_input(read_sample, data_path, limit)
    known = gold_labels(rollouts, label_key)
    pairs = _read_input(read_pairs, pairs_path or packaged_data(HH_SAMPLE), limit=pairs_limit) if pairs_limit > 0 else []
    config, emulator, _ = _load(config_path)
    result = _with_ensemble(config, emulator, lambda e: run_probes(e, rollouts, labels=known, repeats=repeats, pairs=pairs))
    click.echo(format_table(result))
    if json_path:
        Path(json_path).write_text(json.dumps(result.as_dict(), indent=2) + "\n", encoding="utf-8")


@main.command()
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), help="Farm config YAML (default: packaged).")
@click.option("--data", "data_path", type=click.Path(exists=True), help="Labelled rollouts JSONL (default: the packaged GSM8K sample).")
@click.option("--label", "label_key", default="is_correct", show_default=True, help="Metadata key of the gold label.")
@click.option("--label-free", is_flag=True, help="Ignore labels: estimate reliability from inter-judge agreement (Dawid-Skene).")
@click.option("--limit", type=int, default=None, help="Rows to use (default: all).")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False), help="Where to write the calibrated config YAML.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write the figures as JSON here.")
def calibrate(
    config_path: str | None,
    data_path: str | None,
    label_key: str,
    label_free: bool,
    limit: int | None,
    out_path: str,
    json_path: str | None,
) -> None:
    """Measure every judge against gold labels (or each other), fit calibration maps and weights,
    and write them into a copy of the config."""
    import yaml

    from farm.config import load_raw_config, parse_config
    from farm.integrity.fitting import calibrated_config, fit_judges, format_fit
    from farm.integrity.samples import gold_labels, read_sample

    rollouts = _read_input(read_sample, data_path, limit)
    labels = gold_labels(rollouts, label_key)
    if labels is None and not label_free:
        raise click.ClickException(f"some rows lack metadata `{label_key}`; pass --label-free to estimate reliability without labels")
    described = Path(data_path).name if data_path else "packaged GSM8K sample"
    config, emulator, _ = _load(config_path)

    report = _with_ensemble(config, emulator, lambda e: fit_judges(e, rollouts, None if label_free else labels, described_as=described))
    raw, _source = load_raw_config(config_path)  # as written: env overrides are not baked in
    written = calibrated_config(raw, config, report)
    parse_config(written, source=out_path)  # never write a config that would not load
    Path(out_path).write_text(
        f"# Calibrated by `farm calibrate` on {described}.\n" + yaml.safe_dump(written, sort_keys=False), encoding="utf-8"
    )
    click.echo(format_fit(report))
    click.echo(f"calibrated config: {out_path}")
    if json_path:
        Path(json_path).write_text(json.dumps(report.as_dict(), indent=2) + "\n", encoding="utf-8")


@main.command("pin-canaries")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), help="Farm config YAML (default: packaged).")
@click.option("--data", "data_path", type=click.Path(exists=True), help="Canary rollouts JSONL (default: the packaged GSM8K sample).")
@click.option("--count", type=int, default=20, show_default=True, help="Canaries to take from the data.")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False), help="Canary file to write.")
def pin_canaries(config_path: str | None, data_path: str | None, count: int, out_path: str) -> None:
    """Score canaries with today's judges and write them with `metadata.expected_scores`, so the
    drift alarm compares against known scores even on a replica that starts after a judge drifted."""
    from farm.integrity.canary import pin_canaries as pin
    from farm.integrity.samples import read_sample

    rollouts = _read_input(read_sample, data_path, count)
    config, emulator, _ = _load(config_path)
    pinned = _with_ensemble(config, emulator, lambda e: pin(e, rollouts))
    Path(out_path).write_text("".join(json.dumps(row) + "\n" for row in pinned), encoding="utf-8")
    judged = sum(bool(row["metadata"]["expected_scores"]) for row in pinned)
    click.echo(f"pinned {judged} of {len(pinned)} canaries -> {out_path}; set integrity.canaries.data to it")


def _with_ensemble(config: Any, emulator: Any, work: Any) -> Any:
    """`await work(ensemble)` on an ensemble built from `config`; the ensemble and the embedded
    emulator are closed whatever happens."""
    from farm.ensemble import Ensemble

    async def run() -> Any:
        ensemble = Ensemble.from_config(config)
        try:
            return await work(ensemble)
        finally:
            await ensemble.aclose()

    try:
        return asyncio.run(run())
    finally:
        if emulator is not None:
            emulator.stop()


def _read_input(read: Any, *args: Any, **kwargs: Any) -> Any:
    """`read(...)`, with a bad input line reported as a usage error that names it."""
    from farm.errors import InputError

    try:
        return read(*args, **kwargs)
    except InputError as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@click.option("--cluster", "cluster_path", required=True, type=click.Path(exists=True, dir_okay=False), help="Ray cluster YAML.")
@click.option("--farm-config", "farm_config", required=True, type=click.Path(exists=True, dir_okay=False), help="Farm config in this repo.")
@click.option("--dry-run", is_flag=True, help="Validate and print the commands without running them.")
def up(cluster_path: str, farm_config: str, dry_run: bool) -> None:
    """Validate, start the EC2 cluster (`ray up`), and deploy the farm on it."""
    import shlex
    import subprocess

    from deploy.checks import placeholders, validate_cluster_yaml
    from farm.config import load_config
    from farm.errors import ConfigError

    try:
        prepared = validate_cluster_yaml(cluster_path)
        load_config(farm_config)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    repo = Path(__file__).resolve().parents[1]
    try:
        relative = Path(farm_config).resolve().relative_to(repo)
    except ValueError:
        raise click.ClickException(f"--farm-config must lie inside {repo}: the repo is what gets synced to the nodes") from None
    serve_command = f"farm serve --config {shlex.quote(str(relative))} --host 0.0.0.0 --detach"
    remote = f"cd ~/reward-farm && FARM_BACKEND=bedrock RAY_ADDRESS=auto {serve_command}"
    commands = [["ray", "up", "-y", cluster_path], ["ray", "exec", cluster_path, remote]]
    left = placeholders(prepared)
    for command in commands:
        click.echo("$ " + shlex.join(command))
    if left:
        message = "replace these placeholders first:\n" + "\n".join(f"  - {p}" for p in left)
        if dry_run:
            click.echo(message, err=True)
            return
        raise click.ClickException(message)
    if dry_run:
        return
    for command in commands:
        subprocess.run(command, check=True)
    click.echo("reach Serve with: ray attach " + shlex.quote(cluster_path) + " -p 8000   (then http://127.0.0.1:8000)", err=True)


@main.command()
@click.option("--cluster", "cluster_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--dry-run", is_flag=True)
def down(cluster_path: str, dry_run: bool) -> None:
    """Tear the EC2 cluster down (`ray down`)."""
    import shlex
    import subprocess

    command = ["ray", "down", "-y", cluster_path]
    click.echo("$ " + shlex.join(command))
    if not dry_run:
        subprocess.run(command, check=True)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8765, show_default=True, help="0 picks a free port.")
@click.option("--rpm", type=int, help="Requests per minute per model.")
@click.option("--tpm", type=int, help="Tokens per minute per model.")
@click.option("--burst-s", type=float, help="Seconds of quota admitted at once.")
@click.option("--latency-ms", type=float, help="Mean simulated latency.")
@click.option("--latency-sigma", type=float, help="Log-normal spread of latency (0: constant).")
@click.option("--fault", "faults", multiple=True, metavar="KIND=RATE", help="Inject a fault, e.g. throttle=0.05 (repeatable).")
@click.option("--noise", type=float, help="Simulated judge: score noise.")
@click.option("--position-bias", type=float, help="Simulated judge: bias towards response A.")
@click.option("--length-bias", type=float, help="Simulated judge: score gain per doubling of length.")
@click.option("--injection-susceptibility", type=float, help="Simulated judge: chance that injected instructions work.")
@click.option("--leniency", type=float, help="Simulated judge: added to every quality (drift towards generous marks).")
@click.option("--sampling-noise", type=float, help="Simulated judge: fresh noise on every call (nondeterminism at temperature 0).")
@click.option("--seed", type=int)
@click.option("--settings", "settings_path", type=click.Path(exists=True, dir_okay=False), help="Emulator settings YAML.")
def emulator(host: str, port: int, settings_path: str | None, faults: tuple[str, ...], **values: Any) -> None:
    """Run the Bedrock emulator: Converse over loopback HTTP with quotas, faults and a simulated judge."""
    import yaml
    from pydantic import ValidationError

    from farm.emulator import EmulatorServer, EmulatorSettings

    data: dict[str, Any] = yaml.safe_load(Path(settings_path).read_text(encoding="utf-8")) or {} if settings_path else {}
    judge_keys = ("noise", "position_bias", "length_bias", "injection_susceptibility", "leniency", "sampling_noise")
    for key, value in values.items():
        if value is None:
            continue
        if key in judge_keys:
            data.setdefault("judge", {})[key] = value
        else:
            data[key] = value
    for fault in faults:
        kind, _, rate = fault.partition("=")
        try:
            data.setdefault("faults", {})[kind.strip()] = float(rate)
        except ValueError:
            raise click.BadParameter(f"expected KIND=RATE, got {fault!r}", param_hint="--fault") from None
    try:
        settings = EmulatorSettings.model_validate(data)
    except ValidationError as exc:
        raise click.ClickException(f"invalid emulator settings:\n{exc}") from None

    async def serve() -> None:
        server = EmulatorServer(settings)
        url = await server.start(host, port)
        click.echo(f"Bedrock emulator listening on {url}", err=True)
        click.echo(f"  export AWS_ENDPOINT_URL_BEDROCK_RUNTIME={url} AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x", err=True)
        try:
            await asyncio.Event().wait()
        finally:
            await server.stop()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass


def _load(config_path: str | None) -> tuple[Any, Any, dict[str, str]]:
    """The config, and, when Bedrock judges would run without AWS credentials, the embedded
    emulator with the environment that points replicas and workers at it."""
    import os

    from farm.config import load_config
    from farm.embedded import choose_backend, start_embedded_emulator
    from farm.errors import ConfigError
    from farm.judges import needs_bedrock

    try:
        config = load_config(config_path)
        if not any(needs_bedrock(j) for j in config.judges) or choose_backend() != "emulator":
            return config, None, {}
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    emulator = start_embedded_emulator(config)
    names = ("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
    return config, emulator, {k: os.environ[k] for k in names}


def _print_summary(summary: dict[str, Any], summary_path: Path) -> None:
    echo = lambda text="": click.echo(text, err=True)  # noqa: E731
    echo()
    echo(f"scored {summary['rollouts']} rollouts in {summary['elapsed_s']}s ({summary['rollouts_per_s']}/s) -> {summary['output']}")
    echo(f"  results: {dict(summary['status'])}   mean reward: {summary['reward_mean']}")
    for name, counts in summary["judge_status"].items():
        echo(f"  judge {name:<16} {dict(counts)}")
    if summary["flags"]:
        echo(f"  flags: {dict(summary['flags'])}")
    echo(f"  tokens: {summary['input_tokens']} in, {summary['output_tokens']} out; cache hits {summary['cache_hits']}")
    if summary["invalid_rows"]:
        echo(f"  invalid rows: {summary['invalid_rows']} (see {summary['errors_file']})")
    echo(f"  summary: {summary_path}")


if __name__ == "__main__":
    main()
