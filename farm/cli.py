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
    from farm.config import load_config
    from farm.embedded import choose_backend, start_embedded_emulator
    from farm.errors import ConfigError
    from farm.judges import needs_bedrock
    from farm.scorefile import score_file

    try:
        config = load_config(config_path)
        emulator = None
        if any(needs_bedrock(j) for j in config.judges) and choose_backend() == "emulator":
            emulator = start_embedded_emulator(config)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    total = _count_lines(input_path)
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
@click.option("--seed", type=int)
@click.option("--settings", "settings_path", type=click.Path(exists=True, dir_okay=False), help="Emulator settings YAML.")
def emulator(host: str, port: int, settings_path: str | None, faults: tuple[str, ...], **values: Any) -> None:
    """Run the Bedrock emulator: Converse over loopback HTTP with quotas, faults and a simulated judge."""
    import yaml
    from pydantic import ValidationError

    from farm.emulator import EmulatorServer, EmulatorSettings

    data: dict[str, Any] = yaml.safe_load(Path(settings_path).read_text(encoding="utf-8")) or {} if settings_path else {}
    judge_keys = ("noise", "position_bias", "length_bias", "injection_susceptibility")
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


def _count_lines(path: str) -> int:
    import gzip

    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as handle:
        return sum(1 for line in handle if line.strip())


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
