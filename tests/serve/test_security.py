"""Secure by default, on real Ray + Serve: tokens from files (two during a rollover), 401s on every
route, `/healthz` that reveals nothing, the same limits on every route and the handle, bad input as
4xx naming the field, per-key rates and shares, no token in any Ray log or the Serve config, and
no auth needed on a loopback proxy. Deterministic: limits are tiny, so the second request in a row
is over them; the achieved rate under load is measured by `benchmarks/key_quota.py`."""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

import pytest

from tests.serve.conftest import delete_apps, deploy_together, http

pytestmark = [pytest.mark.ray, pytest.mark.slow]

APP = "secure-test"
OPEN_APP = "open-on-loopback"
LITE = "amazon.nova-lite-v1:0"
# Unique per run, so that finding one in a log file means this run wrote it there.
OLD, NEW, NEWER = (f"{age}-{secrets.token_hex(16)}" for age in ("old", "new", "newer"))
KEY_A, KEY_B, KEY_C = (f"key-{n}-{secrets.token_hex(16)}" for n in "abc")
RATE_A, RATE_B = 0.01, 0.02  # one request per 100 s and per 50 s: the second in a row is over
CONFIG: dict[str, Any] = {
    "judges": [
        {"name": "answer", "kind": "final_answer"},
        {
            "name": "rubric",
            "kind": "rubric",
            "model": LITE,
            "deadline_s": 10,
            "criteria": [{"name": "correctness", "description": "The final answer is correct."}],
        },
    ],
    "bedrock": {"default_quota": {"rpm": 60000, "tpm": 100000000}, "retry": {"max_attempts": 2, "base_delay_s": 0.01}},
    "aggregation": {"quorum": 1},
    "serve": {"app_name": APP, "max_request_bytes": 400_000, "max_rollouts_per_request": 8, "max_json_depth": 32},
}


@pytest.fixture(scope="module")
def secured(ray_serve, tmp_path_factory):
    folder = tmp_path_factory.mktemp("mounted-secrets")
    files = {"token": f"{OLD}\n{NEW}\n", "a": KEY_A, "b": KEY_B, "c": KEY_C}
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
        os.chmod(folder / name, 0o600)
    auth = {
        "token": {"file": str(folder / "token")},
        "keys": [
            {"name": "trainer-a", "secret": {"file": str(folder / "a")}, "requests_per_s": RATE_A},
            {"name": "trainer-b", "secret": {"file": str(folder / "b")}, "requests_per_s": RATE_B},
            # 0.0001 of 60,000 rpm: 0.1 rollouts/s, so the second request in a row is over the share
            {"name": "trainer-c", "secret": {"file": str(folder / "c")}, "bedrock_share": 0.0001},
        ],
        "refresh_s": 1,
    }
    # the last test's app, which omits `auth`, is built beside this one: one Serve deployment round, not two
    open_config = {"judges": [{"name": "answer", "kind": "final_answer"}], "serve": {"app_name": OPEN_APP}}
    deploy_together(
        ray_serve,
        [
            (APP, {"config": CONFIG, "env": ray_serve["env"], "auth": auth}, "/secure"),
            (OPEN_APP, {"config": open_config, "env": ray_serve["env"], "auth": None}, "/open"),
        ],
    )
    yield {**ray_serve, "base": ray_serve["url"] + "/secure", "open_base": ray_serve["url"] + "/open", "token_file": folder / "token"}
    delete_apps(APP, OPEN_APP)


def rollout(tag: str, **extra: Any) -> dict[str, Any]:
    return {"id": tag, "prompt": "What is 2+3?", "response": f"2+3 = 5 ({tag})", "reference": "5", **extra}


ROUTES = [
    ("GET", "/info", None),
    ("GET", "/integrity", None),
    ("POST", "/score", {"rollouts": [rollout("r")]}),
    ("POST", "/openrlhf", {"query": ["Q: 2+3?\nA: 5"], "prompts": ["Q: 2+3?\n"], "labels": ["5"]}),
]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=[r[1] for r in ROUTES])
def test_401_without_the_token_with_a_wrong_one_or_a_prefix_of_the_right_one(secured, method, path, body):
    for token in (None, "wrong-token-of-enough-length", NEW[:-1], NEW[:8], f"{OLD}x", "Bearer"):
        status, headers, answer = http(secured["base"], path, body, token=token)
        assert status == 401, (token, answer)
        assert answer == {"error": "missing or wrong bearer token"}
        assert {k.lower(): v for k, v in headers.items()}["www-authenticate"] == "Bearer"


def test_either_rotating_token_is_let_in(secured):
    for index, token in enumerate((OLD, NEW)):
        status, _, body = http(secured["base"], "/score", {"rollouts": [rollout(f"rot-{index}")]}, token=token)
        assert status == 200 and body["results"][0]["status"] == "ok"
    status, _, info = http(secured["base"], "/info", token=NEW)
    assert status == 200 and info["judges"] == ["answer", "rubric"]


def test_healthz_says_alive_and_nothing_of_the_config(secured):
    status, _, body = http(secured["base"], "/healthz", token=None)
    assert status == 200 and body == {"status": "ok"}
    _, _, info = http(secured["base"], "/info", token=OLD)
    for revealing in ("answer", "rubric", "weights", "aggregation", APP):
        assert revealing in json.dumps(info)  # what /info shows and /healthz must not
        assert revealing not in json.dumps(body)


def test_bad_input_gets_4xx_naming_the_field_and_the_server_still_answers(secured):
    base = secured["base"]
    deep = b"[" * 10_000 + b"]" * 10_000
    for path in ("/score", "/openrlhf"):
        status, _, body = http(base, path, raw=deep, token=NEW)
        assert status == 422 and "nested deeper than the limit of 32" in body["error"] and body["field"].startswith("[0][0]"), body
    status, _, body = http(
        base, "/score", raw=b'{"rollouts": [{"id": "d", "metadata": ' + b'{"x": ' * 10_000 + b"1" + b"}" * 10_000 + b"}]}", token=NEW
    )
    assert status == 422 and body["field"].startswith("rollouts[0].metadata.x"), body
    nested: Any = 1
    for _ in range(900):
        nested = {"x": nested}
    status, _, body = http(base, "/score", {"rollouts": [rollout("ok"), rollout("deep", metadata=nested)]}, token=NEW)
    assert status == 422 and body["field"].startswith("rollouts[1].metadata.x.x"), body
    for payload in (b"[1, 2]", b'"text"', b"7"):
        for path in ("/openrlhf", "/score"):
            status, _, body = http(base, path, raw=payload, token=NEW)
            assert status == 422 and body["field"] == "body" and "must be a JSON object" in body["error"], (path, payload, body)
    status, _, body = http(base, "/score", raw=b'{"rollouts": [{"id": "s", "prompt": "p", "response": "\\ud800"}]}', token=NEW)
    assert status == 422 and body["field"] == "response" and "not valid UTF-8" in body["error"] and "truncated" not in body["error"], body
    status, _, body = http(base, "/openrlhf", raw=b'{"query": ["\\ud800"]}', token=NEW)
    assert status == 422 and "not valid UTF-8" in body["error"], body
    status, _, body = http(base, "/score", raw=b'{"rollouts": [', token=NEW)
    assert status == 400 and "not valid JSON" in body["error"] and "line 1" in body["error"], body
    status, _, body = http(base, "/openrlhf", {"query": ["q"] * 9}, token=NEW)
    assert status == 413 and "limit of 8" in body["error"]
    status, _, body = http(base, "/score", {"rollouts": [rollout("same"), rollout("same")]}, token=NEW)
    assert status == 422 and body["field"] == "id" and "duplicate" in body["error"]
    status, _, body = http(base, "/score", {"rollouts": [rollout("after-bad-input")]}, token=NEW)
    assert status == 200 and body["results"][0]["status"] == "ok"


def test_hostile_rows_over_http_name_the_field(secured):
    """The typed decoder behind every route: wrong types, nested junk and oversized strings are a
    422 naming the row's index and the field; unknown fields are ignored, as they always were."""
    from farm.wire import MAX_ID_CHARS

    base = secured["base"]
    cases = [
        (rollout("t", response=5), "response", "must be a string, got integer"),
        (rollout("t", prompt={"role": "user"}), "prompt", "must be a string or an array, got object"),
        (rollout("t", prompt=[{"role": "user", "content": [{"text": {"x": [1]}}]}]), "prompt[0].content[0].text", "got object"),
        (rollout("t", prompt=[{"role": "root", "content": "c"}]), "prompt[0].role", "must be one of"),
        (rollout("t", group=[1]), "group", "got array"),
        ({**rollout("t"), "id": True}, "id", "got boolean"),
        ({**rollout("t"), "id": "i" * (MAX_ID_CHARS + 1)}, "id", f"at most {MAX_ID_CHARS} characters"),
        (rollout("t", metadata=[1]), "metadata", "must be an object or null, got array"),
    ]
    for row, field, words in cases:
        status, _, body = http(base, "/score", {"rollouts": [rollout("fine"), row]}, token=NEW)
        assert status == 422 and body["field"] == field and body["index"] == 1 and words in body["error"], (row, body)
    status, _, body = http(base, "/openrlhf", {"query": ["Q: 2+3?\nA: 5", 5]}, token=NEW)
    assert status == 422 and body["field"] == "query[1]" and "must be a string, got integer" in body["error"], body
    status, _, body = http(base, "/score", {"rollouts": [rollout("extra", unknown={"junk": [1, 2]}, tool_calls=None)]}, token=NEW)
    assert status == 200 and body["results"][0]["status"] == "ok", body


def test_the_handle_path_has_the_same_limits(secured):
    from ray import serve

    from farm.errors import InputError

    handle = serve.get_app_handle(APP)
    nested: Any = 1
    for _ in range(200):
        nested = [nested]
    cases = [
        ([rollout(str(i)) for i in range(9)], "limit of 8"),
        ([rollout("twice"), rollout("twice")], "duplicate id 'twice'"),
        ([rollout("deep", metadata={"m": nested})], "field `metadata.m[0]"),
        ([rollout("lone", metadata={"note": "x\ud800"})], "field `metadata.note`: not valid UTF-8"),
        ([rollout("big", response="x" * 500_000)], "exceeds the limit of 400000"),
        ("not a list", "takes a list of rollouts"),
    ]
    for rows, message in cases:
        with pytest.raises(InputError, match=message.replace("[", r"\[").replace("(", r"\(")):
            handle.score.remote(rows).result()
    (result,) = handle.score.remote([rollout("handle-ok")]).result()
    assert result.status == "ok"


def test_each_key_has_its_own_rate_and_the_shared_token_none(secured):
    """Back to back: each key's first request is let in, its second is over its own rate (with a
    Retry-After from its own rate); one key being limited neither limits the other nor the shared token."""
    base, body = secured["base"], {"rollouts": [rollout("rate")]}
    status, _, answer = http(base, "/score", body, token=KEY_A)
    assert status == 200 and answer["results"][0]["status"] == "ok"
    status, headers_a, answer = http(base, "/score", body, token=KEY_A)
    assert status == 429 and "trainer-a" in answer["error"] and "request rate" in answer["error"], answer
    status, _, _ = http(base, "/score", body, token=KEY_B)
    assert status == 200  # trainer-a's limit is trainer-a's alone
    status, headers_b, answer = http(base, "/score", body, token=KEY_B)
    assert status == 429 and "trainer-b" in answer["error"], answer
    retry = [int({k.lower(): v for k, v in h.items()}["retry-after"]) for h in (headers_a, headers_b)]
    assert retry[0] > retry[1] >= 1, retry  # 1/RATE_A s against 1/RATE_B s
    for n in range(3):
        assert http(base, "/score", {"rollouts": [rollout(f"unlimited-{n}")]}, token=OLD)[0] == 200  # no rate of its own


def test_a_keys_share_of_the_bedrock_quota_is_enforced(secured):
    status, _, _ = http(secured["base"], "/score", {"rollouts": [rollout("share-1"), rollout("share-2")]}, token=KEY_C)
    assert status == 200
    status, headers, body = http(secured["base"], "/score", {"rollouts": [rollout("share-3")]}, token=KEY_C)
    assert status == 429 and "share of the Bedrock quota" in body["error"] and "trainer-c" in body["error"]
    assert int({k.lower(): v for k, v in headers.items()}["retry-after"]) >= 1


def test_usage_per_key_reaches_the_metrics(secured):
    import urllib.request

    import ray

    port = next(n["MetricsExportPort"] for n in ray.nodes() if n["Alive"])
    wanted = ('key="trainer-a"', 'key="trainer-b"', 'outcome="limited"', "ray_farm_key_rollouts_total")
    deadline, text = time.monotonic() + 60, ""
    while time.monotonic() < deadline:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        lines = [line for line in text.splitlines() if line.startswith("ray_farm_key_")]
        if all(any(w in line for line in lines) for w in wanted):
            break
        time.sleep(1)
    lines = [line for line in text.splitlines() if line.startswith("ray_farm_key_")]
    for w in wanted:
        assert any(w in line for line in lines), (w, lines[:20])


def _serve_config_text() -> str:
    """Everything Serve stores about its apps: the details the API serves and every GCS KV entry."""
    from ray.experimental import internal_kv
    from ray.serve.context import _get_global_client

    parts = [json.dumps(_get_global_client().get_serve_details(), default=str)]
    for namespace in ("serve", None, ""):
        try:
            keys = internal_kv._internal_kv_list(b"", namespace=namespace)
        except Exception:  # noqa: BLE001 - a namespace this Ray does not list (its error type is internal)
            continue
        for key in keys:
            value = internal_kv._internal_kv_get(key, namespace=namespace) or b""
            parts.append(key.decode("utf-8", "replace") + value.decode("latin-1"))
    return "\n".join(parts)


def test_no_token_in_any_ray_log_or_the_serve_config(secured):
    """Runs after the traffic above: every token was used, then none is found anywhere Ray writes."""
    import ray

    for token in (OLD, NEW):  # the keys were used above, and are over their rates now
        assert http(secured["base"], "/score", {"rollouts": [rollout(f"grep-{token[:5]}")]}, token=token)[0] == 200
    time.sleep(2)  # let log writers flush
    session = Path(ray._private.worker._global_node.get_session_dir_path())
    needles = [t.encode() for t in (OLD, NEW, KEY_A, KEY_B, KEY_C)]
    scanned, found = 0, []
    for path in session.rglob("*"):
        if not path.is_file() or path.is_symlink():
            continue
        try:
            data = path.read_bytes()
        except OSError:
            continue
        scanned += 1
        found += [f"{path}: token #{i}" for i, n in enumerate(needles) if n in data]
    assert scanned > 20 and any(p.name.startswith("runtime_env") for p in session.rglob("*.log"))
    assert not found, found
    stored = _serve_config_text()
    assert APP in stored and "mounted-secrets" in stored  # the config names where the token lives ...
    assert not [t for t in (OLD, NEW, KEY_A, KEY_B, KEY_C) if t in stored]  # ... and never the token


def test_a_rotation_takes_effect_without_a_restart(secured):
    """The secret changes under the running ingress: the new token works, the dropped one does not."""
    _, _, before = http(secured["base"], "/info", token=NEW)
    secured["token_file"].write_text(f"{NEW}\n{NEWER}\n", encoding="utf-8")
    time.sleep(1.5)  # refresh_s is 1 in this app
    status, _, _ = http(secured["base"], "/score", {"rollouts": [rollout("rotated-in")]}, token=NEWER)
    assert status == 200
    assert http(secured["base"], "/info", token=OLD)[0] == 401
    _, _, after = http(secured["base"], "/info", token=NEW)
    assert after["started_at"] == before["started_at"]  # the same replica: no restart
    secured["token_file"].write_text("", encoding="utf-8")  # a broken source keeps the tokens read before
    time.sleep(1.5)  # a re-read is due again ...
    assert http(secured["base"], "/info", token="wrong-token-forcing-a-re-read")[0] == 401  # ... and this forces it
    assert http(secured["base"], "/info", token=NEWER)[0] == 200
    assert http(secured["base"], "/info", token=OLD)[0] == 401  # an empty book would let everyone in


def test_no_auth_is_needed_behind_a_loopback_proxy(secured):
    """Deployed with `auth` omitted on the suite's 127.0.0.1 proxy (beside the secured app, by its
    fixture): the ingress asks Serve's controller where its proxy binds (the real `_proxy_host()`),
    finds loopback and starts without a token."""
    status, _, body = http(secured["open_base"], "/score", {"rollouts": [rollout("open")]}, token=None)
    assert status == 200 and body["results"][0]["status"] == "ok", body
    assert http(secured["open_base"], "/info", token=None)[0] == 200
