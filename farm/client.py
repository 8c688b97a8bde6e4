"""Trainer-facing clients: through a Serve handle inside the cluster, over HTTP from outside, or
in this process with no Ray at all.

All batch a trainer's rollouts into a few calls that never split a group, send the batches
concurrently, and return results in input order. Ray is imported only when a handle client is
first used, so `farm` (and the light `reward-farm` install a trainer uses) stays importable
without it. The handle client needs the Ray version the farm's server side is tested with
(`SERVER_RAY_VERSION`); Ray cannot talk across versions, so it says so before connecting.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import msgspec

from farm.batching import make_batches
from farm.errors import ConfigError, FarmError, InputError
from farm.wire import RewardResult, Rollout, parse_rollout

__all__ = [
    "SERVER_RAY_VERSION",
    "FarmClient",
    "FarmConnectionError",
    "FarmHTTPError",
    "FarmProtocolError",
    "FarmTimeoutError",
    "HttpFarmClient",
    "LocalFarmClient",
    "RetryPolicy",
    "check_ray_version",
]

DEFAULT_APP = "reward-farm"
SERVER_RAY_VERSION = "2.60.0"  # the `server` extra's pin; tests/unit/test_adapters.py keeps them equal
_results = msgspec.json.Decoder(dict[str, list[RewardResult]])


def _prepare(rollouts: Sequence[Rollout | Mapping[str, Any]], batch_size: int) -> tuple[list[Rollout], list[list[Rollout]]]:
    parsed = [parse_rollout(r, where=f"rollouts[{i}]") for i, r in enumerate(rollouts)]
    seen: set[str] = set()
    for index, rollout in enumerate(parsed):
        if rollout.id in seen:
            raise InputError(f"duplicate id {rollout.id!r}", row=f"rollouts[{index}]", field="id")
        seen.add(rollout.id)
    return parsed, make_batches(parsed, batch_size)


def _in_order(parsed: list[Rollout], batches: list[list[RewardResult]]) -> list[RewardResult]:
    by_id = {result.id: result for batch in batches for result in batch}
    missing = [r.id for r in parsed if r.id not in by_id]
    if missing:
        raise FarmError(f"the farm returned no result for {len(missing)} rollout(s), e.g. {missing[:3]}")
    return [by_id[r.id] for r in parsed]


def check_ray_version(local: str, required: str = SERVER_RAY_VERSION) -> None:
    """Refuse a handle call from a Ray other than the farm's, naming both versions.

    Ray objects and handles do not cross Ray versions; without this check the failure is a
    pickling traceback deep inside Ray.
    """
    if local != required:
        raise FarmError(
            f"the farm's Ray handle client needs Ray {required} (the version the farm's server runs), but this process has "
            f"Ray {local}; install `reward-farm[server]` into a matching environment, or call the farm over HTTP "
            "(HttpFarmClient / url=...), which needs no Ray"
        )


class FarmClient:
    """Scores through `serve.get_app_handle(app_name)` from any process attached to the cluster.

    Call `ray.init(address="auto")` first, or let the client do it on first use. Needs Ray
    `SERVER_RAY_VERSION` in this process (checked before connecting).
    """

    def __init__(self, app_name: str = DEFAULT_APP, *, batch_size: int = 256):
        self.app_name = app_name
        self.batch_size = batch_size
        self._handle: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"app_name": self.app_name, "batch_size": self.batch_size, "_handle": None}

    def _get_handle(self) -> Any:
        if self._handle is None:
            import ray

            check_ray_version(ray.__version__)
            from ray import serve

            if not ray.is_initialized():
                try:
                    ray.init(address="auto")
                except RuntimeError as exc:  # Ray's own check against the cluster's version
                    if "version mismatch" in str(exc).lower():
                        raise FarmError(f"this process's Ray {ray.__version__} cannot join the cluster: {exc}") from None
                    raise
            self._handle = serve.get_app_handle(self.app_name)
        return self._handle

    def score(self, rollouts: Sequence[Rollout | Mapping[str, Any]]) -> list[RewardResult]:
        """Blocking; do not call from inside a running event loop (use `score_async`)."""
        parsed, batches = _prepare(rollouts, self.batch_size)
        handle = self._get_handle()
        responses = [handle.score.remote(batch) for batch in batches]
        return _in_order(parsed, [response.result() for response in responses])

    async def score_async(self, rollouts: Sequence[Rollout | Mapping[str, Any]]) -> list[RewardResult]:
        parsed, batches = _prepare(rollouts, self.batch_size)
        handle = self._get_handle()
        results = await asyncio.gather(*(handle.score.remote(batch) for batch in batches))
        return _in_order(parsed, list(results))


class LocalFarmClient:
    """Scores in this process with the ensemble of `config` (a path, a dict, a `FarmConfig`, or
    None for the embedded default): no Ray, no Serve, for a single-node trainer.

    The ensemble lives on its own event-loop thread, so the same client serves synchronous
    callers and `await score_async` from any loop. As with `farm score`, Bedrock judges without
    AWS credentials get the embedded emulator (with its banner).
    """

    def __init__(self, config: Any = None, *, batch_size: int = 256):
        self.config = config
        self.batch_size = batch_size
        self._runtime: tuple[Any, Any, Any] | None = None  # (loop, ensemble, emulator)
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"config": self.config, "batch_size": self.batch_size}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["config"], batch_size=state["batch_size"])  # type: ignore[misc]

    def _ensure(self) -> tuple[Any, Any]:
        with self._lock:
            if self._runtime is None:
                self._runtime = _start_local(self.config)
            loop, ensemble, _ = self._runtime
            return loop, ensemble

    async def _score_batches(self, ensemble: Any, batches: list[list[Rollout]]) -> list[list[RewardResult]]:
        return list(await asyncio.gather(*(ensemble.score(batch) for batch in batches)))

    def score(self, rollouts: Sequence[Rollout | Mapping[str, Any]]) -> list[RewardResult]:
        parsed, batches = _prepare(rollouts, self.batch_size)
        loop, ensemble = self._ensure()
        return _in_order(parsed, asyncio.run_coroutine_threadsafe(self._score_batches(ensemble, batches), loop).result())

    async def score_async(self, rollouts: Sequence[Rollout | Mapping[str, Any]]) -> list[RewardResult]:
        parsed, batches = _prepare(rollouts, self.batch_size)
        loop, ensemble = self._ensure()
        future = asyncio.run_coroutine_threadsafe(self._score_batches(ensemble, batches), loop)
        return _in_order(parsed, await asyncio.wrap_future(future))

    def close(self) -> None:
        with self._lock:
            runtime, self._runtime = self._runtime, None
        if runtime is None:
            return
        loop, ensemble, emulator = runtime
        asyncio.run_coroutine_threadsafe(ensemble.aclose(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        if emulator is not None:
            emulator.stop()


def _start_local(source: Any) -> tuple[Any, Any, Any]:
    """Load the config, start the embedded emulator if it is needed, and build the ensemble on a loop thread."""
    from farm.config import FarmConfig, load_config, parse_config
    from farm.embedded import choose_backend, start_embedded_emulator
    from farm.ensemble import Ensemble
    from farm.judges import needs_bedrock

    if isinstance(source, FarmConfig):
        config = source
    elif isinstance(source, Mapping):
        config = parse_config(dict(source), source="FarmReward(config=...)")
    elif source is None or isinstance(source, str | bytes) or hasattr(source, "__fspath__"):
        config = load_config(source)  # type: ignore[arg-type]
    else:
        raise ConfigError(f"config must be a path, a dict or a FarmConfig, got {type(source).__name__}")
    emulator = None
    if any(needs_bedrock(j) for j in config.judges) and choose_backend() == "emulator":
        emulator = start_embedded_emulator(config)
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, name="farm-local-client", daemon=True).start()

    async def build() -> Any:
        return Ensemble.from_config(config)

    return loop, asyncio.run_coroutine_threadsafe(build(), loop).result(), emulator


class FarmHTTPError(FarmError):
    """The farm answered with an HTTP error status (after the backpressure retries)."""

    def __init__(self, status: int, message: str):
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


class FarmConnectionError(FarmError):
    """The farm could not be reached, or the connection broke before an answer."""


class FarmTimeoutError(FarmConnectionError):
    """No answer within the client's `timeout_s`."""


class FarmProtocolError(FarmError):
    """The farm answered 200 with something that is not a results document."""


@contextlib.contextmanager
def _mapped(url: str) -> Iterator[None]:
    """The one place transport exceptions become the farm's (as httpx maps its transports'):
    a caller catches `FarmError` and never sees aiohttp, asyncio or msgspec types."""
    import aiohttp

    try:
        yield
    except FarmError:
        raise
    except TimeoutError as exc:  # asyncio.TimeoutError is TimeoutError since 3.11
        raise FarmTimeoutError(f"no answer from {url} within the client's timeout") from exc
    except aiohttp.ClientResponseError as exc:
        raise FarmHTTPError(exc.status, exc.message) from exc
    except (aiohttp.ClientPayloadError, msgspec.DecodeError) as exc:
        raise FarmProtocolError(f"{url} answered 200 with an unreadable results document: {exc}") from exc
    except (aiohttp.ClientError, OSError) as exc:
        raise FarmConnectionError(f"cannot reach the farm at {url}: {exc}") from exc


class RetryPolicy(msgspec.Struct, frozen=True):
    """Which answers are the farm's backpressure (429, 503), how often to try again, and how
    long to wait: the server's Retry-After (capped), else exponential backoff."""

    retries: int = 5
    statuses: frozenset[int] = frozenset({429, 503})

    def wait_s(self, status: int, retry_after: str | None, attempt: int) -> float | None:
        """Seconds to wait before attempt `attempt + 1`, or None when this answer is final."""
        if status not in self.statuses or attempt >= self.retries:
            return None
        return _retry_after(retry_after, attempt)


class HttpFarmClient:
    """Scores over `POST /score` for trainers outside the Ray cluster.

    One HTTP stack (aiohttp) and one retry loop: `score_async` runs in the caller's event loop;
    the blocking `score` runs the same coroutine on the client's own event-loop thread, so it
    works from plain code and from inside a running loop alike (it blocks that loop, as any
    blocking call does: use `score_async` there). Retries 429/503 (the farm's backpressure)
    honouring Retry-After, up to `retries` times. Errors are `FarmError`s: `FarmHTTPError`
    (with `status`), `FarmConnectionError`, `FarmTimeoutError`, `FarmProtocolError`.
    """

    def __init__(self, url: str, *, token: str | None = None, timeout_s: float = 300.0, batch_size: int = 256, retries: int = 5):
        self.url = url.rstrip("/")
        self.token = token
        self.timeout_s = timeout_s
        self.batch_size = batch_size
        self.retries = retries
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("_loop", "_lock")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _loop=None, _lock=threading.Lock())

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def score(self, rollouts: Sequence[Rollout | Mapping[str, Any]]) -> list[RewardResult]:
        """Blocking: the same requests as `score_async`, on this client's event-loop thread."""
        future = asyncio.run_coroutine_threadsafe(self.score_async(rollouts), self._private_loop())
        return future.result()

    def _private_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                threading.Thread(target=self._loop.run_forever, name="farm-http-client", daemon=True).start()
            return self._loop

    async def score_async(self, rollouts: Sequence[Rollout | Mapping[str, Any]]) -> list[RewardResult]:
        import aiohttp

        parsed, batches = _prepare(rollouts, self.batch_size)
        policy = RetryPolicy(retries=self.retries)
        with _mapped(self.url):
            timeout = aiohttp.ClientTimeout(total=self.timeout_s)
            async with aiohttp.ClientSession(timeout=timeout, headers=self._headers()) as session:
                results = await asyncio.gather(*(self._post(session, batch, policy) for batch in batches))
        return _in_order(parsed, list(results))

    async def _post(self, session: Any, batch: list[Rollout], policy: RetryPolicy) -> list[RewardResult]:
        """The one retry loop: post a batch until it is answered, or the answer is final."""
        body = msgspec.json.encode({"rollouts": batch})
        attempt = 0
        while True:
            async with session.post(f"{self.url}/score", data=body) as response:
                data = await response.read()
                if response.status == 200:
                    return _results.decode(data)["results"]
                wait_s = policy.wait_s(response.status, response.headers.get("Retry-After"), attempt)
                if wait_s is None:
                    raise FarmHTTPError(response.status, _message(data.decode("utf-8", "replace")))
            await asyncio.sleep(wait_s)
            attempt += 1

    def close(self) -> None:
        """Stop the private event-loop thread (if `score` started one)."""
        with self._lock:
            loop, self._loop = self._loop, None
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)


_MAX_RETRY_AFTER_S = 60.0


def _retry_after(header: str | None, attempt: int) -> float:
    """Seconds to wait before retrying: the server's Retry-After (capped, so a proxy's huge or
    infinite value cannot stall the trainer for ever), else exponential backoff."""
    backoff = min(10.0, 0.5 * 2**attempt)
    try:
        value = float(header) if header else backoff
    except ValueError:
        return backoff
    return min(max(0.0, value), _MAX_RETRY_AFTER_S) if math.isfinite(value) else backoff


def _message(body: str) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return body[:500]
    return str(data.get("error", data))[:2000] if isinstance(data, dict) else body[:500]
