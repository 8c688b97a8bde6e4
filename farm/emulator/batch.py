"""The emulator's Bedrock batch inference control plane (service `bedrock`, rest-json):
CreateModelInvocationJob, GetModelInvocationJob, ListModelInvocationJobs, StopModelInvocationJob.

Jobs read Converse-format JSONL records (`{"recordId", "modelInput"}`) from an S3 prefix and
write, per input file, `<output>/<jobId>/<file>.jsonl.out` (each record with `modelOutput`, or with
`error: {errorCode, errorMessage}` for a record that failed) plus `manifest.json.out`, in an order
that is not the input order, as the service documents. States follow the service: Submitted,
Validating, InProgress, then Completed, PartiallyCompleted, Failed or Stopping/Stopped. A job
outside the record limits fails validation. S3 is whatever `AWS_ENDPOINT_URL_S3` names (tests:
moto's server on loopback); the simulated judge, faults and token counts are the Converse path's.
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["BatchJob", "BatchJobs", "BatchPlaneSettings"]

TERMINAL = frozenset({"Completed", "PartiallyCompleted", "Failed", "Stopped", "Expired"})


class BatchPlaneSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_records: int = Field(default=100, ge=1)
    """The service's minimum records per job (a per-model quota; 100 by default)."""
    max_records: int = Field(default=50_000, ge=1)
    """The service's maximum records per job (50,000 by default)."""
    queue_s: float = Field(default=0.2, ge=0)
    """Seconds a job waits in Submitted/Validating before it runs."""
    record_ms: float = Field(default=0.0, ge=0)
    """Simulated processing time per record."""


@dataclass
class BatchJob:
    arn: str
    job_id: str
    name: str
    model: str
    role_arn: str
    input_uri: str
    output_uri: str
    token: str | None
    invocation_type: str
    status: str = "Submitted"
    message: str | None = None
    submit_time: float = field(default_factory=time.time)
    last_modified: float = field(default_factory=time.time)
    end_time: float | None = None
    total: int = 0
    processed: int = 0
    succeeded: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    stop: bool = False

    def set(self, status: str, message: str | None = None) -> None:
        self.status = status
        self.message = message if message is not None else self.message
        self.last_modified = time.time()
        if status in TERMINAL:
            self.end_time = self.last_modified

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "jobArn": self.arn,
            "jobName": self.name,
            "modelId": self.model,
            "roleArn": self.role_arn,
            "status": self.status,
            "submitTime": _iso(self.submit_time),
            "lastModifiedTime": _iso(self.last_modified),
            "inputDataConfig": {"s3InputDataConfig": {"s3Uri": self.input_uri, "s3InputFormat": "JSONL"}},
            "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": self.output_uri}},
            "modelInvocationType": self.invocation_type,
            "totalRecordCount": self.total,
            "processedRecordCount": self.processed,
            "successRecordCount": self.succeeded,
            "errorRecordCount": self.errors,
        }
        if self.token:
            out["clientRequestToken"] = self.token
        if self.message:
            out["message"] = self.message
        if self.end_time is not None:
            out["endTime"] = _iso(self.end_time)
        return out


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _split(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


class BatchJobs:
    """Batch jobs of one emulator; `register` adds their routes to its aiohttp app."""

    def __init__(self, server: Any, settings: BatchPlaneSettings | None = None):
        self.server = server
        self.settings = settings or BatchPlaneSettings()
        self.jobs: dict[str, BatchJob] = {}
        self.stats: dict[str, Counter[str]] = {}
        """Per model: records, errors, input_tokens, output_tokens (what batch jobs processed)."""
        self._tasks: set[asyncio.Task[None]] = set()

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_post("/model-invocation-job", self._create)
        router.add_get("/model-invocation-jobs", self._list)
        router.add_post("/model-invocation-job/{job:.+}/stop", self._stop)
        router.add_get("/model-invocation-job/{job:.+}", self._get)

    # --- control plane ----------------------------------------------------------------

    async def _create(self, request: web.Request) -> web.Response:
        from farm.emulator.server import _base_model, _error

        try:
            body = json.loads(await request.read() or b"{}")
        except json.JSONDecodeError:
            return _error(400, "SerializationException", "Could not parse the request body as JSON.")
        missing = [k for k in ("jobName", "roleArn", "modelId", "inputDataConfig", "outputDataConfig") if not body.get(k)]
        if missing:
            return _error(400, "ValidationException", f"Missing required field(s): {', '.join(missing)}.")
        token = body.get("clientRequestToken")
        for job in self.jobs.values():
            if token and job.token == token:
                return web.json_response({"jobArn": job.arn})
            if job.name == body["jobName"]:
                return _error(400, "ConflictException", f"A job named {body['jobName']!r} already exists.")
        if _base_model(body["modelId"]) is None:
            return _error(400, "ValidationException", f"The provided model identifier is invalid: {body['modelId']!r}.")
        try:
            input_uri = body["inputDataConfig"]["s3InputDataConfig"]["s3Uri"]
            output_uri = body["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"]
            _split(input_uri), _split(output_uri)
        except (KeyError, TypeError, ValueError) as exc:
            return _error(400, "ValidationException", f"inputDataConfig/outputDataConfig need s3Uri values: {exc}")
        job_id = "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(12))
        region = _region(request)
        job = BatchJob(
            arn=f"arn:aws:bedrock:{region}:000000000000:model-invocation-job/{job_id}",
            job_id=job_id,
            name=body["jobName"],
            model=body["modelId"],
            role_arn=body["roleArn"],
            input_uri=input_uri,
            output_uri=output_uri,
            token=token,
            invocation_type=body.get("modelInvocationType") or "InvokeModel",
        )
        self.jobs[job_id] = job
        task = asyncio.get_running_loop().create_task(self._run(job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return web.json_response({"jobArn": job.arn})

    def _find(self, identifier: str) -> BatchJob | None:
        return self.jobs.get(identifier.rsplit("/", 1)[-1])

    async def _get(self, request: web.Request) -> web.Response:
        from farm.emulator.server import _error

        job = self._find(request.match_info["job"])
        if job is None:
            return _error(404, "ResourceNotFoundException", f"No model invocation job {request.match_info['job']!r}.")
        return web.json_response(job.describe())

    async def _list(self, request: web.Request) -> web.Response:
        status, name = request.query.get("statusEquals"), request.query.get("nameContains")
        jobs = [j for j in self.jobs.values() if (not status or j.status == status) and (not name or name in j.name)]
        jobs.sort(key=lambda j: j.submit_time, reverse=request.query.get("sortOrder", "Descending") == "Descending")
        start = int(request.query.get("nextToken") or 0)
        size = int(request.query.get("maxResults") or 1000)
        page = jobs[start : start + size]
        out: dict[str, Any] = {"invocationJobSummaries": [j.describe() for j in page]}
        if start + size < len(jobs):
            out["nextToken"] = str(start + size)
        return web.json_response(out)

    async def _stop(self, request: web.Request) -> web.Response:
        from farm.emulator.server import _error

        job = self._find(request.match_info["job"])
        if job is None:
            return _error(404, "ResourceNotFoundException", f"No model invocation job {request.match_info['job']!r}.")
        if job.status in TERMINAL or job.status == "Stopping":
            return _error(400, "ValidationException", f"Job {job.job_id} is {job.status} and cannot be stopped.")
        job.stop = True
        job.set("Stopping")
        return web.json_response({})

    # --- the data plane: one job ------------------------------------------------------

    async def _run(self, job: BatchJob) -> None:
        try:
            await asyncio.sleep(self.settings.queue_s / 2)
            job.set("Validating")
            files = await asyncio.to_thread(self._read_inputs, job)
            job.total = sum(len(records) for _, records in files)
            await asyncio.sleep(self.settings.queue_s / 2)
            if job.stop:
                job.set("Stopped")
                return
            if not self.settings.min_records <= job.total <= self.settings.max_records:
                job.set(
                    "Failed",
                    f"The job has {job.total} records; a job needs between {self.settings.min_records} "
                    f"and {self.settings.max_records} records.",
                )
                return
            job.set("InProgress")
            outputs = []
            for name, records in files:
                lines = []
                for index, record in enumerate(records):
                    if job.stop:
                        break
                    lines.append(self._answer(job, record))
                    job.processed += 1
                    if self.settings.record_ms and index % 50 == 49:
                        await asyncio.sleep(self.settings.record_ms * 50 / 1000)
                    elif index % 500 == 499:
                        await asyncio.sleep(0)
                random.Random(f"{job.job_id}:{name}").shuffle(lines)  # the service does not keep input order
                outputs.append((name, lines))
            await asyncio.to_thread(self._write_outputs, job, outputs)
            if job.stop:
                job.set("Stopped")
            elif job.errors == 0:
                job.set("Completed")
            elif job.succeeded == 0:
                job.set("Failed", "Every record failed; see the error objects in the output files.")
            else:
                job.set("PartiallyCompleted", f"{job.errors} of {job.total} records failed; see the output files.")
        except Exception as exc:  # noqa: BLE001 - S3 unreachable, bad input: the job fails with the reason, as the service does
            job.set("Failed", f"{type(exc).__name__}: {exc}")

    def _s3(self) -> Any:
        import boto3

        return boto3.client("s3")

    def _read_inputs(self, job: BatchJob) -> list[tuple[str, list[dict[str, Any]]]]:
        s3 = self._s3()
        bucket, key = _split(job.input_uri)
        if key.endswith(".jsonl"):
            keys = [key]
        else:
            pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key)
            keys = sorted(o["Key"] for page in pages for o in page.get("Contents", []) if o["Key"].endswith(".jsonl"))
        if not keys:
            raise ValueError(f"no .jsonl input files under {job.input_uri}")
        files = []
        for k in keys:
            text = s3.get_object(Bucket=bucket, Key=k)["Body"].read().decode("utf-8")
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
            files.append((k.rsplit("/", 1)[-1], records))
        return files

    def _answer(self, job: BatchJob, record: dict[str, Any]) -> str:
        from farm.emulator.server import _FAULT_ERRORS, _ApiError, _count_tokens, _validate
        from farm.emulator.simjudge import answer_request

        stats = self.stats.setdefault(job.model, Counter())
        stats["records"] += 1
        server = self.server
        out: dict[str, Any] = {"recordId": record.get("recordId") or secrets.token_hex(6), "modelInput": record.get("modelInput")}
        _rpm, _tpm, _latency, faults, profile, _access = server.settings.for_model(job.model)
        try:
            body = record.get("modelInput")
            if not isinstance(body, dict):
                raise _ApiError(400, "ValidationException", "modelInput must be a JSON object.")
            if job.invocation_type == "Converse" and "toolConfig" in body:
                raise _ApiError(400, "ValidationException", "Tool use is not supported in batch inference jobs of the Converse type.")
            parsed = _validate(body, server.settings.max_output_tokens)
            fault = server._draw_fault(faults)
            if fault in _FAULT_ERRORS:
                raise _ApiError(*_FAULT_ERRORS[fault])
            answer = answer_request(parsed.system_text + "\n" + parsed.user_text, None, profile, job.model)  # rules may be in system
            content, stop_reason, text = server._render(answer, None, fault, _model_stats())
            input_tokens, output_tokens = _count_tokens(parsed.all_text), _count_tokens(text)
            if output_tokens > parsed.max_tokens:
                content = [{"text": text[: parsed.max_tokens * 4]}]
                output_tokens, stop_reason = parsed.max_tokens, "max_tokens"
            out["modelOutput"] = {
                "output": {"message": {"role": "assistant", "content": content}},
                "stopReason": stop_reason,
                "usage": {"inputTokens": input_tokens, "outputTokens": output_tokens, "totalTokens": input_tokens + output_tokens},
            }
            stats["input_tokens"] += input_tokens
            stats["output_tokens"] += output_tokens
            job.input_tokens += input_tokens
            job.output_tokens += output_tokens
            job.succeeded += 1
        except _ApiError as exc:
            out["error"] = {"errorCode": exc.status, "errorMessage": f"{exc.code}: {exc.message}"}
            stats["errors"] += 1
            job.errors += 1
        return json.dumps(out, ensure_ascii=False)

    def _write_outputs(self, job: BatchJob, outputs: list[tuple[str, list[str]]]) -> None:
        s3 = self._s3()
        bucket, prefix = _split(job.output_uri)
        base = f"{prefix.rstrip('/')}/{job.job_id}/" if prefix else f"{job.job_id}/"
        for name, lines in outputs:
            s3.put_object(Bucket=bucket, Key=base + name + ".out", Body=("\n".join(lines) + "\n").encode("utf-8"))
        manifest = {
            "totalRecordCount": job.total,
            "processedRecordCount": job.processed,
            "successRecordCount": job.succeeded,
            "errorRecordCount": job.errors,
            "inputTokenCount": job.input_tokens,
            "outputTokenCount": job.output_tokens,
        }
        s3.put_object(Bucket=bucket, Key=base + "manifest.json.out", Body=json.dumps(manifest).encode("utf-8"))


def _model_stats() -> Any:
    from farm.emulator.server import ModelStats

    return ModelStats()


def _region(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    if "Credential=" in header:
        scope = header.split("Credential=", 1)[1].split(",", 1)[0].split("/")
        if len(scope) == 5:
            return scope[2]
    return "us-east-1"
