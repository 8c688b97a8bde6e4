"""Reward farm: LLM-judge and rule rewards for RL fine-tuning, on Ray.

The public surface is small on purpose; `tests/unit/test_public_api.py` pins it.
"""

from farm.config import FarmConfig, load_config
from farm.ensemble import Ensemble
from farm.errors import ConfigError, FarmError, InputError, JudgeError
from farm.flags import FailureReason, Flag
from farm.judges import Judge
from farm.wire import RewardResult, Rollout, Verdict, parse_rollout

__all__ = [
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
