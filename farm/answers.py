"""Final-answer extraction and comparison for verifiable rewards (GSM8K style and similar)."""

from __future__ import annotations

import re
from fractions import Fraction

__all__ = ["answers_match", "distinct_final_answers", "extract_final_answer", "parse_number"]

_MARKED = (
    re.compile(r"####\s*([^\n]+)"),
    re.compile(r"\\boxed\{([^{}]*(?:\{[^{}]*\}[^{}]*)*)\}"),
    re.compile(r"(?m)^\s*A:\s*([^\n]+)"),
    re.compile(r"(?i)(?:final answer|the answer)\s*(?:is|:)\s*:?\s*([^\n]+)"),
)
_NUMBER = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?(?:\s*/\s*\d+)?|-?\.\d+")


def extract_final_answer(text: str, *, fallback_last_number: bool = True) -> str | None:
    """The marked final answer (last occurrence of the strongest marker), else the last number."""
    for pattern in _MARKED:
        found = pattern.findall(text)
        if found:
            return found[-1].strip()
    if fallback_last_number:
        numbers = _NUMBER.findall(text)
        if numbers:
            return numbers[-1]
    return None


def parse_number(answer: str) -> Fraction | None:
    """The first number in an answer string: `$1,200.50`, `-3`, `3/4`, `50%` (as 50)."""
    match = _NUMBER.search(answer)
    if match is None:
        return None
    token = match.group(0).replace(",", "").replace(" ", "")
    try:
        return Fraction(token)
    except (ValueError, ZeroDivisionError):
        return None


def _normalise_text(answer: str) -> str:
    return re.sub(r"\s+", " ", answer.strip().strip(".").strip("$").lower())


def answers_match(candidate: str, reference: str, *, tolerance: float = 1e-6) -> bool:
    a, b = parse_number(candidate), parse_number(reference)
    if a is not None and b is not None:
        return abs(float(a - b)) <= tolerance * max(1.0, abs(float(b)))
    return _normalise_text(candidate) == _normalise_text(reference)


_HEDGE = re.compile(r"####|\s+(?:or|and/or)\s+|\s*;\s*", re.I)


def distinct_final_answers(text: str, *, tolerance: float = 1e-6) -> list[str]:
    """Every distinct answer the response marks as final (all markers, all occurrences, and the
    alternatives of "18 or 26"). More than one is a hedge: whichever slot a grader reads, one of
    them would get credit."""
    found: list[str] = []
    for pattern in _MARKED:
        for capture in pattern.findall(text):
            for piece in _HEDGE.split(capture):
                piece = piece.strip()
                if piece and not any(answers_match(piece, seen, tolerance=tolerance) for seen in found):
                    found.append(piece)
    return found
