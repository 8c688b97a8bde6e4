"""Token sources, the token check, the door's limits and `farm serve`'s start-up refusals, without Ray."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from farm.auth import AuthConfig, SecretRef, TokenBook, is_loopback, read_tokens
from farm.errors import ConfigError, InputError
from farm.wire import check_depth, decode_json, parse_rollout

GOOD, OTHER = "a" * 20 + "-good-token", "b" * 20 + "-next-token"


def test_a_token_file_holds_one_token_per_line_for_rotation(tmp_path: Path):
    path = tmp_path / "token"
    path.write_text(f"# rotated 2026-11\n{GOOD}\n\n  {OTHER}  \n")
    assert read_tokens(SecretRef(file=str(path))) == [GOOD, OTHER]
    path.write_text(json.dumps({"tokens": [GOOD, OTHER]}))
    assert read_tokens(SecretRef(file=str(path))) == [GOOD, OTHER]


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "does not exist"), ("", "holds no token"), ("\n  \n# only a comment\n", "holds no token"), ("sh0rt-t0ken", "shorter than 16")],
)
def test_a_missing_empty_or_weak_token_file_is_refused_by_name(tmp_path: Path, content: str | None, message: str):
    path = tmp_path / "token"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=message) as caught:
        read_tokens(SecretRef(file=str(path)))
    assert str(path) in str(caught.value) and (content is None or content.strip() == "" or content not in str(caught.value))


def test_a_secret_ref_names_exactly_one_source():
    with pytest.raises(ValueError, match="exactly one"):
        SecretRef(file="/a", ssm="b")
    with pytest.raises(ValueError, match="exactly one"):
        SecretRef()
    with pytest.raises(ValueError, match="duplicate key names"):
        AuthConfig(keys=[{"name": "k", "secret": {"file": "/a"}}, {"name": "k", "secret": {"file": "/b"}}])


def test_the_token_check_names_the_caller_and_refuses_near_misses():
    book = TokenBook([("token", GOOD), ("token", OTHER), ("trainer-a", "k" * 24)])
    assert book.check(GOOD) == "token" and book.check(OTHER) == "token" and book.check("k" * 24) == "trainer-a"
    for near in (GOOD[:-1], GOOD[:8], GOOD + "x", "", GOOD.upper(), "\ud800"):
        assert book.check(near) is None
    assert book.check_header(f"Bearer {GOOD}") == "token" and book.check_header(f"bearer {OTHER}") == "token"
    assert book.check_header(GOOD) is None and book.check_header(f"Basic {GOOD}") is None and book.check_header("Bearer ") is None
    assert not TokenBook([]).enabled


def test_loopback_addresses():
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.1.2.3", "::1", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.5", "example.com", None))


def test_depth_limit_names_the_field_and_never_recurses():
    deep = b'{"rollouts": [{"id": "a", "metadata": ' + b'{"k": ' * 20_000 + b"1" + b"}" * 20_000 + b"}]}"
    with pytest.raises(InputError, match="nested deeper than the limit of 64") as caught:
        decode_json(deep)
    assert caught.value.field.startswith("rollouts[0].metadata.k")
    with pytest.raises(InputError) as caught:
        decode_json(b"[" * 5000 + b"]" * 5000, max_depth=10)
    assert caught.value.field.startswith("[0][0]")
    nested: object = 1
    for _ in range(900):
        nested = [nested]
    with pytest.raises(InputError, match="field `metadata.x") as row_error:
        parse_rollout({"id": "r", "prompt": "p", "response": "r", "metadata": {"x": nested}})
    assert row_error.value.row == "'r'"
    check_depth({"a": [[{"b": 1}]]}, 4)
    with pytest.raises(InputError):
        check_depth({"a": [[{"b": [1]}]]}, 4)


def test_json_errors_say_what_is_wrong():
    assert decode_json(b'{"a": "\\ud800"}') == {"a": "\ud800"}  # decodes; the row check names the field
    with pytest.raises(InputError, match="field `response`: not valid UTF-8"):
        parse_rollout({"id": "s", "prompt": "p", "response": "\ud800"})
    with pytest.raises(InputError, match="not valid JSON: .* line 1 column 2"):
        decode_json(b"{bad")
    with pytest.raises(InputError, match="not valid JSON"):
        decode_json(b'{"a": "\xff"}')


def test_builder_refuses_a_token_in_the_replicas_environment():
    from deploy.app import FarmAppArgs

    with pytest.raises(ValueError, match="must not carry FARM_API_TOKEN"):
        FarmAppArgs(env={"FARM_API_TOKEN": GOOD})
    args = FarmAppArgs(auth={"token": {"secretsmanager": "reward-farm/api-token", "region": "us-east-1"}})
    assert args.auth is not None and args.auth.token.describe() == "Secrets Manager secret 'reward-farm/api-token'"


def test_door_rates_and_bedrock_share():
    from deploy.door import TokenBucket, bedrock_rpm_floor
    from farm.config import parse_config

    bucket = TokenBucket(rate=2.0, burst=2.0, stamp=0.0)
    assert bucket.wait_s(0.0) == 0.0
    bucket.charge(1)
    bucket.charge(1)
    assert bucket.wait_s(0.0) == pytest.approx(0.5)
    assert bucket.wait_s(0.5) == 0.0
    bucket.charge(10)  # a big request overdraws; the next one waits for it
    assert bucket.wait_s(0.5) == pytest.approx(5.0)  # from -9 back to 1 at 2/s
    config = parse_config(
        {
            "judges": [
                {"name": "a", "kind": "final_answer"},
                {"name": "r", "kind": "rubric", "model": "m1", "criteria": [{"name": "c", "description": "d"}]},
                {"name": "p", "kind": "preference", "model": "m2"},
            ],
            "bedrock": {"quotas": {"m1": {"rpm": 600, "tpm": 10**6}, "m2": {"rpm": 120, "tpm": 10**6}}},
        }
    )
    assert bedrock_rpm_floor(config) == 120.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--host", "0.0.0.0"], "refusing to listen on 0.0.0.0 without a token"),
        (["--host", "10.1.2.3"], "--insecure"),
        (["--token-file", "{missing}"], "does not exist"),
        (["--token-file", "{empty}"], "holds no token"),
        (["--token-file", "{empty}", "--token-ssm", "x"], "give one of"),
    ],
)
def test_farm_serve_refuses_to_start_unsafely(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str):
    from farm.cli import main

    monkeypatch.delenv("FARM_API_TOKEN", raising=False)
    (tmp_path / "empty").write_text("\n")
    paths = {"missing": str(tmp_path / "missing"), "empty": str(tmp_path / "empty")}
    result = CliRunner().invoke(main, ["serve", *[a.format(**paths) for a in args]])
    assert result.exit_code != 0 and message in result.output, result.output


def test_farm_serve_warns_that_it_does_not_read_the_token_from_its_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The clients' variable in serve's shell is a warning, not a refusal: the start goes on to its next check."""
    from farm.cli import main

    monkeypatch.setenv("FARM_API_TOKEN", GOOD)
    result = CliRunner().invoke(main, ["serve", "--token-file", str(tmp_path / "missing")])
    assert "warning: FARM_API_TOKEN is set but the server does not read it" in result.output, result.output
    assert "does not exist" in result.output and GOOD not in result.output  # got past the warning


def test_the_door_re_reads_its_sources_and_keeps_the_last_good_tokens(tmp_path: Path):
    from deploy.door import Door
    from farm.config import parse_config

    path = tmp_path / "token"
    path.write_text(GOOD)
    config = parse_config(
        {"judges": [{"name": "a", "kind": "final_answer"}], "serve": {"auth": {"token": {"file": str(path)}, "refresh_s": 5}}}
    )
    auth = config.serve.auth
    door = Door(config, TokenBook.load(auth))
    assert door.caller(f"Bearer {GOOD}") == "token" and door.caller(f"Bearer {OTHER}") is None
    path.write_text(f"{GOOD}\n{OTHER}\n")
    assert not door.refresh_due(auth) and door.caller(f"Bearer {OTHER}") is None  # not yet due
    assert door.refresh(auth, now=door._loaded_at + 5) is None
    assert door.caller(f"Bearer {OTHER}") == "token" and door.caller(f"Bearer {GOOD}") == "token"
    path.write_text("")
    problem = door.refresh(auth, now=door._loaded_at + 5)
    assert problem is not None and "holds no token" in problem and GOOD not in problem
    assert door.caller(f"Bearer {OTHER}") == "token"


def test_an_error_naming_a_lone_surrogate_still_encodes():
    from deploy.ingress import _respond

    response = _respond(422, {"error": "nested too deep", "field": "rollouts[0].metadata.\ud800"})
    assert response.status_code == 422 and b"\\ud800" in response.body


def test_the_ingress_refuses_to_start_without_auth_behind_a_public_proxy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The replica's own check, for Serve configs that bypass `farm serve` (serve deploy, KubeRay)."""
    import deploy.ingress as ingress

    ingress_class = ingress.RewardIngress.func_or_class.__wrapped__  # the class itself, not Serve's ASGI ingress wrapper
    raw = {"judges": [{"name": "a", "kind": "final_answer"}]}
    monkeypatch.setattr(ingress, "_proxy_host", lambda: "0.0.0.0")
    with pytest.raises(ConfigError, match="refusing to serve without auth: Serve's HTTP proxy binds 0.0.0.0"):
        ingress_class({"a": object()}, raw)
    token = tmp_path / "token"
    token.write_text(GOOD)
    secured = ingress_class({"a": object()}, {**raw, "serve": {"auth": {"token": {"file": str(token)}}}})
    assert secured.door.enabled
    assert not ingress_class({"a": object()}, raw, insecure=True).door.enabled  # the explicit override
    monkeypatch.setattr(ingress, "_proxy_host", lambda: "127.0.0.1")
    assert not ingress_class({"a": object()}, raw).door.enabled  # loopback: no token needed


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"tokens": null}', "`tokens` is not a list of strings"),
        ('{"tokens": 5}', "`tokens` is not a list of strings"),
        (json.dumps({"tokens": GOOD}), "`tokens` is not a list of strings"),  # not its characters as tokens
        (json.dumps({"tokens": [GOOD, 5]}), "`tokens` is not a list of strings"),
        (json.dumps({"token": [GOOD]}), "`token` is not a string"),  # not str() of the list
        (json.dumps({"token": None}), "`token` is not a string"),
        (json.dumps([GOOD, OTHER]), "JSON of another shape"),  # not one literal token
        (json.dumps({"secret": GOOD}), "JSON of another shape"),
    ],
)
def test_a_json_token_source_of_the_wrong_shape_is_refused_by_name(tmp_path: Path, content: str, message: str):
    path = tmp_path / "token"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message) as caught:
        read_tokens(SecretRef(file=str(path)))
    assert str(path) in str(caught.value) and GOOD not in str(caught.value)


def test_a_json_token_source_of_the_right_shape_is_read(tmp_path: Path):
    path = tmp_path / "token"
    path.write_text(json.dumps({"token": f" {GOOD} "}))
    assert read_tokens(SecretRef(file=str(path))) == [GOOD]
    path.write_text(json.dumps({"tokens": [GOOD, "", OTHER]}))
    assert read_tokens(SecretRef(file=str(path))) == [GOOD, OTHER]


def test_a_rotation_that_breaks_in_any_way_keeps_the_last_good_tokens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import farm.auth
    from deploy.door import Door
    from farm.config import parse_config

    path = tmp_path / "token"
    path.write_text(GOOD)
    config = parse_config({"judges": [{"name": "a", "kind": "final_answer"}], "serve": {"auth": {"token": {"file": str(path)}}}})
    auth = config.serve.auth
    door = Door(config, TokenBook.load(auth))
    path.write_text('{"tokens": 5}')  # a shape that used to raise TypeError
    problem = door.refresh(auth, now=door._loaded_at + auth.refresh_s)
    assert problem is not None and "`tokens` is not a list of strings" in problem
    assert door.caller(f"Bearer {GOOD}") == "token"

    def broken(ref: SecretRef) -> list[str]:
        raise RuntimeError(f"unexpected {GOOD}")  # an error whose text could carry a value

    monkeypatch.setattr(farm.auth, "read_tokens", broken)
    problem = door.refresh(auth, now=door._loaded_at + auth.refresh_s)
    assert problem == "keeping the tokens read before: RuntimeError"
    assert door.caller(f"Bearer {GOOD}") == "token"


def test_a_background_refresh_logs_and_keeps_the_tokens(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    from deploy.door import Door
    from farm.config import parse_config

    path = tmp_path / "token"
    path.write_text(GOOD)
    config = parse_config(
        {"judges": [{"name": "a", "kind": "final_answer"}], "serve": {"auth": {"token": {"file": str(path)}, "refresh_s": 1}}}
    )
    auth = config.serve.auth
    door = Door(config, TokenBook.load(auth))
    assert not door.refresh_in_background(auth)  # not due yet
    path.write_text("[1, 2]")
    door._loaded_at -= auth.refresh_s
    with caplog.at_level("WARNING", logger="ray.serve"):
        assert door.refresh_in_background(auth)
        assert door._refreshing is not None
        door._refreshing.join(timeout=30)
    assert "token refresh failed" in caplog.text and "JSON of another shape" in caplog.text
    assert door.caller(f"Bearer {GOOD}") == "token"


@pytest.mark.parametrize("name", ["anonymous", "token", "Anonymous", "TOKEN"])
def test_the_ingress_callers_own_names_are_reserved(name: str):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="reserved"):
        AuthConfig(keys=[{"name": name, "secret": {"file": "/a"}}])
    assert AuthConfig(keys=[{"name": f"{name}-2", "secret": {"file": "/a"}}]).enabled


def test_secret_store_calls_are_bounded(monkeypatch: pytest.MonkeyPatch):
    """A secret store that accepts and never answers: 2 attempts, then `ConfigError` naming the source.
    Boto3's defaults would wait 60 s per attempt and try up to 5 times."""
    import socket
    import threading

    import farm.auth

    assert farm.auth._STORE_CALLS == {"connect_timeout": 2, "read_timeout": 5, "retries": {"total_max_attempts": 2, "mode": "standard"}}
    monkeypatch.setitem(farm.auth._STORE_CALLS, "read_timeout", 0.3)  # the same bound, shorter, to keep the test fast
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.2)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def silent() -> None:
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=silent, daemon=True)
    thread.start()
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing"}.items():
        monkeypatch.setenv(name, value)
    port = server.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ENDPOINT_URL_SSM", f"http://127.0.0.1:{port}")
    try:
        refs = (SecretRef(secretsmanager="reward-farm/api-token", region="us-east-1"), SecretRef(ssm="/farm/t", region="us-east-1"))
        for ref, counted in zip(refs, (2, 4), strict=True):
            with pytest.raises(ConfigError, match="ReadTimeoutError") as caught:
                read_tokens(ref)
            assert ref.describe() in str(caught.value)
            assert len(accepted) == counted, accepted  # exactly 2 attempts per read
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in accepted:
            conn.close()
        server.close()


@pytest.mark.parametrize(
    ("metadata", "field"),
    [
        ({"note": "x\ud800"}, "metadata.note"),
        ({"x\udc00": 1}, "metadata key"),
        ({"steps": [{"deep": "\ud800"}]}, "metadata.steps[0].deep"),
    ],
)
def test_lone_surrogates_in_metadata_are_input_errors_naming_the_field(metadata: dict, field: str):
    """Else the handle path's `msgspec.json.encode` raises a raw `UnicodeEncodeError`."""
    import msgspec

    from farm.wire import Rollout

    with pytest.raises(InputError, match="not valid UTF-8") as caught:
        parse_rollout({"id": "r1", "prompt": "p", "response": "r", "metadata": metadata})
    assert caught.value.field == field and caught.value.row and "r1" in caught.value.row
    rollout = Rollout(id="r2", prompt="p", response="r", metadata=metadata)  # a handle caller's own object
    with pytest.raises(InputError, match="not valid UTF-8") as caught:
        parse_rollout(rollout)
    assert caught.value.field == field
    clean = parse_rollout({"id": "r3", "prompt": "p", "response": "r", "metadata": {"steps": [{"deep": "ok"}], "n": 1}})
    assert msgspec.json.encode(clean)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_the_stdlib_fallback_refuses_what_msgspec_refuses(constant: str):
    """A lone-surrogate escape sends decoding to the stdlib parser, which must not accept NaN either."""
    for body in (f'{{"score": {constant}}}', f'{{"id": "\\ud800", "score": {constant}}}'):
        with pytest.raises(InputError, match=f"{constant} is not a JSON number"):
            decode_json(body.encode())
    assert decode_json(b'{"id": "\\ud800"}') == {"id": "\ud800"}
