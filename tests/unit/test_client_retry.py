"""HttpFarmClient against real loopback servers: its one backpressure retry loop (sync and async),
an absurd Retry-After, a call from inside a running loop, and transport failures mapped to FarmErrors."""

from __future__ import annotations

import asyncio
import http.server
import json
import socket
import threading

import pytest

from farm.client import FarmConnectionError, FarmHTTPError, FarmProtocolError, FarmTimeoutError, HttpFarmClient, _retry_after


def test_retry_after_is_finite_and_capped():
    for header in ("inf", "1e12", "nan", "-5", "Wed, 21 Oct 2015 07:28:00 GMT", None):
        wait = _retry_after(header, 0)
        assert 0.0 <= wait <= 60.0, (header, wait)
    assert _retry_after("3", 0) == 3.0


def test_http_client_survives_an_infinite_retry_after():
    calls = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            calls.append(len(body["rollouts"]))
            if len(calls) == 1:
                self.send_response(503)
                self.send_header("Retry-After", "inf")
                payload = b'{"error": "busy"}'
            else:
                self.send_response(200)
                results = [{"id": r["id"], "reward": 1.0, "status": "ok", "judges": {}} for r in body["rollouts"]]
                payload = json.dumps({"results": results}).encode()
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = HttpFarmClient(f"http://127.0.0.1:{server.server_address[1]}", retries=2, timeout_s=30)
        (result,) = client.score([{"id": "a", "prompt": "p", "response": "r"}])
    finally:
        server.shutdown()
    assert result.id == "a" and result.reward == 1.0 and calls == [1, 1]


class _Farm:
    """A loopback stand-in for `POST /score` that answers from a script: (status, headers, body) per call."""

    def __init__(self, script: list[tuple[int, dict[str, str], bytes | None]]):
        self.script = list(script)
        self.calls = 0
        farm = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status, headers, payload = farm.script[min(farm.calls, len(farm.script) - 1)]
                farm.calls += 1
                if payload is None:  # answer with results for what was sent
                    payload = json.dumps(
                        {"results": [{"id": r["id"], "reward": 0.5, "status": "ok", "judges": {}} for r in body["rollouts"]]}
                    ).encode()
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                return None

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def __enter__(self) -> _Farm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


ROWS = [{"id": "a", "prompt": "p", "response": "r"}, {"id": "b", "prompt": "p", "response": "r"}]


def test_sync_and_async_share_one_retry_loop():
    busy = (429, {"Retry-After": "0"}, b'{"error": "slow down"}')
    with _Farm([busy, busy, (200, {}, None)]) as farm:
        client = HttpFarmClient(farm.url, retries=3)
        assert [r.id for r in client.score(ROWS)] == ["a", "b"] and farm.calls == 3
        farm.calls = 0
        assert [r.id for r in asyncio.run(client.score_async(ROWS))] == ["a", "b"] and farm.calls == 3
        farm.calls = 0
        with pytest.raises(FarmHTTPError) as info:  # retries spent: the last answer surfaces with its status
            HttpFarmClient(farm.url, retries=1).score(ROWS)
        assert info.value.status == 429 and "slow down" in str(info.value) and farm.calls == 2
        client.close()


def test_the_blocking_client_works_from_inside_a_running_event_loop():
    with _Farm([(200, {}, None)]) as farm:
        client = HttpFarmClient(farm.url)

        async def trainer_step() -> list[float | None]:
            return [r.reward for r in client.score(ROWS)]  # a sync reward function called from async code

        assert asyncio.run(trainer_step()) == [0.5, 0.5]
        client.close()


def test_transport_failures_are_mapped_to_farm_errors_in_one_place():
    with _Farm([(401, {}, b'{"error": "missing or wrong bearer token"}')]) as farm:
        with pytest.raises(FarmHTTPError, match="401: missing or wrong bearer token") as info:
            HttpFarmClient(farm.url, retries=0).score(ROWS)
        assert info.value.status == 401
    with _Farm([(200, {}, b"<html>a proxy page</html>")]) as farm:
        with pytest.raises(FarmProtocolError, match="unreadable results document"):
            HttpFarmClient(farm.url).score(ROWS)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    with pytest.raises(FarmConnectionError, match="cannot reach the farm"):
        HttpFarmClient(f"http://127.0.0.1:{port}").score(ROWS)
    with pytest.raises(FarmConnectionError, match="cannot reach the farm"):
        asyncio.run(HttpFarmClient(f"http://127.0.0.1:{port}").score_async(ROWS))


def test_a_silent_farm_is_a_timeout_error():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()  # accepts connections, never answers
    try:
        with pytest.raises(FarmTimeoutError, match="within the client's timeout"):
            HttpFarmClient(f"http://127.0.0.1:{listener.getsockname()[1]}", timeout_s=0.3).score(ROWS)
    finally:
        listener.close()
