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


def test_farm_serve_will_not_take_the_token_from_its_environment(monkeypatch: pytest.MonkeyPatch):
    from farm.cli import main

    monkeypatch.setenv("FARM_API_TOKEN", GOOD)
    result = CliRunner().invoke(main, ["serve"])
    assert result.exit_code != 0 and "--token-file" in result.output and GOOD not in result.output


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

    ingress_class = ingress.RewardIngress.func_or_class
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
