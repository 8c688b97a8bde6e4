"""The Bedrock emulator: Converse over loopback HTTP with quotas, faults and a simulated judge."""

from farm.emulator.server import EmulatorServer, EmulatorThread, ModelStats
from farm.emulator.settings import EmulatorSettings, FaultRates, ModelSettings
from farm.emulator.simjudge import JudgeProfile

__all__ = ["EmulatorServer", "EmulatorSettings", "EmulatorThread", "FaultRates", "JudgeProfile", "ModelSettings", "ModelStats"]
