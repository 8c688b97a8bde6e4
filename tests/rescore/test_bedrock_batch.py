"""Bedrock batch inference: the emulator's control plane over a real S3 server (moto on
loopback), and `rescore(bedrock_batch=...)` end to end against on-demand scoring."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from farm.config import parse_config
from farm.emulator import EmulatorSettings, EmulatorThread
from farm.offline.bedrock_batch import plan_jobs, request_key
from tests.conftest import gsm8k_rollouts

pytestmark = [pytest.mark.integration]

LITE, MICRO = "amazon.nova-lite-v1:0", "amazon.nova-micro-v1:0"


@pytest.fixture
def batch_emulator(s3_env, monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatorThread]:
    with EmulatorThread(EmulatorSettings(latency_ms=2, latency_sigma=0, rpm=600_000, tpm=1_000_000_000)) as emu:
        monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK", emu.url)
        monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", emu.url)
        yield emu


def bedrock():  # noqa: ANN201
    import boto3

    return boto3.client("bedrock", region_name="us-east-1")


def record(i: int, tool: bool = False) -> dict:
    body = {
        "messages": [
            {"role": "user", "content": [{"text": f"## Response to grade\n<<<BEGIN RESPONSE t{i}>>>\nA: {i}\n<<<END RESPONSE t{i}>>>"}]}
        ],
        "inferenceConfig": {"maxTokens": 200, "temperature": 0},
    }
    if tool:
        body["toolConfig"] = {"tools": [{"toolSpec": {"name": "grade", "inputSchema": {"json": {"type": "object"}}}}]}
    return {"recordId": f"rec{i:04d}", "modelInput": body}


def put_records(s3, key: str, records: list[dict]) -> str:  # noqa: ANN001
    s3.client().put_object(Bucket=s3.bucket, Key=key, Body="".join(json.dumps(r) + "\n" for r in records).encode())
    return f"s3://{s3.bucket}/{key.rsplit('/', 1)[0]}/"


def create(name: str, input_uri: str, output_uri: str) -> str:
    return bedrock().create_model_invocation_job(
        jobName=name,
        roleArn="arn:aws:iam::000000000000:role/batch",
        modelId=LITE,
        modelInvocationType="Converse",
        inputDataConfig={"s3InputDataConfig": {"s3Uri": input_uri}},
        outputDataConfig={"s3OutputDataConfig": {"s3Uri": output_uri}},
    )["jobArn"]


def wait_terminal(arn: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        job = bedrock().get_model_invocation_job(jobIdentifier=arn)
        if not seen or seen[-1] != job["status"]:
            seen.append(job["status"])
        if job["status"] in ("Completed", "PartiallyCompleted", "Failed", "Stopped"):
            job["seen"] = seen
            return job
        time.sleep(0.05)
    pytest.fail(f"job {arn} did not finish: {seen}")


def test_emulator_batch_jobs_states_outputs_errors_and_limits(batch_emulator, s3_env) -> None:
    s3 = s3_env
    records = [record(i, tool=(i == 7)) for i in range(150)]
    batch_emulator.server.batch.settings.queue_s = 0.3
    arn = create("ok-job", put_records(s3, "cp/in/a/records.jsonl", records), f"s3://{s3.bucket}/cp/out/")
    job = wait_terminal(arn)
    order = ["Submitted", "Validating", "InProgress", "PartiallyCompleted"]
    assert job["seen"] == sorted(job["seen"], key=order.index) and job["seen"][-1] == "PartiallyCompleted"  # states only move forward
    assert job["status"] == "PartiallyCompleted" and job["successRecordCount"] == 149 and job["errorRecordCount"] == 1
    job_id = arn.rsplit("/", 1)[-1]
    out = [json.loads(line) for line in s3.get(f"cp/out/{job_id}/records.jsonl.out").splitlines()]
    assert sorted(o["recordId"] for o in out) == sorted(r["recordId"] for r in records)
    assert [o["recordId"] for o in out] != [r["recordId"] for r in records]  # order not kept: match by id
    failed = [o for o in out if "error" in o]
    assert [o["recordId"] for o in failed] == ["rec0007"] and failed[0]["error"]["errorCode"] == 400
    assert "Tool use is not supported" in failed[0]["error"]["errorMessage"]
    ok = next(o for o in out if o["recordId"] == "rec0001")
    assert ok["modelOutput"]["usage"]["inputTokens"] > 0 and ok["modelOutput"]["output"]["message"]["content"][0]["text"]
    manifest = json.loads(s3.get(f"cp/out/{job_id}/manifest.json.out"))
    assert manifest["totalRecordCount"] == 150 and manifest["errorRecordCount"] == 1

    small = create("too-small", put_records(s3, "cp/in/b/records.jsonl", records[:20]), f"s3://{s3.bucket}/cp/out/")
    failed_job = wait_terminal(small)
    assert failed_job["status"] == "Failed" and "between 100 and 50000 records" in failed_job["message"]

    batch_emulator.server.batch.settings.record_ms = 50.0  # slow enough to stop midway
    slow = create("to-stop", put_records(s3, "cp/in/c/records.jsonl", records), f"s3://{s3.bucket}/cp/out/")
    deadline = time.monotonic() + 30
    while bedrock().get_model_invocation_job(jobIdentifier=slow)["status"] != "InProgress":
        assert time.monotonic() < deadline, "the slow job never reached InProgress"
        time.sleep(0.05)
    bedrock().stop_model_invocation_job(jobIdentifier=slow)
    stopped = wait_terminal(slow)
    assert stopped["status"] == "Stopped" and stopped["processedRecordCount"] < 150
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError, match="ValidationException"):
        bedrock().stop_model_invocation_job(jobIdentifier=slow)
    with pytest.raises(ClientError, match="ResourceNotFoundException"):
        bedrock().get_model_invocation_job(jobIdentifier="abcdefabcdef")
    listed = bedrock().list_model_invocation_jobs(statusEquals="Failed")["invocationJobSummaries"]
    assert [j["jobName"] for j in listed] == ["too-small"]
    assert {j["jobName"] for j in bedrock().list_model_invocation_jobs()["invocationJobSummaries"]} == {"ok-job", "too-small", "to-stop"}


def test_job_planning_respects_min_and_max_records() -> None:
    assert plan_jobs(99, 100, 50_000) == ([], 99)
    assert plan_jobs(100, 100, 50_000) == ([100], 0)
    assert plan_jobs(50_001, 100, 50_000) == ([25_001, 25_000], 0)
    sizes, left = plan_jobs(120_000, 100, 50_000)
    assert sum(sizes) == 120_000 and max(sizes) <= 50_000 and min(sizes) >= 100 and left == 0
    assert plan_jobs(720, 250, 300) == ([300, 300], 120)  # even thirds (240) would fall under the minimum


def test_request_key_ignores_the_random_fence_tag() -> None:
    from farm.bedrock import ConverseRequest
    from farm.prompting import rubric_prompt

    config = parse_config({"judges": [{"name": "r", "kind": "rubric", "model": LITE, "criteria": [{"name": "c", "description": "d"}]}]})
    criteria = config.judges[0].criteria

    def key(response: str) -> str:
        prompt = rubric_prompt(task="t", prompt="p", response=response, reference=None, criteria=criteria, max_chars=1000, structured=False)
        return request_key(ConverseRequest(model=LITE, user_text=prompt.user, user_prefix=prompt.prefix, system_text=prompt.system))

    assert key("x") == key("x") and key("x") != key("y")


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.ray
@pytest.mark.slow
def test_bedrock_batch_rescore_matches_on_demand_rewards(ray_local, batch_emulator, s3_env, tmp_path, report) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from actors.rescore import rescore
    from farm.offline.bedrock_batch import BatchSettings

    rows = gsm8k_rollouts(limit=60)  # 240 rows in 60 groups: 240 rubric requests, 720 preference requests
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = parse_config(
        {
            "judges": [
                {"name": "answer", "kind": "final_answer", "weight": 2},
                {"name": "rubric", "kind": "rubric", "model": LITE, "criteria": [{"name": "correctness", "description": "Correct."}]},
                # pairwise (the default before listwise): 12 requests per group, enough to split into jobs
                {
                    "name": "preference",
                    "kind": "preference",
                    "model": MICRO,
                    "group_reward": "bradley_terry",
                    "comparison": "pairwise",
                    "anchor": "none",
                },
            ],
            "bedrock": {"default_quota": {"rpm": 600000, "tpm": 1000000000}, "max_concurrency": 32},
            "prices": {
                LITE: {"input_per_1k": 0.00006, "output_per_1k": 0.00024},
                MICRO: {"input_per_1k": 0.000035, "output_per_1k": 0.00014},
            },
            "cache": {"enabled": False},
        }
    )
    env = {k: v for k, v in s3_env.env().items()} | {"AWS_ENDPOINT_URL_BEDROCK_RUNTIME": batch_emulator.url}
    on_demand = rescore([str(source)], f"s3://{s3_env.bucket}/od", config, env=env, chunk_rows=80)
    od_calls = {m: s.received for m, s in batch_emulator.stats().items()}
    batch_emulator.reset()
    role = "arn:aws:iam::000000000000:role/b"
    settings = BatchSettings(s3_prefix=f"s3://{s3_env.bucket}/jobs", role_arn=role, min_records=250, max_records=300, poll_s=0.2)
    batched = rescore([str(source)], f"s3://{s3_env.bucket}/batch", config, env=env, chunk_rows=80, bedrock_batch=settings)
    calls = {m: s.received for m, s in batch_emulator.stats().items()}
    info = batched.report["bedrock_batch"]

    def rewards(prefix: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for key in s3_env.keys(prefix + "/part-"):
            table = pq.read_table(pa.BufferReader(s3_env.get(key)), columns=["id", "reward"])
            out.update(zip(table.column("id").to_pylist(), table.column("reward").to_pylist(), strict=True))
        return out

    report(
        f"bedrock batch on {len(rows)} rows: on-demand Nova calls {od_calls}, batch-mode on-demand calls {calls}, "
        f"batch records {sum(j['records'] for j in info['jobs'])} in {len(info['jobs'])} jobs, cost {info['cost']}, notes {info['notes']}"
    )
    assert rewards("od") == pytest.approx(rewards("batch")) and len(rewards("batch")) == len(rows)
    assert any("under the service minimum of 250" in n and LITE in n for n in info["notes"])  # 240 rubric requests: on demand
    assert any(MICRO in n and "split into 2 jobs" in n for n in info["notes"])  # 720 preference requests: 300 + 300 ...
    assert any(MICRO in n and "last 120 requests" in n for n in info["notes"])  # ... + 120 on demand
    assert [j["status"] for j in info["jobs"]] == ["Completed"] * 2 and {j["model"] for j in info["jobs"]} == {MICRO}
    assert calls[MICRO] == 120 and calls[LITE] == od_calls[LITE] == 240
    assert info["replay"] == {"batch_answers": 600, "on_demand_calls": 360} and info["cost"]["saved_usd"] > 0
    jobs_before = set(batch_emulator.server.batch.jobs)
    for key in s3_env.keys("batch/part-")[:2]:  # as if the run had died before these two chunks
        s3_env.client().delete_object(Bucket=s3_env.bucket, Key=key)
    resumed = rescore([str(source)], f"s3://{s3_env.bucket}/batch", config, env=env, chunk_rows=80, bedrock_batch=settings, resume=True)
    assert set(batch_emulator.server.batch.jobs) == jobs_before  # the saved jobs are polled, not paid for twice
    assert resumed.report["bedrock_batch"]["jobs"] == info["jobs"] and resumed.report["bedrock_batch"]["replay"]["batch_answers"] > 0
    assert rewards("batch") == pytest.approx(rewards("od")) and resumed.report["rows"] == len(rows)
    cost = info["cost"]
    assert batched.report["total_cost_usd"] == cost["billed_usd"]
    assert cost["billed_usd"] == pytest.approx(cost["batch_usd"] + cost["on_demand_calls_usd"], abs=1e-5)
    assert cost["on_demand_calls_usd"] > 0 and batched.report["total_cost_usd"] < on_demand.report["total_cost_usd"]


@pytest.mark.ray
@pytest.mark.slow
def test_cli_bedrock_batch_reports_jobs_and_saving(batch_emulator, s3_env, tmp_path) -> None:
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    rows = gsm8k_rollouts(limit=30)
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = tmp_path / "farm.yaml"
    config.write_text(
        "judges:\n  - {name: answer, kind: final_answer}\n"
        f"  - {{name: rubric, kind: rubric, model: {LITE}, criteria: [{{name: c, description: Correct.}}]}}\n"
        f"prices: {{{LITE}: {{input_per_1k: 0.00006, output_per_1k: 0.00024}}}}\n"
    )
    env = {**os.environ, "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("RAY_ADDRESS", None)
    out = f"s3://{s3_env.bucket}/cli-batch"
    command = [sys.executable, "-m", "farm.cli", "rescore", str(source), "--out", out, "--config", str(config), "--bedrock-batch"]
    command += ["--batch-min-records", "100", "--batch-poll-s", "0.2", "--workers", "1"]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "batch: 120 requests in 1 job(s) (Completed)" in done.stderr and "saved $" in done.stderr
    summary = json.loads(s3_env.get("cli-batch.summary.json"))
    assert summary["rows"] == 120 and summary["bedrock_batch"]["replay"] == {"batch_answers": 120}
    assert s3_env.keys("cli-batch/_batch/")  # job inputs and outputs under <out>/_batch by default


def test_driver_killed_mid_submission_does_not_submit_twice(batch_emulator, s3_env, tmp_path, monkeypatch) -> None:
    """Jobs created before the driver died are saved as they are created, so the resume polls
    them instead of creating (and paying for) them again."""
    from collections import Counter

    from farm.config import load_config
    from farm.offline import bedrock_batch
    from farm.offline.store import OutputStore

    spool = tmp_path / "spool"
    spool.mkdir()
    for model in (LITE, MICRO):
        lines = [json.dumps({"recordId": f"{m}{i:04d}", "modelInput": record(i)["modelInput"]}) for m in (model[7:11],) for i in range(100)]
        (spool / f"{bedrock_batch._safe(model)}.jsonl").write_text("\n".join(lines) + "\n")
    real = bedrock_batch._bedrock

    class KilledAfterOneJob:  # the real client, with the driver "killed" before its second job
        def __init__(self, inner) -> None:  # noqa: ANN001
            self.inner, self.created = inner, 0

        def create_model_invocation_job(self, **kwargs):  # noqa: ANN003, ANN201
            if self.created:
                raise KeyboardInterrupt("driver killed")
            self.created += 1
            return self.inner.create_model_invocation_job(**kwargs)

    monkeypatch.setattr(bedrock_batch, "_bedrock", lambda settings: KilledAfterOneJob(real(settings)))
    settings = bedrock_batch.BatchSettings(s3_prefix=f"s3://{s3_env.bucket}/kill", role_arn="arn:aws:iam::000000000000:role/b", poll_s=0.05)
    store = OutputStore(str(tmp_path / "out"))
    with pytest.raises(KeyboardInterrupt):
        bedrock_batch._submit(str(spool), Counter({LITE: 100, MICRO: 100}), settings, store, [], lambda _line: None)
    monkeypatch.setattr(bedrock_batch, "_bedrock", real)

    summary, _ = bedrock_batch.run_batch_phase([], [], store, 10, set(), settings, load_config(None), log=lambda _line: None)
    created = bedrock().list_model_invocation_jobs(nameContains="farm-")["invocationJobSummaries"]
    assert len(created) == 1  # nothing submitted twice
    assert [j["arn"] for j in summary["jobs"]] == [created[0]["jobArn"]]
    assert summary["jobs"][0]["status"] == "Completed" and summary["answered_in_batch"] == 100
    assert any("died while submitting" in note for note in summary["notes"])


def test_replay_keeps_an_answer_shared_by_two_chunks_in_flight(batch_emulator, s3_env) -> None:
    """Two chunks on one actor at once can ask the same question; the first chunk finishing must
    not take the answer away from the second (which would pay on demand for it)."""
    import asyncio

    from farm.bedrock import ConverseClient, ConverseRequest
    from farm.config import load_config
    from farm.offline.bedrock_batch import ReplayClient
    from farm.ratelimit import QuotaRegistry

    config = load_config(None)
    replay = ReplayClient(ConverseClient(config.bedrock, QuotaRegistry(config.quota_for), patient=True))
    question = ConverseRequest(model=LITE, user_text="<<<BEGIN TASK 0123456789ab>>> grade this")
    key = request_key(question)
    output = {"output": {"message": {"content": [{"text": '{"score": 1}'}]}}, "usage": {"inputTokens": 5, "outputTokens": 3}}
    chunk_a, chunk_b = {key: [output, 1]}, {key: [output, 1]}

    async def main() -> None:
        replay.add(chunk_a)
        replay.add(chunk_b)
        await replay.converse(question, deadline=time.monotonic() + 30)  # chunk A's use
        replay.forget(chunk_a)  # chunk A is done; chunk B still needs its answer
        await replay.converse(question, deadline=time.monotonic() + 30)
        replay.forget(chunk_b)
        await replay.aclose()

    asyncio.run(main())
    assert replay.counters == {"batch_answers": 2}


def test_models_sharing_a_long_prefix_get_their_own_files_and_jobs() -> None:
    """Spool file, S3 input folder and job name come from `_safe(model)`: two inference-profile
    ARNs of one account must not share them, or one model's records would go to the other's job."""
    from farm.offline.bedrock_batch import _safe

    arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/"
    models = [LITE, MICRO, arn + "us.amazon.nova-lite-v1:0", arn + "us.amazon.nova-micro-v1:0"]
    names = [_safe(m) for m in models]
    assert len(set(names)) == len(models), names
    assert all(len(n) <= 30 and n.replace("-", "").isalnum() for n in names)
    assert _safe(LITE) == _safe(LITE)  # stable: a resume finds the same names
