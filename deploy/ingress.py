"""The ensemble ingress: HTTP `POST /score`, `POST /openrlhf`, `GET /healthz`, `GET /info`,
`GET /integrity`, and the handle methods `score` and `integrity`.

Secure by default: tokens come from the sources `serve.auth` names (read here, at start, never
from the config or the environment); without auth the app refuses to start behind a proxy that
listens beyond loopback unless the deployment says `insecure`. `/healthz` says only "alive";
every other route needs a token, and every route and the handle path share one set of limits
(body size, rollouts per request, nesting depth, duplicate ids).

Rule judges run here, in the ingress process, where the rollouts already are (microseconds
each, no replica round trip); each request's rollouts go to each other judge's deployment once,
as one batch (through `HandleJudge`), concurrently; `farm.ensemble.Ensemble` applies gates,
per-judge deadlines, the quorum and aggregation (`deploy.placement` says which judge runs where).
Weights and aggregation settings change at runtime through `user_config` (`reconfigure`).
Canaries ride along with live requests and scheduled probes run in the background
(`deploy.integrity_watch`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from ray import serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from deploy.admission import Admission, Refused
from deploy.door import ANONYMOUS, Door, Limited
from deploy.handle_judge import HandleJudge
from deploy.integrity_watch import IntegrityWatch
from deploy.metrics import FarmMetrics
from deploy.placement import placement_of
from farm.adapters.openrlhf import openrlhf_response, rollouts_from_openrlhf
from farm.auth import TokenBook, is_loopback
from farm.cache import VerdictCache
from farm.config import AggregationConfig, FarmConfig, parse_config
from farm.deadlines import request_deadline
from farm.ensemble import Ensemble, EnsembleMember
from farm.errors import ConfigError, InputError
from farm.judges import Judge, build_judge, needs_bedrock
from farm.wire import RewardResult, Rollout, decode_json, parse_rollout

__all__ = ["OpenRLHFSettings", "RewardIngress", "RuntimeTuning"]

logger = logging.getLogger("ray.serve")

_json = msgspec.json.Encoder()
_EVERY_METHOD = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
_OPENRLHF_PATIENCE_S = 120.0
"""How long `/openrlhf` waits for admission: under OpenRLHF's 180 s client timeout."""


class RuntimeTuning(BaseModel):
    """What `user_config` may change without a restart."""

    model_config = ConfigDict(extra="forbid")

    weights: dict[str, float] = Field(default_factory=dict)
    aggregation: AggregationConfig | None = None


class OpenRLHFSettings(BaseModel):
    """How `/openrlhf` reads OpenRLHF's request, from the replicas' environment (`farm serve`
    passes these on): `FARM_OPENRLHF_STRIP` (1/0, strip chat-template markup before judging) and
    `FARM_OPENRLHF_FAILED_REWARD` (what an unscorable rollout gets; OpenRLHF cannot take a null)."""

    strip_template: bool = True
    failed_reward: float = Field(default=0.0, allow_inf_nan=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> OpenRLHFSettings:
        try:
            return cls(
                strip_template=environ.get("FARM_OPENRLHF_STRIP", "1").strip().lower() not in ("0", "false", "no", "off"),
                failed_reward=float(environ.get("FARM_OPENRLHF_FAILED_REWARD", "0")),
            )
        except ValueError as exc:
            raise ConfigError(f"FARM_OPENRLHF_FAILED_REWARD must be a number: {exc}") from None


class _HTTPError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None, **extra: Any):
        super().__init__(message)
        self.status = status
        self.headers = headers
        self.body = {"error": message, **{k: v for k, v in extra.items() if v is not None}}


def _proxy_host() -> str | None:
    """The address Serve's HTTP proxies bind, as the controller knows it; None when it cannot say."""
    try:
        from ray.serve.context import _get_global_client

        client = _get_global_client()
        return client.http_config.host if client is not None else None
    except Exception:  # noqa: BLE001 - no controller reachable: unknown, which is treated as not loopback
        return None


@serve.deployment
@serve.ingress()
class RewardIngress:
    def __init__(self, judges: dict[str, Any], farm_config: dict[str, Any], insecure: bool = False):
        self.config: FarmConfig = parse_config(farm_config, source="farm config")
        self.handles = judges
        no_cache = VerdictCache(1, enabled=False)  # rule judges: microseconds and deterministic, nothing worth caching
        self.in_ingress: dict[str, Judge] = {
            j.name: build_judge(j, None, no_cache) for j in self.config.judges if placement_of(j) == "ingress"
        }
        self.door = Door(self.config, TokenBook.load(self.config.serve.auth))
        self.openrlhf = OpenRLHFSettings.from_env(os.environ)
        if not self.door.enabled and not insecure:
            host = _proxy_host()
            if not is_loopback(host):
                raise ConfigError(
                    f"refusing to serve without auth: Serve's HTTP proxy binds {host or 'an unknown address'}, "
                    "beyond loopback; set serve.auth.token (a file or secret holding the token) or deploy with insecure: true"
                )
        self.metrics = FarmMetrics(self.config.serve.app_name, self.config)  # bedrock: config prices the verdicts
        self.started_at = time.time()
        self.reconfigured = 0
        self._apply(RuntimeTuning())
        self.watch = IntegrityWatch(self.config.integrity, self.config.serve.app_name)
        self.admission = Admission(self.config, limits=self._sized_max_tokens)  # tokens: budget what replicas send
        self.request_budget_s = max((j.deadline_s for j in self.config.judges), default=60.0)

    async def _sized_max_tokens(self, judge: str) -> dict[str, int]:
        """The `maxTokens` a Bedrock judge's replica sends now per kind of call (`max_tokens: auto`)."""
        handle = self.handles.get(judge)
        if handle is None:
            return {}
        stats = await handle.stats.remote()
        return {kind: int(seen["max_tokens"]) for kind, seen in (stats.get("max_tokens") or {}).items()}

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
            if judge.name in self.in_ingress:
                members.append(EnsembleMember(weighted, self.in_ingress[judge.name]))
                continue
            deadline_s = judge.deadline_s if needs_bedrock(judge) else None  # the replica gets an absolute deadline
            members.append(EnsembleMember(weighted, HandleJudge(judge.name, self.handles[judge.name], deadline_s=deadline_s)))
        self.ensemble = Ensemble(members, tuning.aggregation or self.config.aggregation, integrity=self.config.integrity)

    async def score(self, rollouts: Sequence[Rollout | Mapping[str, Any]]) -> list[RewardResult]:
        """The handle entry point: a list of rollouts (or rollout dicts) in, one result each out.
        The HTTP routes' limits apply here too; a refusal raises `InputError` naming the field."""
        try:
            if not isinstance(rollouts, Sequence) or isinstance(rollouts, (str, bytes)):
                raise _HTTPError(422, f"score() takes a list of rollouts, got {type(rollouts).__name__}", field="rollouts")
            parsed = self._rollouts(list(rollouts))
            self._check_size(len(msgspec.json.encode(parsed)))
        except _HTTPError as exc:
            raise InputError(exc.body["error"], field=exc.body.get("field")) from None
        return await self._score(parsed)

    async def _score(self, rollouts: list[Rollout]) -> list[RewardResult]:
        """Score live rollouts with this request's canaries appended; callers only see their own."""
        self.watch.ensure_probing(lambda: self.ensemble)
        started = time.monotonic()
        canaries = self.watch.draw(len(rollouts))
        with request_deadline(started + self.request_budget_s):  # travels to every judge replica
            results = await self.ensemble.score([*rollouts, *canaries] if canaries else rollouts)
        live = results[: len(rollouts)]
        self.metrics.record(live, (time.monotonic() - started) * 1000.0)
        self.watch.observe(canaries, results[len(rollouts) :])
        return live

    def integrity(self) -> dict[str, Any]:
        """Canary drift per judge and the latest scheduled probe report."""
        return self.watch.status()

    async def check_health(self) -> None:
        """Serve calls this every few seconds: it also (re)starts scheduled probes on an idle app
        and re-reads the token sources every `serve.auth.refresh_s`."""
        self.watch.ensure_probing(lambda: self.ensemble)
        self.door.refresh_in_background(self.config.serve.auth)  # never waits on a secret store

    def __del__(self) -> None:
        watch = getattr(self, "watch", None)  # absent when __init__ refused to start
        if watch is not None:
            watch.stop()

    def info(self) -> dict[str, Any]:
        """Configuration and integrity details: behind auth (`GET /info`), never on `/healthz`."""
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

    def __serve_build_asgi_app__(self) -> Starlette:
        """The HTTP routes, as Serve's ASGI ingress (built once per replica, after `__init__`).
        Unknown routes reach `_no_route`, behind the same token check as every known one."""
        return Starlette(
            routes=[
                Route("/healthz", self._healthz, methods=["GET"]),
                Route("/info", self._http_info, methods=["GET"]),
                Route("/integrity", self._http_integrity, methods=["GET"]),
                Route("/score", self._http_score, methods=["POST"]),
                Route("/openrlhf", self._http_openrlhf, methods=["POST"]),
                Route("/openrlhf/{token}", self._http_openrlhf, methods=["POST"]),  # OpenRLHF sends no headers
                Route("/{path:path}", self._no_route, methods=_EVERY_METHOD),  # every other path and method
            ],
            exception_handlers={_HTTPError: _error_response},
        )

    async def _healthz(self, request: Request) -> Response:
        return _respond(200, {"status": "ok"})  # for load balancers: alive, and nothing else

    async def _http_info(self, request: Request) -> Response:
        await self._caller(request)
        return _respond(200, self.info())

    async def _http_integrity(self, request: Request) -> Response:
        await self._caller(request)
        return _respond(200, self.integrity())

    async def _http_score(self, request: Request) -> Response:
        caller = await self._caller(request)
        payload = await self._read_object(request)
        if not isinstance(payload.get("rollouts"), list):
            raise _HTTPError(422, "body must be an object with a list `rollouts`", field="rollouts")
        rollouts = self._rollouts(payload["rollouts"])
        self._admit(caller, len(rollouts))
        return _respond(200, {"results": await self._admitted(rollouts)})

    async def _http_openrlhf(self, request: Request) -> Response:
        caller = await self._caller(request, request.path_params.get("token"))
        payload = await self._read_object(request)
        queries = payload.get("query")
        self._check_count(len(queries) if isinstance(queries, list) else 0)
        try:
            rollouts = rollouts_from_openrlhf(payload, strip_template=self.openrlhf.strip_template)
        except InputError as exc:
            raise _HTTPError(422, str(exc), field=exc.field, row=exc.row) from None
        self._admit(caller, len(rollouts))
        scored = await self._admitted(rollouts, patience_s=_OPENRLHF_PATIENCE_S)
        return _respond(200, openrlhf_response(scored, failed_reward=self.openrlhf.failed_reward))

    async def _no_route(self, request: Request) -> Response:
        segments = request.url.path.rstrip("/").split("/")
        path_token = segments[-1] if len(segments) >= 2 and segments[-2] == "openrlhf" else None
        await self._caller(request, path_token)  # 401 before 404: routes are not probed without a token
        routes = "POST /score, POST /openrlhf[/<token>], GET /info, GET /integrity or GET /healthz"
        shown = "/openrlhf/<token>" if path_token is not None else request.url.path  # a token is never echoed
        raise _HTTPError(404, f"no route {request.method} {shown}; use {routes}")

    async def _read_object(self, request: Request) -> dict[str, Any]:
        payload = await self._read_json(request)
        if not isinstance(payload, dict):
            raise _HTTPError(422, f"body must be a JSON object, got {_json_type(payload)}", field="body")
        return payload

    async def _admitted(self, rollouts: list[Rollout], patience_s: float = 0.0) -> list[RewardResult]:
        """Score, if the quota can serve this request before its deadline; else refuse now
        (503 with Retry-After), so that a 200 always carries complete rewards. With `patience_s`
        (OpenRLHF, which ignores Retry-After, logs the URL holding its token on any error status and
        dies after five quick retries) the request waits the Retry-After and tries again instead."""
        give_up = time.monotonic() + patience_s
        while True:
            try:
                ticket = await self.admission.admit(rollouts)
                break
            except Refused as exc:
                wait = exc.retry_after_s
                if exc.status == 503 and wait is not None and time.monotonic() + wait <= give_up:
                    await asyncio.sleep(wait)
                    continue
                headers = {"Retry-After": str(exc.retry_after_s)} if exc.retry_after_s is not None else None
                raise _HTTPError(exc.status, str(exc), headers) from None
        try:
            return await self._score(rollouts)
        finally:
            self.admission.release(ticket)

    async def _caller(self, request: Request, path_token: str | None = None) -> str:
        """`_authorise`, re-reading the token sources once when a token is refused and they are due
        (at most every `serve.auth.refresh_s`): a token rotated in works at once. `path_token` is
        OpenRLHF's (`POST /openrlhf/<token>`), checked exactly as a bearer token."""
        try:
            return self._authorise(request, path_token)
        except _HTTPError:
            if not self.door.refresh_due(self.config.serve.auth):
                raise
            problem = await asyncio.to_thread(self.door.refresh, self.config.serve.auth)
            if problem:
                logger.warning("token refresh failed, %s", problem)
            return self._authorise(request, path_token)

    def _authorise(self, request: Request, path_token: str | None = None) -> str:
        """The one token check for every route: the caller's name (a key name, "token", or
        "anonymous" when auth is off), or a 401."""
        header = f"Bearer {path_token}" if path_token is not None else request.headers.get("authorization", "")
        caller = self.door.caller(header)
        if caller is None:
            raise _HTTPError(401, "missing or wrong bearer token")
        return caller

    def _admit(self, caller: str, rollouts: int) -> None:
        if caller == ANONYMOUS:
            return
        try:
            self.door.admit(caller, rollouts)
        except Limited as exc:
            headers = {"Retry-After": str(max(1, round(exc.retry_after_s)))}
            raise _HTTPError(429, str(exc), headers, retry_after_s=exc.retry_after_s) from None

    def _check_size(self, size: int) -> None:
        limit = self.config.serve.max_request_bytes
        if size > limit:
            raise _HTTPError(413, f"request body of {size} bytes exceeds the limit of {limit}")

    def _check_count(self, count: int) -> None:
        limit = self.config.serve.max_rollouts_per_request
        if count > limit:
            raise _HTTPError(413, f"{count} rollouts exceed the limit of {limit} per request; split the batch")

    async def _read_json(self, request: Request) -> Any:
        limit = self.config.serve.max_request_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit():
            self._check_size(int(declared))
        body = bytearray()
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > limit:
                raise _HTTPError(413, f"request body exceeds the limit of {limit} bytes")
        try:
            return decode_json(bytes(body), max_depth=self.config.serve.max_json_depth)
        except InputError as exc:
            status = 400 if exc.field is None else 422
            raise _HTTPError(status, str(exc), field=exc.field) from None

    def _rollouts(self, rows: list[Any]) -> list[Rollout]:
        """Count, parse (depth included) and de-duplicate a batch: the limits every route shares."""
        self._check_count(len(rows))
        depth = self.config.serve.max_json_depth
        rollouts = []
        seen: set[str] = set()
        for index, row in enumerate(rows):
            try:
                rollout = parse_rollout(row, where=f"rollouts[{index}]", max_depth=depth - 2)
            except InputError as exc:
                raise _HTTPError(422, str(exc), field=exc.field, row=exc.row, index=index) from None
            if rollout.id in seen:
                raise _HTTPError(422, f"duplicate id {rollout.id!r}", field="id", index=index)
            seen.add(rollout.id)
            rollouts.append(rollout)
        return rollouts


def _json_type(value: Any) -> str:
    names = {type(None): "null", bool: "boolean", int: "number", float: "number", str: "string", list: "array"}
    return names.get(type(value), "object" if isinstance(value, dict) else type(value).__name__)


def _error_response(request: Request, exc: Exception) -> Response:
    """Starlette's handler for `_HTTPError`: the status, headers and JSON body it carries."""
    assert isinstance(exc, _HTTPError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else exc.headers
    return _respond(exc.status, exc.body, headers)


def _respond(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    try:
        data = _json.encode(body)
    except (msgspec.EncodeError, UnicodeEncodeError):  # an error naming a key that holds a lone surrogate
        data = json.dumps(body, ensure_ascii=True, default=str).encode()
    return Response(data, status_code=status, media_type="application/json", headers=headers)
