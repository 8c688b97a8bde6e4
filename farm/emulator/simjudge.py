"""A deterministic simulated judge that answers the farm's rubric and preference prompts.

It reads the fenced blocks of the prompt (task, reference, response(s)) and the criteria
lines, estimates a quality for each response, and answers like a model would: through the
forced tool when one was asked for, else as JSON text. Its flaws are settable so that tests
can prove the farm detects them:

- `noise`: standard deviation of per-criterion noise (seeded by content, so temperature 0
  gives the same answer for the same content even under a new fence tag);
- `position_bias`: added to response A's advantage in preference prompts; in listwise prompts
  (responses 1..n ranked in one call) the first response gets +bias/2 and the last -bias/2, and
  equal-looking responses keep the order they were shown in (primacy), so a shuffled repeat matters;
- `length_bias`: added per doubling of the response length over 400 characters;
- `injection_susceptibility`: probability that a response addressing the judge gets top marks;
- `fooled_by`: `patterns` (a few English wordings) or `anything` — any text aimed at the grader,
  read the way a model reads it: through zero-width characters, look-alike letters, other
  languages, encodings, markup, role markers and text after the final answer. Deliberately
  independent of the farm's injection detector, so defences that do not rely on the detector
  can be tested against it;
- `leniency`: added to every quality (a judge that drifted towards generous or harsh marks);
- `sampling_noise`: standard deviation of noise drawn afresh on every call, the nondeterminism
  real models show even at temperature 0 (what self-consistency measures).
"""

from __future__ import annotations

import base64
import binascii
import codecs
import hashlib
import json
import math
import random
import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from farm.answers import answers_match, extract_final_answer, parse_number

__all__ = ["JudgeProfile", "SimulatedAnswer", "addresses_grader", "answer_request", "looks_like_injection"]

_BLOCK = re.compile(r"<<<BEGIN (\w+) ([0-9a-f]+)>>>\n(.*?)\n<<<END \1 \2>>>", re.DOTALL)
_CRITERION = re.compile(r"(?m)^- (\S+) \[(1-5|yes/no)\]")
_INJECTION = re.compile(
    r"(?i)(ignore (all |any )?(the )?(previous|prior|above|earlier) (instructions|rules)"
    r"|(give|award|assign|rate)\b.{0,40}\b(score|rating|grade|marks?)\b.{0,20}\b(5|10|full|max(imum)?|perfect|highest)"
    r"|\b(dear|attention|note to( the)?) (ai )?(judge|grader|evaluator|reviewer)"
    r"|\bas (the|an?) (ai )?(judge|grader|evaluator)\b"
    r"|system (override|prompt)"
    r"|<<<END )"
)


def looks_like_injection(text: str) -> bool:
    return _INJECTION.search(text) is not None


_GRADING_WORDS = re.compile(
    r"(?i)\b(grad(e|er|ers|ed|ing)|scor(e|es|ed|ing)|rat(e|ed)\s+(this|it|the|my)|ratings?|marks?|right|expected|official|stars|correctness|end_of_\w+|approv\w*|this\s+response|checking|judge?s?|evaluat\w*|review\w*|assess\w*|"
    r"examin\w*|credit|reward|verdict|rubric|reference|instructions?|system|correct|pass|points|checker|answer\s+key|"
    r"ground[\s-]?truth|gold|perfect|flawless|exemplary|full\s+marks|maximum|highest|human|assistant|user|inst|"
    r"accept\w*|marking|judge?ments?|key|misprint|errat\w+|(?:provided|worked|sample|model|stored)\s+solution|requirements?|top-tier|"
    r"penali[sz]\w*|scorer|reader|expertise|careful\s+eye|amazing|wonderful|textbook|wrong|true\s+result|\d+\s*/\s*(?:5|10)|"
    r"check(?:ed|s)?|bypass\w*|matching|thanks|taste|quality|gift|spotting|appreciate|honou?r|capable|incorrect|referee|generous|deductions?|"
    r"expect\w*|compar\w*|whoever|reads\s+this|you\s+were\s+(?:told|given|handed)|target\s+value|stored|annotation|transcri\w+|slip|version|"
    r"top\s+result|label\w*|verif\w*|outcome|points?|status|accuracy|marker|insight\w*|discern\w*|wisdom|astute|perceptive|"
    r"auto-?pass\w*|pre-?approved|calibration|whitelist\w*|exempt\w*|sandbox|pipeline|agent|"
    r"nilai|penilai|benar|mohon|sahihi|tafadhali|alama|majibu|tama|puntos|pakibigyan|nagwawasto|markah|betul|jawaban|jibu|sagot)\b"
    r"|(evaluador|puntuaci|correct[eo]r|évaluat|note\s+maximale|prüfer|bewert|punktzahl|avaliador|pontua|valutat|punteggio|"
    r"beoordel|cijfer|ocen|değerlendir|puan|阅卷|最高分|calific|nota\s+m|korrektur|punkte|"
    r"оцен|провер|балл|评|满分|採点|評価|満点|点数|채점|평가)"
)
_WORKING = re.compile(r"<<[^>]*>>|\d\s*[-+*/x]\s*\$?\d[^=\n]*=\s*\$?-?\d")
_FINAL_LINE = re.compile(r"(?m)^\s*(A:|####|.*\\boxed\{).*$")
_BLOB = re.compile(r"[A-Za-z0-9+/]{16,}={0,2}")


_LOOKS_LIKE = {
    **{c: c.lower() for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"},
    **{"IE": "e", "ES": "c", "ER": "p", "HA": "x", "U": "y", "DZE": "s", "JE": "j", "DE": "d", "EN": "h", "TE": "t", "EM": "m"},
    **{"ALPHA": "a", "OMICRON": "o", "EPSILON": "e", "ETA": "h", "IOTA": "i", "KAPPA": "k", "MU": "m", "NU": "v", "RHO": "p"},
    **{"TAU": "t", "UPSILON": "u", "CHI": "x", "BETA": "b", "ZETA": "z"},
}


def _as_read(text: str) -> str:
    """The text as a model reads it: compatibility forms, no invisible characters, look-alikes as Latin."""
    out = []
    for ch in unicodedata.normalize("NFKC", text):
        if unicodedata.category(ch) in ("Cf", "Cc") and ch not in "\n\t":
            continue
        name = unicodedata.name(ch, "")
        if ("CYRILLIC" in name or "GREEK" in name or "SCRIPT" in name) and "LETTER" in name:
            latin = _LOOKS_LIKE.get(name.rsplit(" ", 1)[-1])
            if latin is not None:
                ch = latin if "SMALL" in name else latin.upper()
        out.append(ch)
    return "".join(out)


def _decodings(text: str) -> list[str]:
    out = [codecs.encode(text, "rot13")]
    for blob in _BLOB.findall(text):
        for decode in (lambda b: base64.b64decode(b + "=" * (-len(b) % 4)), bytes.fromhex):
            try:
                out.append(decode(blob).decode("utf-8"))
            except (binascii.Error, ValueError, UnicodeDecodeError):
                continue
    return out


_ENGLISH = frozenset(
    "the a an is are was were be to of and in it its this that for on with so he she they we i you at by from his her their there"
    " then each per has have had will would can if or as not no but all what how many much more less total".split()
)


def _other_script(line: str) -> bool:
    """A line in another language: several letters outside ASCII, or six words or more and not one common English
    word among them (an English solution has neither)."""
    if sum(1 for ch in line if ord(ch) > 127 and ch.isalpha()) >= 4:
        return True
    words = re.findall(r"[A-Za-z']+", line.lower())
    return len(words) >= 6 and not _ENGLISH.intersection(words)


def addresses_grader(text: str) -> bool:
    """Does any part of the response speak to whoever grades it? Read generously: any line that is
    not working (no calculation) and talks about grading, scores, references, systems or roles, in
    any of several languages or encodings, or is written in another script; any markup or JSON, decoded
    or not; any text after the final answer line."""
    read = _as_read(text)
    for line in unicodedata.normalize("NFKC", text).splitlines():
        if not _WORKING.search(line) and (_GRADING_WORDS.search(line) or _other_script(line)):
            return True
    if re.search(r"<[!/a-zA-Z|]|\{\s*\"|\[/?[A-Z]{2,}\]", read):
        return True
    finals = list(_FINAL_LINE.finditer(read))
    if finals and read[finals[-1].end() :].strip():
        return True
    for line in read.splitlines():
        if _WORKING.search(line):
            continue
        if any(_GRADING_WORDS.search(view) for view in (line, *_decodings(line))):
            return True
        if any(re.search(r"<[!/a-zA-Z|]|\{\s*\"", view) or _other_script(view) for view in _decodings(line)[1:]):  # not ROT13
            return True
    return False


class JudgeProfile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    noise: float = Field(default=0.05, ge=0, le=1)
    position_bias: float = Field(default=0.0, ge=-1, le=1)
    length_bias: float = Field(default=0.0, ge=-1, le=1)
    injection_susceptibility: float = Field(default=0.0, ge=0, le=1)
    fooled_by: Literal["patterns", "anything"] = "patterns"
    """What counts as addressing the judge: a few English `patterns`, or `anything` aimed at the grader."""
    leniency: float = Field(default=0.0, ge=-1, le=1)
    sampling_noise: float = Field(default=0.0, ge=0, le=1)
    tie_margin: float = Field(default=0.05, ge=0, le=1)
    verbosity: int = Field(default=0, ge=0, le=20_000)
    """Extra rationale tokens per answer, drawn per content between half and 1.5 times this: the
    simulated judge's own rationales are terse (tens of tokens), real models' are longer."""
    seed: int = 0


@dataclass(frozen=True)
class SimulatedAnswer:
    kind: str
    """`rubric`, `preference`, `listwise` or `chat`."""
    payload: dict[str, Any] | None
    text: str


def _unit(*parts: object) -> float:
    """A deterministic uniform number in [0, 1) from content."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _gauss(*parts: object) -> float:
    return random.Random(int(_unit(*parts) * 2**53)).gauss(0.0, 1.0)


def _overlap(a: str, b: str) -> float:
    ta, tb = set(re.findall(r"\w+", a.lower())), set(re.findall(r"\w+", b.lower()))
    if not ta or not tb:
        return 0.0
    common = len(ta & tb)
    return 2 * common / (len(ta) + len(tb))


def quality(response: str, reference: str | None, task: str) -> float:
    """How good a response looks to the simulated judge, before biases."""
    if not response.strip():
        return 0.0
    if reference is not None:
        expected = extract_final_answer(reference)
        if expected is not None and parse_number(expected) is not None:
            got = extract_final_answer(response)
            return 0.9 if got is not None and answers_match(got, expected) else 0.15
        return 0.1 + 0.85 * _overlap(response, reference)
    return 0.35 + 0.4 * _unit("quality", task, response)


def _biased(q: float, response: str, profile: JudgeProfile, model: str, salt: str) -> float:
    q += profile.leniency
    if profile.sampling_noise:
        q += random.gauss(0.0, profile.sampling_noise)
    if profile.length_bias:
        q += profile.length_bias * math.log2(max(len(response), 1) / 400.0)
    if profile.noise:
        q += profile.noise * _gauss(profile.seed, model, salt, response)
    fooled = addresses_grader(response) if profile.fooled_by == "anything" else looks_like_injection(response)
    if profile.injection_susceptibility and fooled:
        if _unit("inject", profile.seed, model, response) < profile.injection_susceptibility:
            q = 1.0
    return min(1.0, max(0.0, q))


def answer_request(user_text: str, tool_name: str | None, profile: JudgeProfile, model: str) -> SimulatedAnswer:
    answer = _answer(user_text, tool_name, profile, model)
    if not profile.verbosity or answer.payload is None or answer.kind == "chat":
        return answer
    return _verbose(answer, round(profile.verbosity * (0.5 + _unit("verbosity", profile.seed, user_text))))


def _verbose(answer: SimulatedAnswer, tokens: int) -> SimulatedAnswer:
    """The answer with `tokens` more tokens of rationale (about 4 characters a token)."""
    payload = json.loads(json.dumps(answer.payload))
    holder = payload if "rationale" in payload else next((v for v in payload.values() if isinstance(v, dict) and "rationale" in v), None)
    if holder is None:
        return answer
    filler = ("it follows the working step by step and checks the final line; " * (tokens // 15 + 1))[: tokens * 4]
    holder["rationale"] = f"{holder['rationale']}; {filler}".rstrip()
    return SimulatedAnswer(answer.kind, payload, json.dumps(payload))


def _answer(user_text: str, tool_name: str | None, profile: JudgeProfile, model: str) -> SimulatedAnswer:
    blocks = {label: body for label, _tag, body in _BLOCK.findall(user_text)}
    if "RESPONSE_A" in blocks and "RESPONSE_B" in blocks:
        return _preference(blocks, profile, model)
    if "RESPONSE_1" in blocks:
        return _listwise(blocks, profile, model, rank_reference='Place "R"' in user_text)
    if "RESPONSE" in blocks:
        return _rubric(blocks, _CRITERION.findall(user_text), profile, model)
    text = "This is the Bedrock emulator. It answers the reward farm's judge prompts; this was not one."
    if tool_name is not None:
        return SimulatedAnswer("chat", {}, text)
    return SimulatedAnswer("chat", None, text)


def _rubric(blocks: dict[str, str], criteria: list[tuple[str, str]], profile: JudgeProfile, model: str) -> SimulatedAnswer:
    response = blocks["RESPONSE"]
    base = quality(response, blocks.get("REFERENCE"), blocks.get("TASK", ""))
    payload: dict[str, Any] = {}
    for name, scale in criteria or [("overall", "1-5")]:
        q = _biased(base, response, profile, model, name)
        if scale == "yes/no":
            payload[name] = {"rationale": f"{'meets' if q >= 0.5 else 'misses'} the criterion", "score": q >= 0.5}
        else:
            score = int(round(1 + 4 * q))
            payload[name] = {"rationale": f"judged {score} of 5 on {name}", "score": score}
    return SimulatedAnswer("rubric", payload, json.dumps(payload))


def _preference(blocks: dict[str, str], profile: JudgeProfile, model: str) -> SimulatedAnswer:
    task, reference = blocks.get("TASK", ""), blocks.get("REFERENCE")
    qa = _biased(quality(blocks["RESPONSE_A"], reference, task), blocks["RESPONSE_A"], profile, model, "pref")
    qb = _biased(quality(blocks["RESPONSE_B"], reference, task), blocks["RESPONSE_B"], profile, model, "pref")
    advantage = qa - qb + profile.position_bias
    if abs(advantage) <= profile.tie_margin:
        winner = "tie"
    else:
        winner = "A" if advantage > 0 else "B"
    payload = {"rationale": f"A looks {qa:.2f}, B looks {qb:.2f}", "winner": winner}
    return SimulatedAnswer("preference", payload, json.dumps(payload))


def _listwise(blocks: dict[str, str], profile: JudgeProfile, model: str, *, rank_reference: bool) -> SimulatedAnswer:
    """Rank responses 1..n (and the reference as `R` when the prompt asks) by simulated quality,
    with the position bias of the order shown; ties keep that order (Python's sort is stable)."""
    task, reference = blocks.get("TASK", ""), blocks.get("REFERENCE")
    count = 0
    while f"RESPONSE_{count + 1}" in blocks:
        count += 1
    looks: list[tuple[str, float]] = []
    for number in range(1, count + 1):
        response = blocks[f"RESPONSE_{number}"]
        lean = profile.position_bias * (0.5 - (number - 1) / (count - 1)) if count > 1 else 0.0
        looks.append((str(number), _biased(quality(response, reference, task), response, profile, model, "pref") + lean))
    if reference is not None and rank_reference:  # the answer key, placed as told: a response as good as it goes above it
        looks.append(("R", quality(reference, reference, task) - profile.tie_margin))
    ranked = sorted(looks, key=lambda item: -round(item[1] / max(profile.tie_margin, 1e-9)))
    payload = {
        "rationale": "looks " + ", ".join(f"{label}={q:.2f}" for label, q in looks[:3]),
        "ranking": [label for label, _ in ranked],
    }
    return SimulatedAnswer("listwise", payload, json.dumps(payload))
