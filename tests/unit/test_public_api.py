import importlib
import pkgutil
import subprocess
import sys

import farm


def test_public_api_is_pinned():
    assert sorted(farm.__all__) == [
        "ConfigError",
        "Ensemble",
        "FailureReason",
        "FarmConfig",
        "FarmError",
        "Flag",
        "InputError",
        "Judge",
        "JudgeError",
        "RewardResult",
        "Rollout",
        "Verdict",
        "load_config",
        "parse_rollout",
    ]
    for name in farm.__all__:
        assert getattr(farm, name) is not None


def test_every_module_declares_all():
    for info in pkgutil.walk_packages(farm.__path__, "farm."):
        module = importlib.import_module(info.name)
        if info.name in {"farm.prompts", "farm.defaults"}:
            continue
        assert hasattr(module, "__all__"), f"{info.name} has no __all__"


def test_farm_imports_without_ray():
    code = (
        "import pkgutil, importlib, sys, farm\n"
        "for info in pkgutil.walk_packages(farm.__path__, 'farm.'):\n"
        "    importlib.import_module(info.name)\n"
        "bad = sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_flags_are_a_closed_documented_vocabulary():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for flag in farm.Flag:
        assert f"`{flag.value}`" in readme, f"flag {flag.value} is not documented in README"
    for reason in farm.FailureReason:
        assert f"`{reason.value}`" in readme, f"failure reason {reason.value} is not documented in README"
