"""Judge prompts: templates are data (`farm/prompts/*.txt`); this module only fills them in.

Every piece of policy output is fenced by markers carrying a random per-call tag, so a rollout
cannot close the fence and speak to the judge: it would have to guess the tag.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from string import Template
from typing import Any

from farm.config import Criterion

__all__ = [
    "LISTWISE_TOOL",
    "PREFERENCE_TOOL",
    "REFERENCE_LABEL",
    "RUBRIC_TOOL",
    "Prompt",
    "clip",
    "listwise_prompt",
    "listwise_schema",
    "new_tag",
    "preference_prompt",
    "preference_schema",
    "rubric_prompt",
    "rubric_schema",
    "shared_tag",
]

RUBRIC_TOOL = "record_rubric_grades"
PREFERENCE_TOOL = "record_preference"
LISTWISE_TOOL = "record_ranking"
REFERENCE_LABEL = "R"
"""The reference's label in a listwise ranking: the judge places it among the responses (the anchor)."""


@dataclass(frozen=True)
class Prompt:
    system: str
    user: str
    truncated: bool
    prefix: str = ""
    """The start of the user turn that every call about the same question shares (question,
    reference): sent before `user`, with a prompt-cache point after it when system + prefix is
    long enough (`ConverseRequest.user_prefix`)."""


@cache
def _template(name: str) -> Template:
    return Template(resources.files("farm.prompts").joinpath(f"{name}.txt").read_text(encoding="utf-8"))


def new_tag() -> str:
    return secrets.token_hex(6)


_TAG_KEY = secrets.token_bytes(16)
"""Per-process secret behind `shared_tag`: a rollout cannot compute the tag of its own prompt."""


def shared_tag(*parts: str) -> str:
    """A fence tag that is the same for every call about the same `parts` in this process
    (so their common prefix can be cached) and unguessable without the process secret."""
    digest = hmac.new(_TAG_KEY, "\x00".join(parts).encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
    return digest[:12]


def clip(text: str, limit: int) -> tuple[str, bool]:
    """Keep the head and the tail of an over-long text; the answer usually sits at the end."""
    if len(text) <= limit:
        return text, False
    head = limit * 2 // 3
    tail = limit - head
    omitted = len(text) - head - tail
    return f"{text[:head]}\n[... {omitted} characters omitted ...]\n{text[-tail:]}", True


def _fenceproof(text: str, tag: str) -> str:
    """A tag collision is astronomically unlikely; if the text contains the tag anyway, break it."""
    return text.replace(tag, tag[:3] + "\u200b" + tag[3:]) if tag in text else text


def _reference_block(reference: str | None, tag: str, max_chars: int) -> tuple[str, bool]:
    if reference is None:
        return "", False
    reference, cut = clip(reference, max_chars)
    return _template("reference_block").substitute(tag=tag, reference=_fenceproof(reference, tag)), cut


def rubric_prompt(
    *,
    task: str,
    prompt: str,
    response: str,
    reference: str | None,
    criteria: Sequence[Criterion],
    max_chars: int,
    structured: bool,
    tag: str | None = None,
) -> Prompt:
    response, cut_response = clip(response, max_chars)
    prompt, cut_prompt = clip(prompt, max_chars)
    # One tag for every response to this question, so the shared prefix is byte-identical and
    # cacheable; it is keyed by a process secret, so the policy still cannot guess it.
    tag = tag or shared_tag(task, prompt, reference or "")
    reference_block, cut_reference = _reference_block(reference, tag, max_chars)
    lines = [f"- {c.name} [{'1-5' if c.scale == 'likert5' else 'yes/no'}] (weight {c.weight:g}): {c.description}" for c in criteria]
    if structured:
        instruction = f"Record your grades with the `{RUBRIC_TOOL}` tool."
    else:
        example = {c.name: {"rationale": "...", "score": 4 if c.scale == "likert5" else True} for c in criteria}
        instruction = "Answer with one JSON object and nothing else, shaped like:\n" + json.dumps(example)
    # Three layers, from most to least shared, so each can end a cached prefix: the judge's rules
    # (system: instructions, task, criteria), the question (task and reference), the response.
    rules = _template("rubric_rules").substitute(task=task, criteria="\n".join(lines))
    question = _template("rubric_question").substitute(tag=tag, prompt=_fenceproof(prompt, tag), reference_block=reference_block)
    # The response gets a fresh tag per call: a parse retry is a different request, not a repeat.
    response_tag = new_tag()
    fenced = _fenceproof(_fenceproof(response, tag), response_tag)
    user = _template("rubric_response").substitute(tag=response_tag, response=fenced, answer_instruction=instruction)
    return Prompt(
        system=_template("rubric_system").template.strip() + "\n\n" + rules.strip(),
        user=user,
        truncated=cut_response or cut_prompt or cut_reference,
        prefix=question,
    )


def rubric_schema(criteria: Sequence[Criterion]) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    for c in criteria:
        score: dict[str, Any] = {"type": "integer", "minimum": 1, "maximum": 5} if c.scale == "likert5" else {"type": "boolean"}
        properties[c.name] = {
            "type": "object",
            "description": c.description,
            "properties": {"rationale": {"type": "string"}, "score": score},
            "required": ["rationale", "score"],
        }
    return {"type": "object", "properties": properties, "required": [c.name for c in criteria]}


def _shared_question(
    name: str, criteria: str, prompt: str, reference: str | None, max_chars: int, tag: str | None
) -> tuple[str, str, bool]:
    """(prefix, tag, truncated): the start of a preference prompt that every call about the same
    prompt and reference shares (instructions, task, reference), fenced by one `shared_tag` so it
    is byte-identical across calls (cacheable) yet unguessable by the policy."""
    prompt, cut_p = clip(prompt, max_chars)
    tag = tag or shared_tag(name, criteria, prompt, reference or "")
    reference_block, cut_r = _reference_block(reference, tag, max_chars)
    prefix = _template(f"{name}_question").substitute(
        criteria=criteria, tag=tag, prompt=_fenceproof(prompt, tag), reference_block=reference_block
    )
    return prefix, tag, cut_p or cut_r


def preference_prompt(
    *,
    criteria: str,
    prompt: str,
    response_a: str,
    response_b: str,
    max_chars: int,
    structured: bool,
    reference: str | None = None,
    tag: str | None = None,
) -> Prompt:
    """Two layers: the shared question (`prefix`: instructions, task, reference; cacheable across
    every pair and order about it) and the two responses in this call's order (`user`, under a
    fresh tag per call). `prefix + user` reads exactly as the single-block prompt did; `tag` pins
    both tags (tests)."""
    prefix, shared, cut_q = _shared_question("preference", criteria, prompt, reference, max_chars, tag)
    response_a, cut_a = clip(response_a, max_chars)
    response_b, cut_b = clip(response_b, max_chars)
    if structured:
        instruction = f"Record your decision with the `{PREFERENCE_TOOL}` tool."
    else:
        instruction = 'Answer with one JSON object and nothing else: {"rationale": "...", "winner": "A" | "B" | "tie"}'
    fresh = tag or new_tag()
    user = _template("preference_responses").substitute(
        tag=fresh,
        response_a=_fenceproof(_fenceproof(response_a, shared), fresh),
        response_b=_fenceproof(_fenceproof(response_b, shared), fresh),
        answer_instruction=instruction,
    )
    return Prompt(system=_template("preference_system").template.strip(), user=user, truncated=cut_q or cut_a or cut_b, prefix=prefix)


def preference_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "rationale": {"type": "string"},
            "winner": {"type": "string", "enum": ["A", "B", "tie"]},
        },
        "required": ["rationale", "winner"],
    }


def listwise_prompt(
    *,
    criteria: str,
    prompt: str,
    responses: Sequence[str],
    max_chars: int,
    structured: bool,
    reference: str | None = None,
    rank_reference: bool = True,
    tag: str | None = None,
) -> Prompt:
    """One prompt that asks for a ranking of every response (labels 1..n, in the order given);
    with a reference (and `rank_reference`), the judge also places `R` (the reference) in the
    ranking: the anchor that tells how good the group is, not only how its members compare.
    Layered like `preference_prompt`: the shared question in `prefix`, this call's order of the
    responses in `user`."""
    prefix, shared, truncated = _shared_question("listwise", criteria, prompt, reference, max_chars, tag)
    fresh = tag or new_tag()
    blocks = []
    for number, response in enumerate(responses, start=1):
        response, cut = clip(response, max_chars)
        truncated = truncated or cut
        fenced = _fenceproof(_fenceproof(response, shared), fresh)
        blocks.append(f"## Response {number}\n<<<BEGIN RESPONSE_{number} {fresh}>>>\n{fenced}\n<<<END RESPONSE_{number} {fresh}>>>")
    ranked = reference is not None and rank_reference
    labels = [str(n) for n in range(1, len(responses) + 1)] + ([REFERENCE_LABEL] if ranked else [])
    anchor = ""
    if ranked:
        anchor = f' Place "{REFERENCE_LABEL}" (the reference answer) in the ranking too; a response as good as the reference goes above it.'
    if structured:
        instruction = f"Record your ranking with the `{LISTWISE_TOOL}` tool."
    else:
        instruction = 'Answer with one JSON object and nothing else: {"rationale": "...", "ranking": ["2", "1", ...]}'
    user = _template("listwise_responses").substitute(
        responses="\n\n".join(blocks),
        labels=", ".join(labels),
        anchor_instruction=anchor,
        answer_instruction=instruction,
    )
    return Prompt(system=_template("listwise_system").template.strip(), user=user, truncated=truncated, prefix=prefix)


def listwise_schema(labels: Sequence[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "rationale": {"type": "string"},
            "ranking": {
                "type": "array",
                "items": {"type": "string", "enum": list(labels)},
                "minItems": len(labels),
                "maxItems": len(labels),
            },
        },
        "required": ["rationale", "ranking"],
    }
