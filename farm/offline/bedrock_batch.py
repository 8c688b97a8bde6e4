"""Bedrock batch inference for offline rescoring: the LLM judges' Converse calls go to S3 as
JSONL records, run as model invocation jobs at about half the on-demand price, and come back
into the same judges, so parsing, repair, calibration and aggregation are the on-demand path's.

Three steps. *Collect*: each scoring actor runs the ensemble with a `RecordingClient`, which
keeps every request the judges make (keyed by a hash of the request with its random fence tag
taken out) instead of sending it. *Submit*: the driver writes the records per model, splits them
to respect the service's records-per-job limits (a model under the minimum is scored on demand,
and the summary says so), creates the jobs, saves their ARNs beside the results (a resumed run
polls them instead of paying twice) and polls until they end. *Replay*: the actors score again
with a `ReplayClient` that answers each request from the job outputs, matched by record id (the
service does not keep input order); a request with no answer (a record error, a failed job, a
parse retry) goes on demand.

Batch jobs give no tool calling, so the batch run's LLM judges use the text-JSON path
(`structured_output: text`), which `extract_json` repairs when the model's JSON is sloppy.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from farm.bedrock import ConverseReply, ConverseRequest
from farm.config import FarmConfig, parse_config
from farm.errors import JudgeError
from farm.judges import needs_bedrock
from farm.offline.store import OutputStore

__all__ = [
    "BATCH_DISCOUNT",
    "BatchSettings",
    "Deferred",
    "RecordingClient",
    "ReplayClient",
    "batch_config",
    "billed_cost",
    "plan_jobs",
    "request_key",
    "run_batch_phase",
]

BATCH_DISCOUNT = 0.5
"""Bedrock batch inference bills Nova models at half the on-demand token price."""
_TAG = re.compile(r"<<<BEGIN (?:TASK|RESPONSE|RESPONSE_A|RESPONSE_B) ([0-9a-f]{12})>>>")
_STATE = "_batch/state.json"
_TERMINAL = frozenset({"Completed", "PartiallyCompleted", "Failed", "Stopped", "Expired"})


@dataclass(frozen=True)
class BatchSettings:
    s3_prefix: str
    """Where job inputs and outputs go: `s3://bucket/prefix`."""
    role_arn: str
    min_records: int = 100
    max_records: int = 50_000
    poll_s: float = 30.0
    region: str = "us-east-1"
    timeout_s: float = 7 * 24 * 3600.0


def batch_config(config: FarmConfig) -> FarmConfig:
    """The config with every Bedrock judge on the text-JSON path (batch jobs refuse toolConfig),
    and `maxTokens` pinned at its ceiling (tokens: a replayed answer is found by its request, so the
    limit must not be sized differently between recording and replay)."""
    data = config.model_dump(mode="json", by_alias=True)
    for judge, raw in zip(config.judges, data["judges"], strict=True):
        if needs_bedrock(judge) and "structured_output" in raw:
            raw["structured_output"] = "text"
        if needs_bedrock(judge) and "max_tokens" in raw:
            raw["max_tokens"] = judge.max_tokens_ceiling  # type: ignore[union-attr]
    return parse_config(data, source="batch config")


def request_key(request: ConverseRequest) -> str:
    """A record id for a request: its body hashed with the per-call fence tag taken out, so the
    same judge question asked again (with a fresh tag) finds the same answer."""
    text = json.dumps(request.to_api(), sort_keys=True, ensure_ascii=False)
    for tag in _TAG.findall(request.user_prefix + request.user_text):
        text = text.replace(tag, "")
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


class Deferred(JudgeError):
    """Raised by the recording client: this request will be answered by a batch job."""


class RecordingClient:
    """A Converse client that keeps the requests instead of sending them."""

    def __init__(self) -> None:
        self.records: dict[str, list[Any]] = {}
        """key -> [model, Converse body without modelId, times asked]"""

    async def converse(self, request: ConverseRequest, *, deadline: float, region: str | None = None) -> ConverseReply:
        key = request_key(request)
        if key in self.records:
            self.records[key][2] += 1
        else:
            body = request.to_api()
            body.pop("modelId")
            body.pop("serviceTier", None)  # a batch job has its own price; the on-demand tier does not apply
            self.records[key] = [request.model, body, 1]
        raise Deferred("deferred to a Bedrock batch job")

    async def aclose(self) -> None:
        return None


def reply_from_output(output: dict[str, Any]) -> ConverseReply:
    usage = output.get("usage", {})
    texts = [b["text"] for b in output.get("output", {}).get("message", {}).get("content", []) if "text" in b]
    return ConverseReply(
        text="".join(texts),
        tool_input=None,
        stop_reason=str(output.get("stopReason", "")),
        input_tokens=int(usage.get("inputTokens", 0)),
        output_tokens=int(usage.get("outputTokens", 0)),
        latency_ms=0.0,
        attempts=1,
    )


class ReplayClient:
    """Answers from batch outputs (each as often as it was asked when recorded); anything
    else, including a parse retry of an answer already used, goes to the on-demand client."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.stats = inner.stats
        self._answers: dict[str, list[Any]] = {}
        self.counters: Counter[str] = Counter()
        self.on_demand_tokens: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        """Per model: tokens of the calls that went on demand (billed at the full price)."""

    def add(self, answers: dict[str, list[Any]]) -> None:
        """A chunk's answers; chunks in flight on this actor at once may share a request, so
        uses add up and an answer stays until every chunk that brought it is done."""
        for key, (output, uses) in answers.items():
            entry = self._answers.get(key)
            if entry is None:
                self._answers[key] = [output, uses, 1]
            else:
                entry[1] += uses
                entry[2] += 1

    def forget(self, answers: dict[str, Any]) -> None:
        for key in answers:
            entry = self._answers.get(key)
            if entry is not None:
                entry[2] -= 1
                if entry[2] <= 0:
                    del self._answers[key]

    async def converse(self, request: ConverseRequest, *, deadline: float, region: str | None = None) -> ConverseReply:
        entry = self._answers.get(request_key(request))
        if entry is not None and entry[0] is not None and entry[1] > 0:
            entry[1] -= 1
            self.counters["batch_answers"] += 1
            return reply_from_output(entry[0])
        self.counters["on_demand_calls"] += 1
        reply = await self.inner.converse(request, deadline=deadline, region=region)
        tokens = self.on_demand_tokens[request.model]
        tokens[0] += reply.input_tokens
        tokens[1] += reply.output_tokens
        return reply

    async def aclose(self) -> None:
        await self.inner.aclose()


def plan_jobs(count: int, min_records: int, max_records: int) -> tuple[list[int], int]:
    """(record counts of the jobs, records left for on-demand) for `count` records: as few jobs as
    the maximum allows, evenly filled; when even filling would put a job under the minimum, full
    jobs and the remainder on demand; everything on demand when `count` is under the minimum."""
    if count < min_records:
        return [], count
    jobs = -(-count // max_records)
    base, extra = divmod(count, jobs)
    sizes = [base + (1 if i < extra else 0) for i in range(jobs)]
    if min(sizes) >= min_records:
        return sizes, 0
    full, rest = divmod(count, max_records)
    return [max_records] * full, rest


@dataclass
class _Job:
    model: str
    records: int
    input_uri: str
    output_uri: str
    arn: str = ""
    status: str = "Submitted"
    message: str | None = None
    succeeded: int = 0
    errors: int = 0


@dataclass
class _Phase:
    notes: list[str] = field(default_factory=list)
    jobs: list[_Job] = field(default_factory=list)
    answers: dict[str, Any] = field(default_factory=dict)
    tokens: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    record_errors: Counter[str] = field(default_factory=Counter)


def _safe(model: str) -> str:
    """A short name for a model's spool file, S3 input folder and job name, distinct per model:
    two ARNs of one account share a long prefix, and a shared name would mix their records."""
    digest = hashlib.blake2b(model.encode(), digest_size=4).hexdigest()
    return f"{re.sub(r'[^a-zA-Z0-9]+', '-', model).strip('-')[:21]}-{digest}"


def run_batch_phase(
    pool: Sequence[Any],
    files: Sequence[Any],
    store: OutputStore,
    chunk_rows: int,
    done: set[int],
    settings: BatchSettings,
    config: FarmConfig,
    *,
    log: Callable[[str], None] | None = None,
) -> tuple[dict[str, Any], Callable[[int], dict[str, Any] | None]]:
    """Collect, submit, poll and read the batch jobs for the chunks not yet committed.

    Returns the phase's summary and a function giving each chunk's answers (for its actors)."""
    import ray

    from farm.offline.plan import chunks
    from farm.offline.reader import iter_rows

    say = log or (lambda line: print(f"[bedrock-batch] {line}", file=sys.stderr, flush=True))
    started = time.monotonic()
    phase = _Phase()
    keys_by_chunk: dict[int, dict[str, int]] = {}
    spool = tempfile.TemporaryDirectory(prefix="farm-batch-")
    handles: dict[str, Any] = {}
    counts: Counter[str] = Counter()
    seen: set[str] = set()
    pending: dict[Any, int] = {}

    def drain(block: bool) -> None:
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=None if block else 0)
        for ref in ready:
            index = pending.pop(ref)
            records = ray.get(ref)
            keys_by_chunk[index] = {k: v[2] for k, v in records.items()}
            for key, (model, body, _uses) in records.items():
                if key in seen:
                    continue
                seen.add(key)
                counts[model] += 1
                if model not in handles:
                    handles[model] = open(f"{spool.name}/{_safe(model)}.jsonl", "w", encoding="utf-8")  # noqa: SIM115
                handles[model].write(json.dumps({"recordId": key, "modelInput": body}, ensure_ascii=False) + "\n")

    for index, rows in chunks(iter_rows(files), chunk_rows):
        if index in done:
            continue
        while len(pending) >= 2 * len(pool):
            drain(block=True)
        pending[pool[index % len(pool)].collect.remote(index, [(r.source, r.line, r.data) for r in rows])] = index
    while pending:
        drain(block=True)
    for handle in handles.values():
        handle.close()
    say(f"collected {sum(counts.values())} distinct judge requests for {len(keys_by_chunk)} chunks: {dict(counts)}")

    previous = store.read(_STATE)
    if previous is not None:
        state = json.loads(previous)
        phase.jobs = [_Job(**j) for j in state["jobs"]]
        say(f"resuming {len(phase.jobs)} batch job(s) submitted by the previous run")
        if not state.get("complete", True):  # it died while submitting: never submit (and pay) twice
            phase.notes.append(
                f"the previous run died while submitting batch jobs; {len(phase.jobs)} job(s) it created are used, "
                "and requests in none of them are scored on demand"
            )
    else:
        phase.jobs = _submit(spool.name, counts, settings, store, phase.notes, say)
    spool.cleanup()
    _poll(phase.jobs, settings, say)
    for job in phase.jobs:
        if job.status in ("Completed", "PartiallyCompleted", "Stopped"):
            _read_outputs(job, phase)
        if job.status != "Completed":
            phase.notes.append(f"job {job.arn.rsplit('/', 1)[-1]} ({job.model}) ended {job.status}: {job.message or ''}".strip())
    if phase.record_errors:
        phase.notes.append(f"{sum(phase.record_errors.values())} record(s) failed in batch and went on demand: {dict(phase.record_errors)}")
    answered = phase.answers

    def answers_for(index: int) -> dict[str, Any] | None:
        wanted = keys_by_chunk.get(index)
        if not wanted:
            return None
        return {k: [answered.get(k), uses] for k, uses in wanted.items() if k in answered}

    summary = {
        "jobs": [asdict(j) for j in phase.jobs],
        "requests": sum(counts.values()),
        "answered_in_batch": len(answered),
        "record_errors": dict(phase.record_errors),
        "notes": phase.notes,
        "batch_phase_s": round(time.monotonic() - started, 2),
        **_costs(phase.tokens, config),
    }
    return summary, answers_for


def _bedrock(settings: BatchSettings) -> Any:
    import boto3

    return boto3.client("bedrock", region_name=settings.region)


def _submit(
    spool: str, counts: Counter[str], settings: BatchSettings, store: OutputStore, notes: list[str], say: Callable[[str], None]
) -> list[_Job]:
    import boto3

    s3 = boto3.client("s3")
    bedrock = _bedrock(settings)
    bucket, _, prefix = settings.s3_prefix[5:].partition("/")
    run = hashlib.blake2b(store.uri.encode(), digest_size=4).hexdigest() + f"{int(time.time()) % 100000:05d}"
    base = f"{prefix.strip('/')}/{run}" if prefix.strip("/") else run
    jobs: list[_Job] = []
    for model, count in sorted(counts.items()):
        sizes, left = plan_jobs(count, settings.min_records, settings.max_records)
        if not sizes:
            minimum = settings.min_records
            notes.append(f"{model}: {count} requests is under the service minimum of {minimum} records per job; scored on demand")
            continue
        if len(sizes) > 1:
            notes.append(f"{model}: {count} requests split into {len(sizes)} jobs of at most {settings.max_records} records")
        if left:
            minimum = settings.min_records
            notes.append(f"{model}: the last {left} requests would make a job under the minimum of {minimum}; scored on demand")
        with open(f"{spool}/{_safe(model)}.jsonl", encoding="utf-8") as handle:
            for number, size in enumerate(sizes):
                lines = [handle.readline() for _ in range(size)]
                key = f"{base}/input/{_safe(model)}-{number}/records.jsonl"
                s3.put_object(Bucket=bucket, Key=key, Body="".join(lines).encode("utf-8"))
                job = _Job(
                    model=model,
                    records=size,
                    input_uri=f"s3://{bucket}/{key.rsplit('/', 1)[0]}/",
                    output_uri=f"s3://{bucket}/{base}/output/",
                )
                response = bedrock.create_model_invocation_job(
                    jobName=f"farm-{run}-{_safe(model)}-{number}"[:63],
                    roleArn=settings.role_arn,
                    clientRequestToken=f"farm-{run}-{number}-{_safe(model)}"[:256],
                    modelId=model,
                    modelInvocationType="Converse",
                    inputDataConfig={"s3InputDataConfig": {"s3Uri": job.input_uri, "s3InputFormat": "JSONL"}},
                    outputDataConfig={"s3OutputDataConfig": {"s3Uri": job.output_uri}},
                )
                job.arn = response["jobArn"]
                jobs.append(job)
                _save_state(store, jobs, complete=False)  # a driver killed mid-submission must not resubmit these
                say(f"submitted {job.arn.rsplit('/', 1)[-1]}: {size} records for {model}")
    _save_state(store, jobs, complete=True)
    return jobs


def _save_state(store: OutputStore, jobs: list[_Job], *, complete: bool) -> None:
    store.write(_STATE, json.dumps({"jobs": [asdict(j) for j in jobs], "complete": complete}, indent=1).encode())


def _poll(jobs: list[_Job], settings: BatchSettings, say: Callable[[str], None]) -> None:
    bedrock = _bedrock(settings)
    deadline = time.monotonic() + settings.timeout_s
    last: dict[str, str] = {}
    while True:
        open_jobs = [j for j in jobs if j.status not in _TERMINAL]
        for job in open_jobs:
            described = bedrock.get_model_invocation_job(jobIdentifier=job.arn)
            job.status, job.message = described["status"], described.get("message")
            job.succeeded, job.errors = described.get("successRecordCount", 0), described.get("errorRecordCount", 0)
            if last.get(job.arn) != job.status:
                say(f"{job.arn.rsplit('/', 1)[-1]} ({job.model}): {job.status}")
                last[job.arn] = job.status
        if all(j.status in _TERMINAL for j in jobs):
            return
        if time.monotonic() > deadline:
            for job in jobs:
                if job.status not in _TERMINAL:
                    bedrock.stop_model_invocation_job(jobIdentifier=job.arn)
                    job.status, job.message = "Stopped", f"stopped by farm after {settings.timeout_s:.0f}s"
            return
        time.sleep(settings.poll_s)


def _read_outputs(job: _Job, phase: _Phase) -> None:
    import boto3

    s3 = boto3.client("s3")
    bucket, _, prefix = job.output_uri[5:].partition("/")
    folder = f"{prefix}{job.arn.rsplit('/', 1)[-1]}/"
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=folder)
    for key in (o["Key"] for page in pages for o in page.get("Contents", [])):
        if not key.endswith(".jsonl.out"):
            continue
        for line in s3.get_object(Bucket=bucket, Key=key)["Body"].iter_lines():
            if not line.strip():
                continue
            record = json.loads(line)
            if "modelOutput" in record:
                phase.answers[record["recordId"]] = record["modelOutput"]
                usage = record["modelOutput"].get("usage", {})
                phase.tokens[job.model][0] += int(usage.get("inputTokens", 0))
                phase.tokens[job.model][1] += int(usage.get("outputTokens", 0))
            else:
                error = record.get("error") or {}
                phase.record_errors[str(error.get("errorCode", "unknown"))] += 1


def billed_cost(batch: dict[str, Any], on_demand_tokens: dict[str, list[int]], config: FarmConfig) -> dict[str, Any] | None:
    """What the LLM calls of a batch-mode run are billed: the batch answers at the batch price
    plus the calls that went on demand at the full price; None when a model has no price."""
    cost = batch.get("cost")
    if cost is None:
        return None
    on_demand = 0.0
    for model, (tokens_in, tokens_out) in on_demand_tokens.items():
        price = config.prices.get(model)
        if price is None:
            return None
        on_demand += tokens_in * price.per_token("input") + tokens_out * price.per_token("output")
    return {**cost, "on_demand_calls_usd": round(on_demand, 6), "billed_usd": round(cost["batch_usd"] + on_demand, 6)}


def _costs(tokens: dict[str, list[int]], config: FarmConfig) -> dict[str, Any]:
    """What the batch answers cost at the batch price, what they would have cost on demand, and
    the difference; None where the config's price table lacks a model."""
    on_demand = 0.0
    unpriced = []
    for model, (tokens_in, tokens_out) in tokens.items():
        price = config.prices.get(model)
        if price is None:
            unpriced.append(model)
            continue
        on_demand += tokens_in * price.per_token("input") + tokens_out * price.per_token("output")
    if unpriced:
        return {"batch_tokens": {m: t for m, t in tokens.items()}, "cost": None, "unpriced_models": unpriced}
    return {
        "batch_tokens": {m: t for m, t in tokens.items()},
        "cost": {
            "on_demand_equivalent_usd": round(on_demand, 6),
            "batch_usd": round(on_demand * BATCH_DISCOUNT, 6),
            "saved_usd": round(on_demand * (1 - BATCH_DISCOUNT), 6),
            "discount": BATCH_DISCOUNT,
        },
    }
