"""The ensemble ingress: HTTP `POST /score`, `POST /openrlhf`, `GET /healthz`, `GET /integrity`,
and the handle methods `score` and `integrity`.

Every rollout fans out to every judge deployment concurrently (through `HandleJudge`), and
`farm.ensemble.Ensemble` applies gates, per-judge deadlines, the quorum and aggregation.
Weights and aggregation settings change at runtime through `user_config` (`reconfigure`).
Canaries ride along with live requests and scheduled probes run in the background
(`deploy.integrity_watch`).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from ray import serve
from starlette.requests import Request
from starlette.responses import Response

from deploy.handle_judge import HandleJudge
from deploy.integrity_watch import IntegrityWatch
from deploy.metrics import FarmMetrics
from farm.adapters.openrlhf import openrlhf_response, rollouts_from_openrlhf
from farm.config import AggregationConfig, FarmConfig, parse_config
from farm.ensemble import Ensemble, EnsembleMember
from farm.errors import ConfigError, InputError
from farm.wire import RewardResult, Rollout, parse_rollout

__all__ = ["OpenRLHFSettings", "RewardIngress", "RuntimeTuning", "key_digest"]

_json = msgspec.json.Encoder()


class RuntimeTuning(BaseModel):
    """What `user_config` may change without a restart."""

    model_config = ConfigDict(extra="forbid")

    weights: dict[str, float] = Field(default_factory=dict)
    aggregation: AggregationConfig | None = None


class OpenRLHFSettings(BaseModel):
    """The `/openrlhf` route, from the replicas' environment: the secret path segment as its SHA-256
    (`FARM_OPENRLHF_KEY_SHA256`, which `farm serve` derives from `FARM_OPENRLHF_KEY` so that the key
    itself never sits in a runtime env that Ray logs), `FARM_OPENRLHF_STRIP` (1/0, strip
    chat-template markup) and `FARM_OPENRLHF_FAILED_REWARD`."""

    key_sha256: str | None = None
    strip_template: bool = True
    failed_reward: float = Field(default=0.0, allow_inf_nan=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> OpenRLHFSettings:
        digest = environ.get("FARM_OPENRLHF_KEY_SHA256") or None
        if digest is None and environ.get("FARM_OPENRLHF_KEY"):
            digest = key_digest(environ["FARM_OPENRLHF_KEY"])
        try:
            return cls(
                key_sha256=digest,
                strip_template=environ.get("FARM_OPENRLHF_STRIP", "1").strip().lower() not in ("0", "false", "no", "off"),
                failed_reward=float(environ.get("FARM_OPENRLHF_FAILED_REWARD", "0")),
            )
        except ValueError as exc:
            raise ConfigError(f"FARM_OPENRLHF_FAILED_REWARD must be a number: {exc}") from None


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class _HTTPError(Exception):
    def __init__(self, status: int, message: str, **extra: Any):
        super().__init__(message)
        self.status = status
        self.body = {"error": message, **extra}


@serve.deployment
class RewardIngress:
    def __init__(self, judges: dict[str, Any], farm_config: dict[str, Any]):
        self.config: FarmConfig = parse_config(farm_config, source="farm config")
        self.handles = judges
        self.token = os.environ.get("FARM_API_TOKEN") or None
        self.openrlhf = OpenRLHFSettings.from_env(os.environ)
        self.metrics = FarmMetrics(self.config.serve.app_name)
        self.started_at = time.time()
        self.reconfigured = 0
        self._apply(RuntimeTuning())
        self.watch = IntegrityWatch(self.config.integrity, self.config.serve.app_name)

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        try:
            tuning = RuntimeTuning.model_validate(user_config or {})
        except ValidationError as exc:
            raise ConfigError(f"invalid user_config: {exc}") from None
        unknown = sorted(set(tuning.weights) - {j.name for j in self.config.judges})
        if unknown:
            raise ConfigError(f"user_config.weights names unknown judge(s) {unknown}")
        self._apply(tuning)
        self.reconfigured += 1

    def _apply(self, tuning: RuntimeTuning) -> None:
        members = []
        for judge in self.config.judges:
            weighted = judge.model_copy(update={"weight": tuning.weights[judge.name]}) if judge.name in tuning.weights else judge
            members.append(EnsembleMember(weighted, HandleJudge(judge.name, self.handles[judge.name])))
        self.ensemble = Ensemble(members, tuning.aggregation or self.config.aggregation, integrity=self.config.integrity)

    async def score(self, rollouts: Sequence[Rollout | Mapping[str, Any]]) -> list[RewardResult]:
        """The handle entry point: a list of rollouts (or rollout dicts) in, one result each out."""
        parsed = [parse_rollout(r, where=f"rollouts[{i}]") for i, r in enumerate(rollouts)]
        return await self._score(parsed)

    async def _score(self, rollouts: list[Rollout]) -> list[RewardResult]:
        """Score live rollouts with this request's canaries appended; callers only see their own."""
        self.watch.ensure_probing(lambda: self.ensemble)
        started = time.monotonic()
        canaries = self.watch.draw(len(rollouts))
        results = await self.ensemble.score([*rollouts, *canaries] if canaries else rollouts)
        live = results[: len(rollouts)]
        self.metrics.record(live, (time.monotonic() - started) * 1000.0)
        self.watch.observe(canaries, results[len(rollouts) :])
        return live

    def integrity(self) -> dict[str, Any]:
        """Canary drift per judge and the latest scheduled probe report."""
        return self.watch.status()

    async def check_health(self) -> None:
        """Serve calls this every few seconds: it also (re)starts scheduled probes on an idle app."""
        self.watch.ensure_probing(lambda: self.ensemble)

    def __del__(self) -> None:
        self.watch.stop()

    def info(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "app": self.config.serve.app_name,
            "judges": [j.name for j in self.config.judges],
            "weights": {m.config.name: m.config.weight for m in self.ensemble.members},
            "aggregation": self.ensemble.aggregation.model_dump(),
            "started_at": self.started_at,
            "reconfigured": self.reconfigured,
            "canary_alarms": self.watch.alarms(),
        }

    async def __call__(self, request: Request) -> Response:
        segments = request.url.path.rstrip("/").split("/")
        path = segments[-1]
        openrlhf_key = None
        if len(segments) >= 2 and segments[-2] == "openrlhf":  # POST /openrlhf/<key>: OpenRLHF sends no headers
            path, openrlhf_key = "openrlhf", segments[-1]
        try:
            if path == "healthz" and request.method == "GET":
                return _respond(200, self.info())
            if openrlhf_key is not None:
                self._authorise_openrlhf(openrlhf_key)
            else:
                self._authorise(request)
            if path == "integrity" and request.method == "GET":
                return _respond(200, self.integrity())
            if request.method != "POST" or path not in ("score", "openrlhf"):
                routes = "POST /score, POST /openrlhf[/<key>], GET /integrity or GET /healthz"
                shown = "/openrlhf/<key>" if openrlhf_key is not None else request.url.path  # the key is never echoed
                raise _HTTPError(404, f"no route {request.method} {shown}; use {routes}")
            payload = await self._read_json(request)
            if path == "openrlhf":
                try:
                    rollouts = rollouts_from_openrlhf(payload, strip_template=self.openrlhf.strip_template)
                except InputError as exc:
                    raise _HTTPError(422, str(exc), field=exc.field, row=exc.row) from None
                return _respond(200, openrlhf_response(await self._score(rollouts), failed_reward=self.openrlhf.failed_reward))
            rollouts = self._rollouts(payload)
            return _respond(200, {"results": await self._score(rollouts)})
        except _HTTPError as exc:
            headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
            return _respond(exc.status, exc.body, headers)

    def _authorise_openrlhf(self, supplied: str) -> None:
        """The `/openrlhf/<key>` route: the key (`FARM_OPENRLHF_KEY`) compared in constant time, never
        echoed or logged. Without a configured key the route does not exist."""
        expected = self.openrlhf.key_sha256
        if expected is None or not hmac.compare_digest(key_digest(supplied), expected):
            raise _HTTPError(404, "no such route; OpenRLHF's route is POST /openrlhf/<FARM_OPENRLHF_KEY> when a key is set")

    def _authorise(self, request: Request) -> None:
        if self.token is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, supplied = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(supplied.encode(), self.token.encode()):
            raise _HTTPError(401, "missing or wrong bearer token")

    async def _read_json(self, request: Request) -> Any:
        limit = self.config.serve.max_request_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _HTTPError(413, f"request body of {declared} bytes exceeds the limit of {limit}")
        body = bytearray()
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > limit:
                raise _HTTPError(413, f"request body exceeds the limit of {limit} bytes")
        try:
            return msgspec.json.decode(bytes(body))
        except msgspec.DecodeError as exc:
            raise _HTTPError(400, f"body is not valid JSON: {exc}") from None

    def _rollouts(self, payload: Any) -> list[Rollout]:
        if not isinstance(payload, dict) or not isinstance(payload.get("rollouts"), list):
            raise _HTTPError(422, "body must be an object with a list `rollouts`", field="rollouts")
        rows = payload["rollouts"]
        limit = self.config.serve.max_rollouts_per_request
        if len(rows) > limit:
            raise _HTTPError(413, f"{len(rows)} rollouts exceed the limit of {limit} per request; split the batch")
        rollouts = []
        seen: set[str] = set()
        for index, row in enumerate(rows):
            try:
                rollout = parse_rollout(row, where=f"rollouts[{index}]")
            except InputError as exc:
                raise _HTTPError(422, str(exc), field=exc.field, row=exc.row, index=index) from None
            if rollout.id in seen:
                raise _HTTPError(422, f"duplicate id {rollout.id!r}", field="id", index=index)
            seen.add(rollout.id)
            rollouts.append(rollout)
        return rollouts


def _respond(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(_json.encode(body), status_code=status, media_type="application/json", headers=headers)
