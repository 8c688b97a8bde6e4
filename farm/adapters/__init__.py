"""Adapters for trainers' reward conventions: TRL, verl, OpenRLHF and Nova RFT's reward Lambda."""

__all__: list[str] = []
