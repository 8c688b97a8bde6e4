"""The names of the probes in `farm probe` and `integrity.probes.probes`, a closed vocabulary.

Kept apart from the probes themselves (`farm.analysis.probes`, which score through the ensemble)
so the config can validate a probe name without importing the layers above it."""

from __future__ import annotations

__all__ = ["PROBE_NAMES"]

PROBE_NAMES: tuple[str, ...] = (
    "injection_suffix",
    "injection_prefix",
    "injection_code_block",
    "injection_fake_delimiter",
    "injection_other_language",
    "injection_zero_width",
    "injection_lookalike",
    "injection_reference_dispute",
    "injection_hidden_comment",
    "injection_score_json",
    "injection_base64",
    "injection_role_turn",
    "flattery",
    "verbosity_padding",
    "repetition",
    "terse",
    "format_only",
    "master_key_step_by_step",
    "master_key_solution",
    "copy_prompt",
    "copy_reference",
    "refusal",
    "language_switch",
)
"""Every probe, in the order `farm probe` runs them; `farm.analysis.probes.PROBES` has exactly these keys."""
