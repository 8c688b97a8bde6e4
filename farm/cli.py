"""The `farm` command line, the top layer: it composes deploy/, actors/ and every farm/ layer, and
imports them inside the commands that need them, so `farm --help` is instant and starts no Ray
(tests/unit/test_layers.py keeps deploy/ and actors/ out of its module-level imports)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import click

__all__ = ["main"]


EXIT_ERROR = 1
"""Bad input, config or environment (click's usage errors are 2)."""
EXIT_DEGRADED = 3
"""Results were written, but judges failed beyond --max-degraded: do not train on them unread."""
SCORE_COMPANIONS = (".summary.json", ".errors.jsonl")

MAX_DEGRADED = click.option(
    "--max-degraded",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Share of rows allowed to be partial or failed, or any judge failing on every row, before the run exits 3 (1: never).",
)


class CliError(click.ClickException):
    """The one error style of every command: `Error: <cause>`, then, indented, what to do."""

    def __init__(self, cause: str, hint: str | None = None, *, exit_code: int = EXIT_ERROR):
        super().__init__(cause)
        self.hint = hint
        # click declares exit_code a ClassVar, yet reads it from the instance (`sys.exit(e.exit_code)`)
        self.exit_code = exit_code  # type: ignore[misc]

    def format_message(self) -> str:
        return self.message + (f"\n  {self.hint}" if self.hint else "")


class _FarmGroup(click.Group):
    """Ctrl-C anywhere is one line and exit 130, not click's bare "Aborted!" and 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise CliError("interrupted", exit_code=130) from None


@click.group(cls=_FarmGroup)
@click.version_option(package_name="reward-farm")
def main() -> None:
    """Reward farm: LLM-judge and rule rewards for RL fine-tuning."""


@main.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "output_path", required=True, type=click.Path(dir_okay=False), help="Results JSONL to write.")
@click.option(
    "--config", "config_path", type=click.Path(exists=True, dir_okay=False), help="Farm config YAML (default: the packaged ensemble)."
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=None,
    help="Batches scored at once (default: enough for the calls the quotas allow in flight, at least 4).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Processes to spread the file over when one is CPU-bound; each holds 1/N of the quota and whole groups.",
)
@click.option("--force", is_flag=True, help="Overwrite --out (and its .summary.json/.errors.jsonl) if it exists.")
@MAX_DEGRADED
def score(
    input_path: str, output_path: str, config_path: str | None, concurrency: int | None, workers: int, force: bool, max_degraded: float
) -> None:
    """Score a JSONL file of rollouts in this process and write one result per row.

    Exits 0 when every judge answered, 1 on invalid input rows or an error, 3 when the run is
    degraded: a judge failed on every rollout, or more than --max-degraded of the rollouts are
    partial or failed (the results are still written)."""
    from farm.progress import Progress
    from farm.scorefile import degradation, score_file

    _claim_output(output_path, force, inputs=(input_path, config_path))
    total = _count_rows(input_path)
    if not total:
        raise CliError(f"{input_path} holds no rollouts", "give a JSONL file with one rollout per line (see Inputs in the README)")
    config, emulator, _ = _load(config_path)
    progress = Progress("scoring", total)
    progress.start()
    staged = _staging(output_path)  # results land beside --out and replace it only when the run completes
    try:
        quotas = _cluster_quotas(config)
        if workers > 1:
            if quotas is not None:
                raise CliError(
                    "--workers splits this process's own quota, but RAY_ADDRESS shares a cluster's",
                    "spread it over the cluster with `farm rescore --workers N` (its actors lease from that quota), or unset RAY_ADDRESS",
                )
            from farm.errors import ConfigError
            from farm.scoreworkers import score_file_workers

            try:
                summary = score_file_workers(input_path, staged, config, workers=workers, concurrency=concurrency, progress=progress)
            except ConfigError as exc:
                raise CliError(str(exc), "give fewer --workers or a larger quota") from None
        else:
            summary = asyncio.run(score_file(input_path, staged, config, concurrency=concurrency, progress=progress, quotas=quotas))
    except BaseException as exc:
        _discard(staged, *(_companion(staged, c) for c in SCORE_COMPANIONS))
        if isinstance(exc, KeyboardInterrupt):
            raise CliError(
                f"interrupted after {progress.done} of {total} rollouts", f"{output_path} was left as it was", exit_code=130
            ) from None
        raise
    finally:
        progress.close()
        if emulator is not None:
            emulator.stop()
    _commit_score(staged, output_path, summary)
    line, over = (
        degradation(summary.rollouts, summary.status, summary.judge_status, summary.judge_errors, max_share=max_degraded)
        if summary.rollouts
        else ("no valid rollouts", False)
    )
    data = {"degraded": line, "degraded_over_limit": over, **summary.as_dict()}
    summary_path = _companion(output_path, ".summary.json")
    _write_output(summary_path, json.dumps(data, indent=2) + "\n")
    _print_summary(data, summary_path)
    if over:
        raise CliError(
            f"degraded run: {line}",
            f"results are in {output_path}, reasons per rollout in its `error` fields; fix the cause, or accept it with --max-degraded 1",
            exit_code=EXIT_DEGRADED,
        )
    if summary.invalid_rows:
        raise CliError(
            f"{summary.invalid_rows} invalid input row(s); see {summary.errors_file}",
            "the valid rows were scored; fix or drop the rows listed there",
        )


@main.command()
@click.option(
    "--config", "config_path", type=click.Path(exists=True, dir_okay=False), help="Farm config YAML (default: the packaged ensemble)."
)
@click.option("--host", default="127.0.0.1", show_default=True, help="HTTP bind address; beyond loopback only with a token.")
@click.option("--port", default=8000, show_default=True)
@click.option("--num-cpus", type=int, default=None, help="CPUs for a local Ray started here (default: all).")
@click.option("--detach", is_flag=True, help="Deploy to the cluster at RAY_ADDRESS and exit, leaving the app running.")
@click.option("--token-file", type=click.Path(dir_okay=False), help="File holding the API token(s), one per line (a mounted secret).")
@click.option("--token-secret", help="AWS Secrets Manager secret (name or ARN) holding the API token(s).")
@click.option("--token-ssm", help="AWS SSM Parameter Store SecureString holding the API token(s).")
@click.option("--insecure", is_flag=True, help="Serve WITHOUT auth beyond loopback: anyone who reaches the port can spend your quota.")
def serve(
    config_path: str | None,
    host: str,
    port: int,
    num_cpus: int | None,
    detach: bool,
    token_file: str | None,
    token_secret: str | None,
    token_ssm: str | None,
    insecure: bool,
) -> None:
    """Deploy the reward farm on Ray Serve: HTTP POST /score, and the app for handle clients."""
    import os
    import signal
    import time

    auth = _serve_auth(config_path, host, token_file, token_secret, token_ssm, insecure)
    cluster = os.environ.get("RAY_ADDRESS")
    if not cluster:  # on a cluster the port is the head's, and Serve's own proxy may hold it already (redeploy)
        _require_free_port(host, port)
    config, emulator, env = _load(config_path)
    if detach and (not cluster or emulator is not None):
        if emulator is not None:
            emulator.stop()
        raise click.ClickException("--detach needs RAY_ADDRESS and Bedrock credentials: an emulator would stop with this process")
    for name in ("FARM_BACKEND", "FARM_OPENRLHF_STRIP", "FARM_OPENRLHF_FAILED_REWARD"):
        if os.environ.get(name):
            env[name] = os.environ[name]

    import ray
    from ray import serve as ray_serve

    from deploy.app import FarmAppArgs, build_app

    quiet = _quiet_ray(on_cluster=bool(cluster))
    if cluster:
        ray.init(address=cluster, logging_level=quiet["log_level"])
    else:
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, logging_level=quiet["log_level"])
    app_name = config.serve.app_name
    try:
        ray_serve.start(http_options={"host": host, "port": port}, logging_config=quiet)
        args = FarmAppArgs(config_path=config_path, env=env, auth=auth, insecure=insecure)
        ray_serve.run(build_app(args), name=app_name, route_prefix=config.serve.route_prefix, logging_config=quiet)
    except Exception as exc:  # noqa: BLE001 - whatever Serve raises, the user gets one error with a hint
        if not cluster:
            ray.shutdown()
        if emulator is not None:
            emulator.stop()
        raise CliError(f"deploying {app_name!r} failed: {_first_line(exc)}", _deploy_hint(exc, port)) from None
    url = f"http://{host}:{port}{config.serve.route_prefix.rstrip('/')}"
    click.echo(f"reward farm app {app_name!r} is serving at {url}", err=True)
    click.echo(f"  curl -s {url}/healthz", err=True)
    bearer = ' -H "Authorization: Bearer $FARM_API_TOKEN"' if auth is not None and auth.enabled else ""
    click.echo(f"  curl -s {url}/score{bearer} -H 'Content-Type: application/json' -d @request.json", err=True)
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
        # a local Ray started here goes down whole with ray.shutdown(); serve.shutdown() first would
        # only add a retry warning about the controller it has just killed
        ray.shutdown()
        if emulator is not None:
            emulator.stop()


def _serve_auth(
    config_path: str | None, host: str, token_file: str | None, token_secret: str | None, token_ssm: str | None, insecure: bool
) -> Any:
    """The auth `farm serve` deploys with (options over the config's `serve.auth`), checked here so
    that a missing or empty token source, or a public bind without one, stops before Ray starts."""
    import os

    from deploy.options import load_config
    from farm.auth import SecretRef, TokenBook, is_loopback
    from farm.errors import ConfigError

    if os.environ.get("FARM_API_TOKEN"):  # the clients' variable: warn, since the server never reads it
        click.echo(
            "warning: FARM_API_TOKEN is set but the server does not read it (it would land in Ray's logs and the "
            "Serve config): its token is not accepted unless --token-file / --token-secret / --token-ssm or "
            "serve.auth names a source holding it",
            err=True,
        )
    given = {k: v for k, v in (("file", token_file), ("secretsmanager", token_secret), ("ssm", token_ssm)) if v}
    if len(given) > 1:
        raise click.UsageError("give one of --token-file, --token-secret, --token-ssm")
    try:
        configured = load_config(config_path).serve.auth
        auth = configured.model_copy(update={"token": SecretRef(**given)}) if given else configured
        if auth.enabled:
            TokenBook.load(auth)  # fail now, with the source named, rather than in a replica
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if not auth.enabled and not is_loopback(host):
        if not insecure:
            raise click.ClickException(
                f"refusing to listen on {host} without a token: anyone who can reach it could spend the account's "
                "Bedrock quota and steer training. Pass --token-file (or --token-secret / --token-ssm), bind 127.0.0.1, "
                "or, on a network you control, --insecure"
            )
        click.echo(f"WARNING: --insecure: serving on {host} with NO authentication; anyone who can reach it can use it", err=True)
    return auth if auth.enabled else None


@main.command()
@click.argument("inputs", metavar="INPUT...", nargs=-1, required=True)
@click.option("--out", "out", required=True, help="Output directory of part files: a local or shared path, or s3://bucket/prefix.")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), help="Farm config YAML (default: packaged).")
@click.option("--resume", is_flag=True, help="Finish a run that stopped: only chunks without a part file are scored.")
@click.option(
    "--retry-failed/--no-retry-failed",
    default=True,
    show_default=True,
    help="On --resume, score again the rows whose judges failed (their attempt count goes up).",
)
@click.option("--format", "fmt", type=click.Choice(["parquet", "jsonl"]), default="parquet", show_default=True)
@click.option("--label-column", default=None, help="Gold label (top level or in metadata) to report accuracy/AUC against.")
@click.option("--workers", type=int, default=None, help="Scoring actors (default: one per CPU in the cluster).")
@click.option("--worker-resource", default=None, help="Custom Ray resource the scoring actors need (e.g. a node label like 'rescore').")
@click.option("--chunk-rows", type=int, default=2000, show_default=True, help="Rows per committed part file.")
@MAX_DEGRADED
@click.option(
    "--write-from",
    type=click.Choice(["workers", "driver"]),
    default="workers",
    show_default=True,
    help="Who writes part files: the scoring actors (any node) or the driver (parts travel through the object store).",
)
@click.option("--bedrock-batch", "bedrock_batch", is_flag=True, help="LLM judges through Bedrock batch inference (about half price).")
@click.option(
    "--batch-s3", default=None, help="s3:// prefix for batch inference inputs and outputs (default: <out>/_batch when --out is s3://)."
)
@click.option("--batch-role-arn", default=None, help="IAM service role Bedrock batch jobs run as (required on AWS).")
@click.option(
    "--batch-min-records", type=click.IntRange(min=1), default=100, show_default=True, help="Service minimum records per batch job."
)
@click.option(
    "--batch-max-records", type=click.IntRange(min=1), default=50_000, show_default=True, help="Service maximum records per batch job."
)
@click.option("--batch-poll-s", type=float, default=30.0, show_default=True, help="Seconds between job status polls.")
def rescore(
    inputs: tuple[str, ...],
    out: str,
    config_path: str | None,
    resume: bool,
    retry_failed: bool,
    fmt: str,
    label_column: str | None,
    workers: int | None,
    worker_resource: str | None,
    chunk_rows: int,
    max_degraded: float,
    write_from: str,
    bedrock_batch: bool,
    batch_s3: str | None,
    batch_role_arn: str | None,
    batch_min_records: int,
    batch_max_records: int,
    batch_poll_s: float,
) -> None:
    """Re-score JSONL (plain/gzip) or Parquet files, local or s3://, on Ray; resumable, with a report.
    Exits 3 when the run is degraded (see `farm score --help`)."""
    import os

    from farm.errors import ConfigError
    from farm.progress import Progress
    from farm.scorefile import degradation

    _check_rescore_paths(inputs, out, resume)  # before Ray: seconds saved on a typo
    config, emulator, env = _load(config_path)
    forwarded: tuple[str, ...] = ("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "AWS_ENDPOINT_URL_BEDROCK", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
    forwarded += ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION", "AWS_REGION")
    env = {**{k: os.environ[k] for k in forwarded if os.environ.get(k)}, **env}  # workers on other nodes see the same endpoints
    if emulator is not None and bedrock_batch:  # the embedded emulator also runs the batch control plane
        os.environ.setdefault("AWS_ENDPOINT_URL_BEDROCK", emulator.url)
    settings = None
    if bedrock_batch:
        from farm.offline.bedrock_batch import BatchSettings

        prefix = batch_s3 or (out.rstrip("/") + "/_batch" if out.startswith("s3://") else None)
        if prefix is None:
            raise CliError("--bedrock-batch needs somewhere in S3 for its records", "pass --batch-s3 s3://bucket/prefix, or an s3:// --out")
        settings = BatchSettings(
            s3_prefix=prefix,
            role_arn=batch_role_arn or "arn:aws:iam::000000000000:role/farm-batch",
            min_records=batch_min_records,
            max_records=batch_max_records,
            poll_s=batch_poll_s,
            region=config.bedrock.region,
        )
    import ray

    from actors.rescore import rescore as run

    quiet = _quiet_ray()
    cluster = os.environ.get("RAY_ADDRESS")
    if cluster:
        ray.init(address=cluster, log_to_driver=False, logging_level=quiet["log_level"])
    else:
        ray.init(address="local", include_dashboard=False, log_to_driver=False, logging_level=quiet["log_level"])
    progress = Progress("rescored", unit="rows")
    progress.start()
    try:
        summary = run(
            list(inputs),
            out,
            config,
            resume=resume,
            retry_failed=retry_failed,
            label_column=label_column,
            workers=workers,
            chunk_rows=chunk_rows,
            fmt=fmt,
            env=env,
            worker_resources={worker_resource: 0.01} if worker_resource else None,
            collect_in_driver=write_from == "driver",
            bedrock_batch=settings,
            on_progress=progress.set,
        )
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        raise CliError(str(exc)) from None
    finally:
        progress.close()
        ray.shutdown()
        if emulator is not None:
            emulator.stop()
    base = out.rstrip("/")
    report = summary.report
    statuses = {name: judge["status"] for name, judge in report["judges"].items()}
    reasons = {name: judge.get("failures_by_reason") or {} for name, judge in report["judges"].items()}
    line, over = degradation(summary.rows, report.get("status", {}), statuses, reasons, max_share=max_degraded)
    click.echo(f"{line}", err=True)
    click.echo(
        f"rescored {summary.rows} rows in {summary.elapsed_s}s ({summary.scored} now, {summary.skipped_chunks} chunks already done), "
        f"{report['invalid_rows']} invalid rows",
        err=True,
    )
    click.echo(f"  results: {base}/part-*.{fmt}   report: {base}.report.html   summary: {base}.summary.json", err=True)
    if report.get("total_cost_usd") is not None:
        cached = ""
        if report.get("cache_read_tokens") or report.get("cache_write_tokens"):
            cached = f"; prompt cache: {report['cache_read_tokens']} tokens read, {report['cache_write_tokens']} written"
            if report.get("total_cost_without_prompt_cache_usd") is not None:
                cached += f" (${report['total_cost_without_prompt_cache_usd']:.6f} without it)"
        click.echo(f"  cost: ${report['total_cost_usd']:.6f} at list prices unless config `prices` says otherwise{cached}", err=True)
    if report["invalid_rows"]:
        click.echo(f"  invalid rows, with file and line: {base}.errors.jsonl", err=True)
    retry = report["retry"]
    if retry["retried_rows"]:
        click.echo(f"  retried {retry['retried_rows']} rows whose judges had failed; {retry['recovered_rows']} now fully scored", err=True)
    if retry["rows_with_failed_judges"]:
        why = "; ".join(f"{name}: {reasons}" for name, reasons in retry["still_failed"].items())
        click.echo(f"  {retry['rows_with_failed_judges']} rows still have a failed judge ({why}); --resume retries them", err=True)
    batch_info = report.get("bedrock_batch")
    if batch_info:
        jobs = batch_info["jobs"]
        click.echo(
            f"  batch: {sum(j['records'] for j in jobs)} requests in {len(jobs)} job(s) "
            f"({', '.join(sorted({j['status'] for j in jobs})) or 'none'}); replay {batch_info.get('replay', {})}",
            err=True,
        )
        cost = batch_info.get("cost")
        if cost:
            click.echo(
                f"  batch: billed ${cost['billed_usd']:.4f} (${cost['batch_usd']:.4f} for batch answers that would cost "
                f"${cost['on_demand_equivalent_usd']:.4f} on demand, saved ${cost['saved_usd']:.4f}; "
                f"${cost['on_demand_calls_usd']:.4f} for on-demand calls)",
                err=True,
            )
        elif batch_info.get("unpriced_models"):
            click.echo(f"  batch: saving unknown, no price in the config for {', '.join(batch_info['unpriced_models'])}", err=True)
        for line in batch_info["notes"]:
            click.echo(f"  batch: {line}", err=True)
    for name, judge in report["judges"].items():
        against = judge["against_label"]
        label = f", vs label: accuracy {against['accuracy']}, AUC {against['auc']} (n {against['n']})" if against else ""
        click.echo(f"  judge {name:<14} mean {judge['mean_score']} status {_counts(judge['status'])}{label}", err=True)
    if over:
        raise CliError(
            f"degraded run: {line}", f"see {base}.report.html; fix the cause, or accept it with --max-degraded 1", exit_code=EXIT_DEGRADED
        )


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
@click.option("--force", is_flag=True, help="Overwrite --json if it exists.")
@click.option("--grouped", is_flag=True, help="Keep groups: attack one rollout per group among clean ones (group preference).")
def probe(
    config_path: str | None,
    data_path: str | None,
    limit: int,
    label_key: str,
    repeats: int,
    pairs_path: str | None,
    pairs_limit: int,
    json_path: str | None,
    force: bool,
    grouped: bool,
) -> None:
    """Attack real rollouts (injection, flattery, padding, master keys...) and report each judge's
    inflation, position and length bias, and self-consistency."""
    from farm.analysis.pairs import read_pairs
    from farm.analysis.probes import format_table, run_probes
    from farm.analysis.samples import HH_SAMPLE, gold_labels, packaged_data, read_sample

    if json_path:
        _claim_output(json_path, force, inputs=(config_path, data_path, pairs_path))
    rollouts = _read_input(read_sample, data_path, limit)
    known = gold_labels(rollouts, label_key)
    pairs = _read_input(read_pairs, pairs_path or packaged_data(HH_SAMPLE), limit=pairs_limit) if pairs_limit > 0 else []
    config, emulator, _ = _load(config_path)
    result = _with_ensemble(
        config, emulator, lambda e: run_probes(e, rollouts, labels=known, repeats=repeats, pairs=pairs, grouped=grouped), label="probing"
    )
    click.echo(format_table(result))
    if json_path:
        _write_output(json_path, json.dumps(result.as_dict(), indent=2) + "\n")


@main.command()
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), help="Farm config YAML (default: packaged).")
@click.option("--data", "data_path", type=click.Path(exists=True), help="Labelled rollouts JSONL (default: the packaged GSM8K sample).")
@click.option("--label", "label_key", default="is_correct", show_default=True, help="Metadata key of the gold label.")
@click.option("--label-free", is_flag=True, help="Ignore labels: estimate reliability from inter-judge agreement (Dawid-Skene).")
@click.option("--limit", type=int, default=None, help="Rows to use (default: all).")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False), help="Where to write the calibrated config YAML.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write the figures as JSON here.")
@click.option("--force", is_flag=True, help="Overwrite --out and --json if they exist.")
def calibrate(
    config_path: str | None,
    data_path: str | None,
    label_key: str,
    label_free: bool,
    limit: int | None,
    out_path: str,
    json_path: str | None,
    force: bool,
) -> None:
    """Measure every judge against gold labels (or each other), fit calibration maps and weights,
    and write them into a copy of the config."""
    import yaml

    from deploy.options import parse_config
    from farm.analysis.fitting import calibrated_config, fit_judges, format_fit
    from farm.analysis.samples import gold_labels, read_sample
    from farm.config import load_raw_config

    if json_path and Path(json_path).resolve() == Path(out_path).resolve():
        raise CliError(f"--json and --out are the same file ({out_path})", "give them different paths")
    for path in (out_path, json_path):
        if path:
            _claim_output(path, force, inputs=(config_path, data_path))
    rollouts = _read_input(read_sample, data_path, limit)
    labels = gold_labels(rollouts, label_key)
    if labels is None and not label_free:
        raise CliError(
            f"some rows lack metadata `{label_key}`",
            "pass --label to name the label key, or --label-free to estimate reliability without labels",
        )
    described = Path(data_path).name if data_path else "packaged GSM8K sample"
    config, emulator, _ = _load(config_path)

    report = _with_ensemble(
        config,
        emulator,
        lambda e: fit_judges(e, rollouts, None if label_free else labels, described_as=described),
        label="calibrating",
        total=len(rollouts),
    )
    raw, _source = load_raw_config(config_path)  # as written: env overrides are not baked in
    written = calibrated_config(raw, config, report)
    parse_config(written, source=out_path)  # never write a config that would not load
    _write_output(out_path, f"# Calibrated by `farm calibrate` on {described}.\n" + yaml.safe_dump(written, sort_keys=False))
    click.echo(format_fit(report))
    click.echo(f"calibrated config: {out_path}")
    if json_path:
        _write_output(json_path, json.dumps(report.as_dict(), indent=2) + "\n")


@main.command("pin-canaries")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), help="Farm config YAML (default: packaged).")
@click.option("--data", "data_path", type=click.Path(exists=True), help="Canary rollouts JSONL (default: the packaged GSM8K sample).")
@click.option("--count", type=int, default=20, show_default=True, help="Canaries to take from the data.")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False), help="Canary file to write.")
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
def pin_canaries(config_path: str | None, data_path: str | None, count: int, out_path: str, force: bool) -> None:
    """Score canaries with today's judges and write them with `metadata.expected_scores`, so the
    drift alarm compares against known scores even on a replica that starts after a judge drifted."""
    from farm.analysis.canary import pin_canaries as pin
    from farm.analysis.samples import read_sample

    _claim_output(out_path, force, inputs=(config_path, data_path))
    rollouts = _read_input(read_sample, data_path, count)
    config, emulator, _ = _load(config_path)
    pinned = _with_ensemble(config, emulator, lambda e: pin(e, rollouts), label="pinning", total=len(rollouts))
    _write_output(out_path, "".join(json.dumps(row) + "\n" for row in pinned))
    judged = sum(bool(row["metadata"]["expected_scores"]) for row in pinned)
    click.echo(f"pinned {judged} of {len(pinned)} canaries -> {out_path}; set integrity.canaries.data to it")


def _with_ensemble(config: Any, emulator: Any, work: Any, *, label: str = "judging", total: int | None = None) -> Any:
    """`await work(ensemble)` on an ensemble built from `config`, with progress on every rollout it
    scores; the ensemble and the embedded emulator are closed whatever happens. Figures from a run
    in which a judge failed on every rollout, or most rollouts were degraded, mean nothing: exit 3."""
    from collections import Counter

    from farm.ensemble import Ensemble
    from farm.progress import Progress
    from farm.scorefile import degradation

    progress = Progress(label, total)
    status: Counter[str] = Counter()
    judge_status: dict[str, Counter[str]] = {}
    judge_errors: dict[str, Counter[str]] = {}

    quotas = _cluster_quotas(config)

    async def run() -> Any:
        ensemble = Ensemble.from_config(config, quotas=quotas, patient=True)  # offline: quota waits, never fails
        score = ensemble.score
        client = ensemble.client
        if client is not None:
            progress.throttled = lambda: client.stats.throttled

        async def counted(rollouts: Any, *args: Any, **kwargs: Any) -> Any:
            results = await score(rollouts, *args, **kwargs)
            progress.results(results)
            for result in results:
                status[result.status] += 1
                for name, verdict in result.judges.items():
                    judge_status.setdefault(name, Counter())[verdict.status] += 1
                    if verdict.status in ("failed", "timeout"):
                        judge_errors.setdefault(name, Counter())[(verdict.error or verdict.status).splitlines()[0][:160]] += 1
            return results

        ensemble.score = counted  # type: ignore[method-assign]
        progress.start()
        try:
            return await work(ensemble)
        finally:
            progress.close()
            await ensemble.aclose()

    try:
        outcome = asyncio.run(run())
    except KeyboardInterrupt:
        raise CliError(f"interrupted after {progress.done} rollouts", exit_code=130) from None
    finally:
        if emulator is not None:
            emulator.stop()
    line, over = degradation(sum(status.values()), status, judge_status, judge_errors, max_share=0.5)
    if over:
        raise CliError(
            f"degraded run: {line}",
            "its figures would mean nothing; fix the cause (see the backend line above) and run again",
            exit_code=EXIT_DEGRADED,
        )
    return outcome


def _cluster_quotas(config: Any) -> Any:
    """The cluster's quota actors when RAY_ADDRESS names a reachable cluster, so every process
    on one AWS account spends one quota; else None, and the command says it holds its own."""
    import os

    address = os.environ.get("RAY_ADDRESS")
    if not address:
        click.echo("quota: this process holds a quota of its own (set RAY_ADDRESS to share a cluster's)", err=True)
        return None
    try:
        import ray

        from actors.quota import LeasedQuotas

        if not ray.is_initialized():
            ray.init(address=address, log_to_driver=False)
    except Exception as exc:  # noqa: BLE001 - any failure to connect means: no shared quota
        click.echo(
            f"quota: no cluster reachable at RAY_ADDRESS={address} ({type(exc).__name__}); this process holds a quota of its own", err=True
        )
        return None
    click.echo(f"quota: leases from the quota actors of the cluster at {address}", err=True)
    return LeasedQuotas(config.quota_for)


def _read_input(read: Any, *args: Any, **kwargs: Any) -> Any:
    """`read(...)`, with a bad input line reported as a usage error that names it."""
    from farm.errors import InputError

    try:
        return read(*args, **kwargs)
    except InputError as exc:
        raise CliError(str(exc), "fix or drop that line") from None


@main.command()
@click.option("--cluster", "cluster_path", required=True, type=click.Path(exists=True, dir_okay=False), help="Ray cluster YAML.")
@click.option("--farm-config", "farm_config", required=True, type=click.Path(exists=True, dir_okay=False), help="Farm config in this repo.")
@click.option("--dry-run", is_flag=True, help="Validate and print the commands without running them.")
@click.option("--token-secret", help="Secrets Manager secret (name or ARN) with the API token(s), read by the head's instance profile.")
@click.option("--token-ssm", help="SSM SecureString parameter with the API token(s), instead of --token-secret.")
@click.option("--insecure", is_flag=True, help="Deploy WITHOUT auth (the proxy listens on every interface of the head).")
def up(cluster_path: str, farm_config: str, dry_run: bool, token_secret: str | None, token_ssm: str | None, insecure: bool) -> None:
    """Validate, start the EC2 cluster (`ray up`), and deploy the farm on it."""
    import shlex
    import subprocess

    from deploy.checks import placeholders, validate_cluster_yaml
    from deploy.options import load_config
    from farm.errors import ConfigError

    try:
        prepared = validate_cluster_yaml(cluster_path)
        load_config(farm_config)
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    repo = Path(__file__).resolve().parents[1]
    try:
        relative = Path(farm_config).resolve().relative_to(repo)
    except ValueError:
        raise CliError(
            f"--farm-config must lie inside {repo}", "the repo is what gets synced to the nodes: move the config into it"
        ) from None
    if bool(token_secret) + bool(token_ssm) + insecure != 1:
        raise click.UsageError("give the token's secret (--token-secret or --token-ssm), or --insecure to deploy without auth")
    token = "--insecure"
    if token_secret or token_ssm:
        token = f"--token-secret {shlex.quote(token_secret)}" if token_secret else f"--token-ssm {shlex.quote(str(token_ssm))}"
    serve_command = f"farm serve --config {shlex.quote(str(relative))} --host 0.0.0.0 {token} --detach"
    region = shlex.quote(str(prepared["provider"].get("region", "")))
    remote = f"cd ~/reward-farm && FARM_BACKEND=bedrock AWS_DEFAULT_REGION={region} RAY_ADDRESS=auto {serve_command}"
    commands = [["ray", "up", "-y", cluster_path], ["ray", "exec", cluster_path, remote]]
    left = placeholders(prepared)
    for command in commands:
        click.echo("$ " + shlex.join(command))
    if left:
        for place in left:
            click.echo(f"  placeholder left: {place}", err=True)
        raise CliError(
            f"{len(left)} REPLACE_ME placeholder(s) left in {cluster_path}" + (" (dry run)" if dry_run else ""),
            "replace each one listed above with your value, then run this again",
        )
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
        raise CliError(f"invalid emulator settings:\n{exc}") from None
    if port:
        _require_free_port(host, port)

    async def serve() -> None:
        server = EmulatorServer(settings)
        url = await server.start(host, port)
        click.echo(f"Bedrock emulator listening on {url}", err=True)
        click.echo(
            f"  point a command at it: AWS_ENDPOINT_URL_BEDROCK_RUNTIME={url} AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x farm ...",
            err=True,
        )
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
    emulator with the environment that points replicas and workers at it. Prints the one line
    saying which backend and endpoint the judges use and where the config came from."""
    import os

    from deploy.options import load_config  # the Serve sections too, so a typo there fails every command alike
    from farm.embedded import choose_backend, describe_backend, start_embedded_emulator
    from farm.errors import ConfigError
    from farm.judges import needs_bedrock

    source = config_path or "packaged default (farm/defaults/default.yaml)"
    try:
        config = load_config(config_path)
        embedded = any(needs_bedrock(j) for j in config.judges) and choose_backend() == "emulator"
    except ConfigError as exc:
        message = str(exc)
        if message.startswith("environment variable"):
            raise CliError(message, "unset it, or fix its name: FARM_<SECTION>__<KEY>, e.g. FARM_BEDROCK__REGION") from None
        raise CliError(message, "fix the config (every key is listed under Configuration in the README)") from None
    if not embedded:
        click.echo(describe_backend(config, source), err=True)
        return config, None, {}
    emulator = start_embedded_emulator(config)
    click.echo(describe_backend(config, source, embedded=True), err=True)
    names = ("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
    return config, emulator, {k: os.environ[k] for k in names}


def _companion(output_path: str | Path, suffix: str) -> Path:
    path = Path(output_path)
    return path.with_name(path.name + suffix)


def _count_rows(path: str) -> int:
    """Non-blank lines of a local JSONL file (plain or gzip), for progress; without pyarrow, whose
    import would be a fifth of `farm score`'s start-up."""
    import gzip

    opener: Any = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as handle:
        return sum(1 for line in handle if line.strip())


def _claim_output(path: str, force: bool, *, inputs: tuple[str | None, ...] = ()) -> None:
    """Refuse a missing folder, an output that is one of this run's `inputs` (the config, the
    data: --force would destroy what the run reads), and an existing file unless `force`. Deletes
    nothing: outputs are written with `_write_output`/`_staging` and replace the old ones only
    when the run has succeeded, so a failed run keeps the previous results."""
    target = Path(path)
    folder = target.parent
    if not folder.is_dir():
        raise CliError(f"folder {folder} does not exist (for {path})", f"create it first: mkdir -p {folder}")
    for given in inputs:
        if given and "://" not in given and Path(given).resolve() == target.resolve():
            raise CliError(f"output {path} is also an input of this run ({given})", "write the output to another path")
    if target.exists() and not force:
        raise CliError(f"{path} already exists", "pass --force to overwrite it, or choose another output path")


def _staging(path: str | Path) -> Path:
    """A temporary file beside `path` (same folder, so `os.replace` is atomic)."""
    import os

    target = Path(path)
    return target.with_name(f".{target.name}.{os.getpid()}.tmp")


def _discard(*paths: Path) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def _write_output(path: str | Path, text: str) -> None:
    """Write `text` to a staging file and move it over `path`: the old file survives any failure."""
    import os

    staged = _staging(path)
    try:
        staged.write_text(text, encoding="utf-8")
        os.replace(staged, path)
    except BaseException:
        _discard(staged)
        raise


def _commit_score(staged: Path, output_path: str, summary: Any) -> None:
    """Move a completed run's results over --out; its errors file replaces the old one, and an old
    errors file is removed when this run had none (nothing stale beside the new results)."""
    import os

    os.replace(staged, output_path)
    errors, staged_errors = _companion(output_path, ".errors.jsonl"), _companion(staged, ".errors.jsonl")
    if staged_errors.exists():
        os.replace(staged_errors, errors)
        summary.errors_file = str(errors)
    else:
        errors.unlink(missing_ok=True)
    summary.output = str(output_path)


def _require_free_port(host: str, port: int) -> None:
    """Fail in one line, before anything starts, when the port is taken."""
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe_socket:
        probe_socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe_socket.bind((host, port))
        except OSError as exc:
            reason = "already in use" if exc.errno in (48, 98) else (exc.strerror or str(exc))
            raise CliError(
                f"cannot listen on {host}:{port}: {reason}", f"stop what holds it, or pass another --port (e.g. --port {port + 1})"
            ) from None


def _check_rescore_paths(inputs: tuple[str, ...], out: str, resume: bool) -> None:
    """The checks that need no Ray: local inputs exist, --out is not a finished or foreign run."""
    missing = [uri for uri in inputs if "://" not in uri and not Path(uri).is_file()]
    if missing:
        raise CliError(
            f"input {missing[0]} does not exist" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""), "check the path"
        )
    folder = Path(out)
    if "://" not in out and folder.is_dir() and any(folder.iterdir()) and not resume:
        raise CliError(f"{out} already holds results", "pass --resume to finish that run, or choose another --out")


def _quiet_ray(*, on_cluster: bool = False) -> dict[str, Any]:
    """Keep Ray's start-up chatter out of the user's way: the token-authentication notice of a
    local cluster, Serve's "New http_options ... will not be applied" on a local Ray this process
    starts (they were applied; `on_cluster` keeps it: on an existing cluster it is true, the
    running proxy keeps its options), and INFO lines from the controller, proxies and replicas
    (`FARM_RAY_LOG_LEVEL=INFO` brings them back). Returns the Serve logging config to pass to
    `serve.start`/`serve.run`."""
    import logging
    import os

    level = os.environ.get("FARM_RAY_LOG_LEVEL", "WARNING").upper()

    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)

    class _NotApplied(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return "will not be applied" not in record.getMessage()

    if not on_cluster:
        for name in ("ray.serve", "ray.serve._private.api"):
            logging.getLogger(name).addFilter(_NotApplied())
    return {"log_level": level}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    for line in text.splitlines():
        if "Failed to bind" in line or "address already in use" in line.lower():
            return line.strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _deploy_hint(exc: BaseException, port: int) -> str:
    text = str(exc).lower()
    if "bind" in text or "address already in use" in text:
        return f"port {port} is taken: stop what holds it, or pass another --port"
    return "see the Serve log above; `farm serve --help` lists the options"


def _print_summary(summary: dict[str, Any], summary_path: Path) -> None:
    echo = lambda text="": click.echo(text, err=True)  # noqa: E731
    echo()
    echo(f"scored {summary['rollouts']} rollouts -> {summary['output']}: {summary['degraded']}")
    rate = f" ({summary['rollouts_per_s']}/s)" if summary["rollouts_per_s"] else ""
    mean = summary["reward_mean"] if summary["reward_mean"] is not None else "n/a (no rollout got a reward)"
    echo(f"  {summary['elapsed_s']}s{rate}; results: {_counts(summary['status'])}; mean reward: {mean}")
    for name, counts in summary["judge_status"].items():
        echo(f"  judge {name:<16} {_counts(counts)}")
    if summary["flags"]:
        echo(f"  flags: {_counts(summary['flags'])}")
    if summary.get("escalation"):
        echo(f"  cascade: {summary['escalated']} of {summary['rollouts']} rollouts escalated")
        for name, counts in summary["escalation"].items():
            echo(f"    {name:<16} {_counts(counts)}")
    echo(f"  tokens: {summary['input_tokens']} in, {summary['output_tokens']} out; cache hits {summary['cache_hits']}")
    if summary.get("cache_read_tokens") or summary.get("cache_write_tokens"):
        echo(f"  prompt cache: {summary['cache_read_tokens']} tokens read, {summary['cache_write_tokens']} written")
    for name, kinds in (summary.get("max_tokens") or {}).items():  # tokens: what each judge writes, to pin max_tokens by
        for kind, seen in kinds.items():
            retried = f", {seen['retried_at_ceiling']} asked again at the ceiling" if seen["retried_at_ceiling"] else ""
            echo(
                f"  output tokens {name}/{kind}: p50 {seen['p50']}, p99 {seen['p99']}, max {seen['max']} over {seen['answers']} answers; "
                f"maxTokens {seen['max_tokens']} ({seen['mode']}, ceiling {seen['ceiling']}){retried}"
            )
    if summary.get("cost_usd") is not None:
        per = summary.get("cost_per_rollout_usd")
        per_text = f" (${per:.8f} per rollout)" if per is not None else ""
        uncached = summary.get("cost_without_prompt_cache_usd")
        if summary.get("cache_read_tokens") and uncached is not None:
            per_text += f"; ${uncached:.6f} without prompt caching"
        echo(f"  cost: ${summary['cost_usd']:.6f}{per_text} at list prices unless config `prices` says otherwise")
    if summary["invalid_rows"]:
        echo(f"  invalid rows: {summary['invalid_rows']} (see {summary['errors_file']})")
    echo(f"  summary: {summary_path}")


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))) or "none"


if __name__ == "__main__":
    main()
