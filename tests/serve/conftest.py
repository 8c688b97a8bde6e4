"""Real Ray and Serve for the whole session, and the emulator that their replicas call over loopback."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from farm.emulator import EmulatorSettings, EmulatorThread

TOKEN = "test-token-123-serve-suite"
"""Read by the ingress from a token file (`serve.auth.token.file`), never from its environment."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def serve_emulator() -> Iterator[EmulatorThread]:
    with EmulatorThread(EmulatorSettings(latency_ms=5, latency_sigma=0, rpm=60_000, tpm=100_000_000)) as emu:
        yield emu


def _application(
    ray_serve: dict[str, Any],
    name: str,
    args: dict[str, Any],
    route_prefix: str,
    ingress_user_config: dict | None = None,
    user_configs: dict[str, dict] | None = None,
) -> dict[str, Any]:
    if "auth" in ray_serve and "auth" not in args and not args.get("insecure"):
        args = {**args, "auth": ray_serve["auth"]}
    app: dict[str, Any] = {"name": name, "route_prefix": route_prefix, "import_path": "deploy.app:build_app", "args": args}
    overrides = dict(user_configs or {})
    if ingress_user_config is not None:
        overrides["ingress"] = ingress_user_config
    if overrides:
        app["deployments"] = [{"name": deployment, "user_config": config} for deployment, config in overrides.items()]
    return app


def _apply(ray_serve: dict[str, Any], applications: list[dict[str, Any]]) -> None:
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeDeploySchema

    http_options = {"host": "127.0.0.1", "port": ray_serve["port"]}
    schema = ServeDeploySchema.model_validate({"http_options": http_options, "applications": applications})
    _get_global_client().deploy_apps(schema, _blocking=True)
    for app in applications:
        wait_running(app["name"])


def deploy(
    ray_serve: dict[str, Any],
    name: str,
    args: dict[str, Any],
    route_prefix: str,
    ingress_user_config: dict | None = None,
    user_configs: dict[str, dict] | None = None,
) -> None:
    """Deploy as `serve deploy deploy/serve.yaml` does: declaratively, so that a change of
    `user_config` alone is a lightweight update (reconfigure in place, no restart)."""
    _apply(ray_serve, [_application(ray_serve, name, args, route_prefix, ingress_user_config, user_configs)])


def deploy_together(ray_serve: dict[str, Any], apps: list[tuple[str, dict[str, Any], str]]) -> None:
    """Several apps (name, args, route prefix) in one declarative config, as one `serve.yaml` with
    several applications: Serve builds and starts them side by side instead of one after another."""
    _apply(ray_serve, [_application(ray_serve, name, args, prefix) for name, args, prefix in apps])


def delete_apps(*names: str) -> None:
    """Delete several apps in one request to the controller, without waiting: they are torn down
    side by side while the next module deploys (its declarative config would remove them anyway)."""
    from ray.serve.context import _get_global_client

    _get_global_client().delete_apps(list(names), blocking=False)


def wait_running(name: str, timeout_s: float = 120.0) -> None:
    import time

    from ray import serve

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = serve.status().applications.get(name)
        if status is not None and status.status == "RUNNING" and all(d.status == "HEALTHY" for d in status.deployments.values()):
            return
        time.sleep(0.5)
    raise AssertionError(f"app {name!r} not running after {timeout_s}s: {serve.status().applications.get(name)}")


@pytest.fixture(scope="session")
def ray_serve(serve_emulator: EmulatorThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Ray started once (4 logical CPUs work on 2 cores) with Serve on a free port. Apps deployed
    through `deploy` read TOKEN from a token file, as a mounted secret would be read."""
    import ray
    from ray import serve

    token_file = tmp_path_factory.mktemp("secrets") / "farm-token"
    token_file.write_text(TOKEN + "\n", encoding="utf-8")
    ray.init(address="local", num_cpus=4, include_dashboard=False)  # a fresh cluster, never one already running here
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port}, logging_config={"log_level": "WARNING"})
    env = {
        "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": serve_emulator.url,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    auth = {"token": {"file": str(token_file)}}
    try:
        yield {"url": f"http://127.0.0.1:{port}", "port": port, "env": env, "gcs": ray.get_runtime_context().gcs_address, "auth": auth}
    finally:
        serve.shutdown()
        ray.shutdown()


@pytest.fixture
def reset_emulator(serve_emulator: EmulatorThread) -> Iterator[EmulatorThread]:
    """Tests that break the emulator on purpose get it back as it was; they start with clean stats."""
    saved = serve_emulator.server.settings
    serve_emulator.reset()
    yield serve_emulator
    serve_emulator.replace_settings(saved)


def http(url: str, path: str, body: Any = None, *, token: str | None = TOKEN, raw: bytes | None = None) -> tuple[int, dict[str, str], Any]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(f"{url}{path}", data=data, headers=headers, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raw_body = exc.read()
        try:
            return exc.code, dict(exc.headers), json.loads(raw_body or b"null")
        except ValueError:  # Serve's own refusals (backpressure) are plain text
            return exc.code, dict(exc.headers), raw_body.decode("utf-8", "replace")
