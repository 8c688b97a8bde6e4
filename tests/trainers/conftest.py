"""A real `farm serve` (Ray Serve, started from the project's environment) judging with a Bedrock
emulator that tests can break, and a tokenizer built here (no hub) for the trainers' own code."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from farm.emulator import EmulatorSettings, EmulatorThread
from tests.conftest import PREFERENCE, REPO, RUBRIC
from tests.farm_process import stop_process_group, wait_until_serving
from tests.serve.conftest import free_port

TOKEN = "trainer-test-token-0123456789"
JUDGES = [{"name": "final_answer", "kind": "final_answer", "weight": 2.0}, RUBRIC, PREFERENCE]
FAST_BEDROCK = {
    "region": "us-east-1",
    "retry": {"max_attempts": 2, "base_delay_s": 0.01, "max_delay_s": 0.02},
    "default_quota": {"rpm": 60000, "tpm": 100000000},
    "read_timeout_s": 10.0,
}
NOVA_DOWN = {"faults": {"model_error": 1.0}}
NOVA_UP = {"faults": {"model_error": 0.0}}


def farm_config(judges: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"judges": judges or JUDGES, "bedrock": FAST_BEDROCK}


@pytest.fixture(scope="session")
def trainer_emulator() -> Iterator[EmulatorThread]:
    with EmulatorThread(EmulatorSettings(latency_ms=2, latency_sigma=0, rpm=60_000, tpm=100_000_000)) as emu:
        yield emu


@pytest.fixture
def nova(trainer_emulator: EmulatorThread) -> Iterator[EmulatorThread]:
    """The emulator, restored to healthy after a test that takes Nova down."""
    trainer_emulator.reset()
    yield trainer_emulator
    trainer_emulator.update(**NOVA_UP)


@pytest.fixture(scope="session")
def farm_http(trainer_emulator: EmulatorThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """`farm serve` in a subprocess with a shared token and a named key `openrlhf` (its token goes in the path)."""
    folder = tmp_path_factory.mktemp("farm")
    key = secrets.token_urlsafe(16)
    (folder / "token").write_text(TOKEN + "\n")
    (folder / "openrlhf-token").write_text(key + "\n")
    config = farm_config()
    config["serve"] = {
        "auth": {
            "token": {"file": str(folder / "token")},
            "keys": [{"name": "openrlhf", "secret": {"file": str(folder / "openrlhf-token")}}],
        }
    }
    config_path = folder / "farm.yaml"
    config_path.write_text(yaml.safe_dump(config))
    port = free_port()
    ray_tmp = Path(tempfile.mkdtemp(prefix="rf-", dir="/tmp"))  # this farm's own Ray logs (short: socket paths)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FARM_", "RAY_ADDRESS"))}
    env.update(
        {
            "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": trainer_emulator.url,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_EC2_METADATA_DISABLED": "true",
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": str(REPO),
            "RAY_TMPDIR": str(ray_tmp),
        }
    )
    command = [sys.executable, "-m", "farm.cli", "serve", "--config", str(config_path), "--port", str(port), "--num-cpus", "2"]
    proc = subprocess.Popen(
        command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env, cwd=REPO, start_new_session=True
    )
    lines: list[str] = []
    try:
        url = wait_until_serving(proc, lines, timeout_s=240)
        yield {"url": url, "token": TOKEN, "key": key, "emulator": trainer_emulator, "ray_tmp": ray_tmp}
    finally:
        stop_process_group(proc)
        shutil.rmtree(ray_tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A byte-level BPE tokenizer with ChatML special tokens, trained here in milliseconds and
    saved (no hub); it round-trips text exactly, as the trainers' real tokenizers do."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    corpus = ["What is 2 + 3? The answer is 5. #### 5", "system user assistant Be brief.", "Natalia sold 48 clips in April."] * 20
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(corpus, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", eos_token="<|im_end|>", additional_special_tokens=specials[1:3]
    )
    tokenizer.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    path = tmp_path_factory.mktemp("tokenizer")
    tokenizer.save_pretrained(path)
    return path


def post_json(url: str, body: Any, token: str | None = None) -> tuple[int, Any]:
    import urllib.error
    import urllib.request

    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")
