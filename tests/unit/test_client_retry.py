"""HttpFarmClient's backpressure retry against a real loopback server whose Retry-After is absurd."""

from __future__ import annotations

import http.server
import json
import threading

from farm.client import HttpFarmClient, _retry_after


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
