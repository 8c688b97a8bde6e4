"""Reward integrity: detecting rollouts that address the judge, and probing judges for what a
policy under RL pressure would exploit."""

__all__: list[str] = []
