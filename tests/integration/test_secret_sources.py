"""Tokens from AWS Secrets Manager and SSM Parameter Store, read with unchanged boto3 from moto's
server on loopback (real HTTP, real SigV4 signing), as the ingress reads them at start."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from farm.auth import AuthConfig, SecretRef, TokenBook, read_tokens
from farm.errors import ConfigError
from tests.serve.conftest import free_port

pytestmark = pytest.mark.integration

OLD, NEW = "o" * 24 + "-rotating-out", "n" * 24 + "-rotating-in"


@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server_module = pytest.importorskip("moto.server", reason="moto[server] is a dev dependency")
    port = free_port()
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws_env(aws: str, monkeypatch: pytest.MonkeyPatch) -> str:
    for name, value in {
        "AWS_ENDPOINT_URL_SECRETS_MANAGER": aws,
        "AWS_ENDPOINT_URL_SSM": aws,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
    return aws


def test_secrets_manager_secret_with_two_tokens_during_a_rollover(aws_env: str):
    import boto3

    client = boto3.client("secretsmanager", region_name="us-east-1")
    client.create_secret(Name="reward-farm/api-token", SecretString=json.dumps({"tokens": [OLD, NEW]}))
    client.create_secret(Name="reward-farm/key-a", SecretString="k" * 30)
    auth = AuthConfig(
        token=SecretRef(secretsmanager="reward-farm/api-token", region="us-east-1"),
        keys=[{"name": "trainer-a", "secret": {"secretsmanager": "reward-farm/key-a", "region": "us-east-1"}}],
    )
    book = TokenBook.load(auth)
    assert book.check(OLD) == "token" and book.check(NEW) == "token" and book.check("k" * 30) == "trainer-a"
    assert book.check(NEW[:-1]) is None
    client.put_secret_value(SecretId="reward-farm/api-token", SecretString=NEW)  # the rollover ends
    assert read_tokens(SecretRef(secretsmanager="reward-farm/api-token")) == [NEW]


def test_ssm_secure_string_parameter(aws_env: str):
    import boto3

    boto3.client("ssm", region_name="us-east-1").put_parameter(Name="/reward-farm/api-token", Value=f"{OLD}\n{NEW}", Type="SecureString")
    assert read_tokens(SecretRef(ssm="/reward-farm/api-token")) == [OLD, NEW]


def test_missing_secret_or_parameter_is_a_config_error_naming_it(aws_env: str):
    with pytest.raises(ConfigError, match=r"Secrets Manager secret 'no-such-secret': ResourceNotFoundException"):
        read_tokens(SecretRef(secretsmanager="no-such-secret"))
    with pytest.raises(ConfigError, match=r"SSM parameter '/no/such': ParameterNotFound"):
        read_tokens(SecretRef(ssm="/no/such"))
