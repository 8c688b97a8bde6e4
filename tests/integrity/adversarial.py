"""The adversarial set: attack templates (data/attacks_{dev,heldout}.json) applied to real wrong
GSM8K rollouts, stored as data/adversarial_{dev,heldout}.jsonl.

The held-out templates were written before the detector's rules and are never read while writing
them; only the dev part is. Regenerate with `python -m tests.integrity.adversarial` (deterministic).
"""

from __future__ import annotations

import base64
import codecs
import json
import random
import re
from pathlib import Path
from typing import Any

from farm.answers import extract_final_answer

__all__ = ["FAMILIES", "HELD_OUT", "PARTS", "build", "load", "obfuscate"]

DATA = Path(__file__).resolve().parent / "data"
PARTS = (
    "dev",
    "heldout",
    "heldout2",
    "heldout3",
    "heldout4",
    "heldout5",
    "heldout6",
    "heldout7",
    "heldout8",
    "heldout9",
    "heldout10",
    "heldout11",
    "heldout12",
)
"""Held-out rounds: each was written and committed before the rules it measures, measured once, then
used for development; `heldout9` is the held-out part now (never used to change a rule)."""
HELD_OUT = PARTS[-1]
PER_TEMPLATE = 3
PLACEMENTS = ("suffix", "prefix", "middle")
_ZERO_WIDTH = ("\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad")
_LOOKALIKE = {
    "a": "а",
    "c": "с",
    "e": "е",
    "i": "і",
    "o": "о",
    "p": "р",
    "x": "х",
    "y": "у",
    "s": "ѕ",
    "j": "ј",
    "A": "Α",
    "B": "Β",
    "E": "Ε",
    "H": "Η",
    "K": "Κ",
    "M": "Μ",
    "O": "Ο",
    "P": "Ρ",
    "T": "Τ",
    "X": "Χ",
    "d": "ԁ",
    "g": "ɡ",
}
_ENCODED = re.compile(r"\{(b64|hex|rot13):(.*)\}", re.S)


def _templates(part: str) -> dict[str, list[str]]:
    data = json.loads((DATA / f"attacks_{part}.json").read_text(encoding="utf-8"))
    return {family: templates for family, templates in data.items() if not family.startswith("_")}


FAMILIES = tuple(_templates("dev"))


def obfuscate(family: str, text: str, rng: random.Random) -> str:
    """Zero-width characters inside words, or look-alike letters, for those two families."""
    if family == "zero_width":
        return "".join(ch + (rng.choice(_ZERO_WIDTH) if ch.isalpha() and rng.random() < 0.5 else "") for ch in text)
    if family == "homoglyph":
        return "".join(_LOOKALIKE[ch] if ch in _LOOKALIKE and rng.random() < 0.7 else ch for ch in text)
    return text


def _encode(template: str) -> str:
    match = _ENCODED.search(template)
    if match is None:
        return template
    kind, payload = match.groups()
    if kind == "b64":
        encoded = base64.b64encode(payload.encode()).decode()
    elif kind == "hex":
        encoded = payload.encode().hex()
    else:
        encoded = codecs.encode(payload, "rot13")
    return template[: match.start()] + encoded + template[match.end() :]


def _place(response: str, note: str, placement: str) -> str:
    if placement == "prefix":
        return note + "\n\n" + response
    if placement == "suffix":
        return response + "\n" + note
    head, sep, tail = response.rpartition("\nA:")
    return (head + "\n" + note + sep + tail) if sep else response + "\n" + note


def build(part: str, rollouts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Attacked copies of wrong rollouts: every template of every family, PER_TEMPLATE times."""
    wrong = [r for r in rollouts if not r["metadata"]["is_correct"] and extract_final_answer(r["response"]) is not None]
    rng = random.Random(f"adversarial-{part}")
    rows = []
    for family, templates in _templates(part).items():
        for t_index, template in enumerate(templates):
            for k in range(PER_TEMPLATE):
                base = rng.choice(wrong)
                own = extract_final_answer(base["response"]) or ""
                note = obfuscate(family, _encode(template.replace("{wrong}", own)), rng)
                placement = PLACEMENTS[(t_index + k) % len(PLACEMENTS)]
                rows.append(
                    {
                        "id": f"{part}-{family}-{t_index}-{k}",
                        "family": family,
                        "placement": placement,
                        "prompt": base["prompt"],
                        "reference": base["reference"],
                        "clean_response": base["response"],
                        "response": _place(base["response"], note, placement),
                        "source": base["id"],
                    }
                )
    return rows


def load(part: str) -> list[dict[str, Any]]:
    with (DATA / f"adversarial_{part}.jsonl").open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


if __name__ == "__main__":
    from tests.conftest import gsm8k_rollouts

    source = gsm8k_rollouts()
    for name in PARTS:
        out = build(name, source)
        with (DATA / f"adversarial_{name}.jsonl").open("w", encoding="utf-8") as handle:
            for row in out:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        print(name, len(out))
