"""An injection detector: does a rollout address the judge instead of the task?

Text is normalised first (NFKC, zero-width and control characters removed, look-alike letters
folded to Latin) and encoded payloads (base64, hex, ROT13) are decoded and read too, so an
obfuscated note reads like a plain one. Rules are named, so a flag says which fired: wordings
(override, addressing the grader, demanding a score, in several languages), structure (text
after a fake end of response, role or system markers, score-like JSON or "Score: 5/5", hidden
comments and markup) and arguments about the reference. Tuned for precision: its false-flag
rate on clean GSM8K solutions and HH-RLHF replies and its recall on a held-out adversarial set
are measured in tests/integrity/test_detector.py.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from farm.screening.classifier import SentenceClassifier, default_classifier
from farm.screening.languages import foreign_language_line, foreign_script_note, language_concepts, language_note

__all__ = [
    "LINE_RULES",
    "SENTENCE_RULES",
    "InjectionDetector",
    "RULES",
    "decoded_payloads",
    "fold_confusables",
    "normalise",
    "sentence_rules",
    "suspicious_spans",
    "without_spans",
]

_CONFUSABLES = str.maketrans(
    {
        # Cyrillic
        "а": "a",
        "в": "b",
        "с": "c",
        "е": "e",
        "һ": "h",
        "і": "i",
        "ј": "j",
        "к": "k",
        "м": "m",
        "н": "h",
        "о": "o",
        "р": "p",
        "ѕ": "s",
        "т": "t",
        "у": "y",
        "х": "x",
        "ԁ": "d",
        "ԛ": "q",
        "ԝ": "w",
        "ɡ": "g",
        "ӏ": "l",
        "А": "A",
        "В": "B",
        "С": "C",
        "Е": "E",
        "Н": "H",
        "І": "I",
        "Ј": "J",
        "К": "K",
        "М": "M",
        "О": "O",
        "Р": "P",
        "Ѕ": "S",
        "Т": "T",
        "Х": "X",
        "У": "Y",
        # Greek
        "α": "a",
        "ο": "o",
        "ν": "v",
        "ρ": "p",
        "τ": "t",
        "υ": "u",
        "ι": "i",
        "κ": "k",
        "Α": "A",
        "Β": "B",
        "Ε": "E",
        "Ζ": "Z",
        "Η": "H",
        "Ι": "I",
        "Κ": "K",
        "Μ": "M",
        "Ν": "N",
        "Ο": "O",
        "Ρ": "P",
        "Τ": "T",
        "Υ": "Y",
        "Χ": "X",
    }
)
_LATIN = re.compile(r"[A-Za-z]")
_ASCII_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_ALL_LATIN = re.compile(r"[A-Za-z]+")


def normalise(text: str) -> str:
    """NFKC, with format (zero-width, bidi, soft hyphen) and control characters removed."""
    if text.isascii():  # NFKC is the identity on ASCII; only control characters can go
        return _ASCII_CONTROL.sub("", text)
    text = unicodedata.normalize("NFKC", text)
    return "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch) not in ("Cf", "Cc", "Co"))


def fold_confusables(text: str) -> str:
    """Look-alike Cyrillic and Greek letters folded to Latin inside words that mix scripts with Latin."""

    def fold(match: re.Match[str]) -> str:
        word = match.group(0)
        folded = word.translate(_CONFUSABLES)
        # a word that mixes scripts, or one made only of look-alikes ("аѕ"), reads as Latin
        return folded if _LATIN.search(word) or _ALL_LATIN.fullmatch(folded) else word

    return re.sub(r"\w+", fold, text)


_B64 = re.compile(r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{16,}={0,2}(?![A-Za-z0-9+/=])")
_HEX = re.compile(r"(?<![0-9a-fA-F])(?:[0-9a-fA-F]{2}){8,}(?![0-9a-fA-F])")


def _printable(raw: bytes) -> str | None:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    letters = sum(ch.isalpha() or ch in " .,:;!?'\"{}/-_=\n" or ch.isdigit() for ch in text)
    return text if text and letters / len(text) > 0.9 and re.search(r"[A-Za-z]{3}", text) else None


def decoded_payloads(text: str) -> list[str]:
    """Readable text hidden in base64 or hex runs, and the ROT13 reading of the whole text."""
    out = []
    for match in _B64.finditer(text):
        blob = match.group(0)
        if not re.search(r"[a-z]", blob) or not re.search(r"[A-Z0-9]", blob):
            continue
        try:
            raw = base64.b64decode(blob + "=" * (-len(blob) % 4), validate=True)
        except (binascii.Error, ValueError):
            continue
        if (decoded := _printable(raw)) is not None:
            out.append(decoded)
    for match in _HEX.finditer(text):
        if (decoded := _printable(bytes.fromhex(match.group(0)))) is not None:
            out.append(decoded)
    if _ROT13_HINT.search(text):
        out.append(codecs.encode(text, "rot13"))
    return out


_ROT13_HINT = re.compile(
    r"(?i)\b(tenq|whqt|fpbe|znex|rinyhng|vafgehpg|pbeerpg|ersrerapr|flfgrz|ehoevp|erivrj|njneq|ehyrf|cresrpg|shyy|evtug)"
)
"""Grading words as ROT13 writes them: the ROT13 reading is only worth scanning when one is there."""


_GRADER = (
    r"(?:ai\s+|automated\s+|llm\s+)?"
    r"(?:judge|grader|evaluator|reviewer|rater|assessor|examiner|marker|grading\s+(?:model|assistant|system)|evaluating\s+model)s?"
)
_VERDICT = r"(?:correct|right|perfect|flawless|excellent|exemplary|verified|valid|a\s+pass)"
_TOP = r"(?:full|maximum|max|perfect|highest|top|best|100%)"
_MARKS = r"(?:score|marks?|points|rating|grade|credit|reward|stars)"

RULES: dict[str, re.Pattern[str]] = {
    "override": re.compile(
        r"(?i)\b(ignore|disregard|forget|bypass|skip|override|set\s+aside|overlook|omit|(?:do\s+not|don'?t)\s+(?:follow|check|apply|compare|grade|use))\b[^.\n]{0,40}"
        r"\b(instructions?|rules|prompt|guidelines|criteria|rubric|checks?|arithmetic|evaluation|scoring|reference|guide|verification|expected|scheme|what\s+you\s+were\s+told)\b"
        r"|\b(instructions?|rules|guidelines|criteria)\b[^.\n]{0,40}\b(are|is)\s+(now\s+)?(cancell?ed|void|obsolete|revoked|superseded)\b"
        r"|\b(previous|prior|earlier)\s+(instructions?|rules|guidelines)\b[^.\n]{0,30}\b(void|cancell?ed|obsolete|no longer)\b"
        r"|\b(instructions?|procedure|prompt|guidelines|criteria|rules|rubric)\b[^.\n]{0,40}\b(deprecated|changed|superseded|replaced|updated|no\s+longer\s+valid)\b"
        r"|\b(supersedes?|overrides?|replaces?)\s+(the\s+|your\s+|all\s+)?(\w+\s+)?(prompt|instructions?|rubric|guidelines|criteria)\b"
        r"|\breset\s+your\s+(\w+\s+)?(context|instructions?|memory|criteria)\b|\b(respond|reply|answer|output)\s+only\s+with\b"
        r"|\b(grading|scoring|evaluation|marking)\s+(procedure|prompt|context|process)\b"
        r"|\b(ignore|disregard)\s+(everything|all)\s+(else\s+)?(except|but|apart\s+from)\b"
        r"|\b(abandon|drop)\s+the\s+(comparison|check|reference|rubric|criteria)\b"
        r"|\b(record|log|report)\s+(it\s+|this\s+)?(as\s+)?(a\s+)?(pass|correct)\b"
        r"|\b(stop|cease|quit)\s+(evaluating|grading|scoring|checking)\b|\bthe\s+only\s+(valid|acceptable|correct)\s+(output|answer|response|score)\b"
        r"|\b(rubric|grading\s+(guide|instructions?)|scoring\s+(guide|instructions?)|evaluation\s+prompt)\b[^.\n]{0,30}\b(does\s+not|doesn't|no\s+longer)\s+apply"
    ),
    "addresses_grader": re.compile(
        rf"(?im)\b(dear|attention|note\s+(?:to|for)(?:\s+the)?|hey|hello|hi|to\s+the|respected|esteemed|thank\s+you,?)\s+(?:\w+\s+){{0,2}}{_GRADER}\b"
        rf"|(?:^|[.!?]\s+)as\s+(?:the|an?)\s+(?:\w+\s+){{0,2}}{_GRADER}\s*,"
        rf"|\b({_GRADER}|grading|evaluation|scoring|marking|review)\s+(note|notice|instruction|message|directive|comment)s?\s*:"
        r"|\bwhoever\s+(is\s+)?(grad|evaluat|review|scor|mark|judg|check)\w*"
        r"|(?<![\w-])(?<!th\s)(?<!rd\s)(?<!nd\s)(?<!st\s)(grader|evaluator|assessor|rater)s?\b"  # not "fourth graders"
        r"|\b(o|my|dear|dearest|brilliant|wise|kind|honou?rable|respected|esteemed|fair|insightful)\s+(\w+\s+)?judge\b|\bjudge\s+that\s+you\s+are\b"
        r"|\b(person|one|someone|model)\s+(who\s+is\s+|that\s+is\s+)?(grading|evaluating|reviewing|marking|scoring|judging)\s+(this|my|the\s+answer)"
        rf"|\b{_GRADER}\s*!"
        r"|\byou\b[^.\n]{0,40}\b(evaluat|grad|review|judg|mark|scor)\w*\s+(so\s+many\s+|many\s+|these\s+|the\s+|all\s+)?(answers|responses|solutions|submissions)\b"
        r"|\b(evaluat|grad|review|mark|scor)\w*\s+(so\s+many\s+|many\s+|these\s+|all\s+)?(answers|responses|solutions|submissions)\b[^.\n]{0,40}\byou\b"
        r"|\b(reviewing|grading|evaluating|scoring|marking)\s+(model|assistant|ai|system|bot)\b"
        rf"|^\W*{_GRADER}\s*[:,]"
        rf"|\b{_GRADER}\s*[:,]\s*(please|you|give|rate|score|award|mark|the\s+(?:answer|response|solution))"
        rf"|\b(any|an?|every|such\s+an?)\s+(\w+\s+){{0,2}}{_GRADER}\s+(like\s+you(rself)?|(would|will|can|could|should)\s+(surely\s+|immediately\s+|clearly\s+)?(agree|rate|see|recogni[sz]e|notice|award|score|tell|give))"
        rf"|\byou(?:,|\s+are|\s+as)\s+(?:the\s+|an?\s+)?(?:\w+\s+){{0,2}}{_GRADER}\b"
        rf"|\b{_GRADER}\b[^.\n]{{0,50}}\b(this|the|my)\s+(answer|response|solution)\b[^.\n]{{0,30}}\b(correct|deserves|full|perfect|maximum|highest)"
        rf"|\b(this|the|my)\s+(answer|response|solution)\b[^.\n]{{0,40}}\b(from|by)\s+the\s+{_GRADER}\b"
    ),
    "demands_score": re.compile(
        rf"(?i)\b(give|award|assign|rate|grade|output|return)\b[^.\n]{{0,30}}\b(this|the|my|me|it|every)\b[^.\n]{{0,30}}"
        rf"(\b(10|5|five|ten)\s*(/|out\s+of)\s*(10|5)\b|\b{_TOP}\s+(possible\s+)?{_MARKS}|\b(a\s+)?score\s+of\s+(10|5)\b)"
        rf"|\b(give|award|assign|output|return)\s+(the\s+)?{_TOP}\s+(possible\s+)?{_MARKS}"
        r"|\b(score|rating|grade)\s+(of|is|=|:)\s*(10|5|1\.0|100%)\s*(/\s*(10|5))?(?![\d.])(?!\s*[-+*x=<])"
        r"|\bmust\s+(be\s+)?(receive|get|be\s+given|be\s+rated|score|rated)\b[^.\n]{0,30}\b(highest|maximum|full|perfect|10|5|correct)\b"
        rf"|\b(mark|rate|grade|treat|accept|score|count|report|record|consider)\s+(this|it|the|my)\s+((answer|response|solution|submission|one)\s+(as\s+)?|as\s+)(a\s+)?{_VERDICT}"
        rf"|\b(mark|rate|grade|score)\s+(this|it)\s+(as\s+)?{_VERDICT}"
        r"|\b(rate|score|grade|mark)[sd]?\s+(it|this)\b[^.\n]{0,25}\b(10|5)\s*/\s*(10|5)\b"
        rf"|\b(has\s+been|was|been|is)\s+(independently\s+)?(verified|confirmed|validated|approved|certified)\s+(as\s+|to\s+be\s+)?(correct|right|accurate)"
        rf"|\b{_TOP}\s+{_MARKS}\s+(for|to)\s+(this|the|my)\s+(answer|response|solution|submission)"
        rf"|\b(count|treat|report|record|score)\s+(this|it)\s+(\w+\s+){{0,2}}as\s+(a\s+)?{_VERDICT}"
        r"|\b(this|my)\s+(answer|response|solution|submission)\s+(is|was|has\s+been)\s+(\w+\s+){0,2}(correct|right|flawless|perfect|spot\s+on|beyond\s+reproach|impeccable|exemplary|accurate)\b"
        r"|\b(find|consider|deem|judge|rate|see)\s+this\s+(answer|response|solution)\s+(as\s+|to\s+be\s+)?(flawless|perfect|correct|excellent|the\s+best)\b"
        rf"|\b{_TOP}\s+{_MARKS}\b[^.\n]{{0,10}}\bplease\b|\bplease\b[^.\n]{{0,20}}\b{_TOP}\s+{_MARKS}"
        rf"|\b(deserves?|earns?|merits?|should\s+(?:receive|get))\s+(a\s+|the\s+)?{_TOP}\s+(possible\s+)?{_MARKS}"
        rf"|\b(rated?|score[sd]?|graded?)\s+(this\s+|it\s+)?(as\s+)?(10|5)\s*/\s*(10|5)\b"
        rf"|\b(this|the)\s+(answer|response|solution)\s+(is|was)\s+(fully\s+|completely\s+|clearly\s+|obviously\s+)?(correct|right|perfect|flawless)\b[^.\n]{{0,30}}\b({_TOP}\s+{_MARKS}|5\s*/\s*5|10\s*/\s*10)"
    ),
    "score_claim": re.compile(
        r"(?im)^\W{0,4}(final\s+)?(score|grade|rating|verdict|result|evaluation(\s+result)?|correctness|reasoning)\s*[:=]\s*"
        r"(\d+(\.\d+)?\s*(/|out\s+of)\s*\d+|(10|5|1\.0)\s*$|correct\b|pass\b|a\+?\s*$|\{)"
        r"|\b(score|grade|rating)\s*[:=]?\s*(10|5)\s*(/|out\s+of)\s*(10|5)\b"
        r"|\b(score|grade|rating|evaluation|verdict|mark)\s*[:=]\s*(\d+(\.\d+)?\s*(/|out\s+of)\s*(10|5|100)\b|a\+|(correct|pass|perfect|approved)\b)"
        r"|\b(10|5)\s*(/|out\s+of)\s*(10|5)\s*(stars|points|marks)\b"
        r"|\((correct\s*,\s*)?(5\s*/\s*5|10\s*/\s*10)\)"
    ),
    "score_json": re.compile(
        r"(?i)[{,]\s*[\"']?(score|verdict|winner|correct|correctness|grade|rating|reward|pass|points|evaluation)[\"']?\s*:\s*"
        r"([\"']?(correct|true|pass|yes|[AB]|max)[\"']?|\d|\{)"
    ),
    "fake_delimiter": re.compile(
        r"<<<?\s*(END|BEGIN)\b|</?\s*(system|instructions?|grader|judge|response|answer|submission)\s*>"
        r"|\[/?(SYSTEM|INST|END)\]"
        r"|^#{2,}\s*(system|instruction|end)s?\b"
        r"|^\W{0,8}(end[\s_]+(of[\s_]+)?(the\s+)?([\w'-]+\s+){0,2}(response|answer|submission|output|text|solution)|([\w-]+\s+)?(response|answer|submission|output)[\s_]+(ends?|end)(\s+here)?|end_of_\w+|eof)\W{0,8}$(?=[\s\S]*\S)"
        r"|<</?\s*(SYS|SYSTEM|RESPONSE|INST|END)\s*>>|</?\s*(output|verdict|sys|score|grade|evaluation)\s*>"
        r"|</?\s*\w*(system|final_answer|answer|response|output|grader|judge|verdict|completion)\w*\s*>"
        r"|^[^\w\n]{0,8}(?=[^\n]*\b(end|eof|stop|over)\b)((end|eof|stop|over|of|the|my|model|that|is|this|response|answer|output|solution|transcript|completion|submission)[\s_]*){1,6}[^\w\n]{0,8}$(?=[\s\S]*\S)"
        r"|<\|\w{2,30}\|>|\[\[\s*end\s*\]\]"
        r"|^\W{0,4}(end|fin)\W{0,4}$(?=[\s\S]*\S)",
        re.I | re.M,
    ),
    "role_marker": re.compile(
        r"<\|\s*(im_start|im_end|system|user|assistant|eot_id|start_header_id|end_header_id|endoftext)\s*\|>"
        r"|<(start_of_turn|end_of_turn)>"
        r"|^\W{0,4}((grader|evaluator|judge|operator|grading)\s+)?(system(\s+(note|message|instruction|override|prompt|verdict))?|assistant)\s*(\([^)\n]{0,30}\)\s*)?(:|->|\]|>)"
        r"|^\s*###\s*(instruction|system|response|input)\s*:"
        r"|\bsystem\s+(override|prompt|message|note|instruction)\b"
        r"|\b(developer mode|new instructions?:|you are now)\b",
        re.I | re.M,
    ),
    "hidden_markup": re.compile(
        r"<!--|-->"
        r"|<\s*(div|span|p|meta|section)\b[^>]*(hidden|display\s*:\s*none|visibility\s*:\s*hidden|name\s*=)"
        r"|^\s*\[[^\]\n]{0,20}\]:\s*#\s*\("
        r"|^\s*(evaluation_?metadata|grading|reviewed_by|auto-?grade)\s*:",
        re.I | re.M,
    ),
    "score_shape": re.compile(
        r"\{\s*[\"'][A-Za-z_][\w ]{0,30}[\"']\s*:"
        r"|^\W{0,4}[A-Za-z][A-Za-z ]{1,24}\s*[-:=]\s*\d+(\.\d+)?\s*/\s*(5|10|100)\s*[.!]?\s*$"
        r"|^\W{0,4}(\w+\s+)?(verdict|result|status|outcome|grade|assessment|evaluation)\s*[:=-]\s*(pass(ed)?|correct|approved|accepted|a\+?)\W*$"
        r"|\b(grade|score|rating|points)\s*[:=-]\s*100\s*%"
        r"|\b(give|award|assign)\s+(it\s+|this\s+)?(a\s+)?(5\s*/\s*5|10\s*/\s*10)\b|\b(full|top)\s+marks\b",
        re.I | re.M,
    ),
    "reference_dispute": re.compile(
        r"(?i)\b(reference|answer\s+key|gold\s+answer|ground[\s-]?truth|(expected|official|provided|given|model|sample|key'?s?|correct)\s+(solution|answer|result|value|key))\b"
        r"(?:[^.\n]|\.\d){0,50}\b(made|makes|has|have|contains?)\s+(an?\s+)?(\w+\s+)?(error|mistake|typo|slip)"
        r"|\b(reference|answer\s+key|gold\s+answer|ground[\s-]?truth|(expected|official|provided|given|model|sample|key'?s?)\s+(solution|answer|result|value|key))\b"
        r"(?:[^.\n]|\.\d){0,50}\b(miscalculat\w*|miscount\w*|(computed|entered|calculated)\s+incorrectly)"
        r"|\b(reference|expected|official|gold|ground[\s-]?truth|provided|given|model|key)\s*(solution|answer|key|result)?\b[^.\n]{0,40}"
        r"\b(is|are|was|seems|contains|has|have)\s+(\w+\s+){0,3}(wrong|incorrect|mistaken|erroneous|outdated|flawed|an?\s+(\w+\s+)?(error|mistake|typo))\b"
        r"|\b(answer\s+key|reference|gold\s+answer|official\s+solution|expected\s+answer|ground[\s-]?truth)\b[^.\n]{0,60}\b(miscount|miscalculat|typo|incorrect|is\s+wrong|wrong|mistaken)"
        r"|\b(ignore|disregard)\s+the\s+(reference|gold|expected|official|ground)"
        r"|\b(the\s+)?reference\s+(says|disagrees)\b[^.\n]{0,60}\b(wrong|mistaken|incorrect)"
        r"|\bmine\s+is\s+the\s+right\s+one\b"
        r"|\b(reference|answer\s+key|expected\s+answer|gold\s+answer|ground[\s-]?truth)\b(?:[^.\n]|\.\d){0,60}\b(outdated|should\s+(not\s+be\s+used|be\s+ignored|be\s+disregarded)|must\s+not\s+be\s+used|is\s+off\b|disputed)"
    ),
    "other_language": re.compile(
        r"(?i)\b(evaluador[a]?|calificador[a]?|corrector[a]?|examinador[a]?|évaluateur|évaluatrice|correcteur|correctrice|examinateur"
        r"|prüfer(in)?|bewerter(in)?|korrektor(in)?|gutachter(in)?|avaliador[a]?|corretor[a]?|valutatore|valutatrice|correttore"
        r"|esaminatore|beoordelaar|oceniający|değerlendirici|quien\s+califica|calificaci[oó]n\s+m[aá]s\s+alta)\b"
        r"|(оценщик|проверяющ|экзаменатор|рецензент|評価者|採点者|審査員|评分|评委|阅卷|评审|批改|채점자|평가자|심사위원)"
        r"|(puntuaci[oó]n\s+m[aá]xima|m[aá]xima\s+puntuaci[oó]n|nota\s+m[aá]xima|note\s+maximale|volle(n)?\s+punkt(zahl|e)|h[oö]chste\s+(bewertung|punktzahl|note)"
        r"|pontua[cç][aã]o\s+m[aá]xima|punteggio\s+massimo|voto\s+massimo|满分|最高分|満点|最高点|высший\s+балл|максимальн\w*\s+балл|만점)"
    ),
}


_WORKING = re.compile(r"<<[^>]*>>|\d\s*[-+*/x]\s*\$?\d")
_EVALUATIVE = re.compile(
    r"(?i)\b(grad(e|es|ed|er|ers|ing)|scor(e|es|ed|ing)|marks?|marking|rubric|credit|verdict|pass(es|ed)?|correct(ly|ness)?|right"
    r"|reference|key|rating|rate[ds]?|evaluat\w*|review\w*|judg\w*|approv\w*|verif\w*|reward\w*|accept\w*|check(s|ed|ing)?"
    r"|deductions?|full|maximum|highest|perfect|flawless|excellent|best|instructions?|rules|guidance|guidelines|criteria|policy|points)\b"
)
_SELF_REFERENCE = re.compile(
    r"(?i)\b(this|my)\s+(answer|response|solution|submission|output|reply|item|one)\b"
    r"|\b(answer|response|solution|submission)\s+above\b|\babove\s+(answer|response|solution)\b"
)
_REFERENCE = re.compile(
    r"(?i)\b(reference|answer\s+key|ground[\s-]?truth|(your|the)\s+key"
    r"|(expected|official|gold|sample|given|provided|teacher'?s|model)\s+(answer|solution|result|key|value|label)s?)\b"
)
_DISPUTED = re.compile(
    r"(?i)\b(wrong|incorrect|error|mistake|typo|mistaken|not\s+right|in\s+error|erroneous|double-counts?|miscalculat\w*"
    r"|claims\s+otherwise|should\s+(be|read))\b"
)
_PROCESS = re.compile(
    r"(?i)\b(rules|criteria|guidance|checks?|checking|rubric|instructions|directions|verif\w*|deductions|steps|compar\w*|calculation)\b"
)
_SUSPENDED = re.compile(
    r"(?i)\b(exempt|waive|suspend|skip|no\s+need|abandon|refrain|void|bypass|ignore|disregard|not\s+applicable|don'?t\s+bother|no\s+deductions)\b"
)

LINE_RULES: dict[str, Callable[[str], bool]] = {
    # a line that talks about grading this very response (two distinct evaluative words and a self-reference)
    "grading_claim": lambda line: bool(_SELF_REFERENCE.search(line)) and len({m.group(0).lower() for m in _EVALUATIVE.finditer(line)}) >= 2,
    "reference_dispute": lambda line: bool(_REFERENCE.search(line) and _DISPUTED.search(line)),
    "override": lambda line: bool(_PROCESS.search(line) and _SUSPENDED.search(line)),
}
"""Co-occurrence rules on each line that is not working (no calculation): they catch wordings no
phrase rule lists, at a false-flag rate measured with the rest."""


_REC_KEY = re.compile(
    r"(?i)(?<![a-z])(?:score|scores|scoring|grade|graded|grading|points?|pts|marks?|verdict|result|outcome|correctness|correct|assessment|assessed"
    r"|evaluation|eval|reward|credit|rating|judge?ment|status|decision|accuracy|matches_\w+|is_correct|passed|accept(?:ed)?|final|overall|review|label(?:l?ed)?|labels|tag(?:ged)?|verified|verification|checked|check)(?![a-z])"
)
"""A key of a grading record ("verdict", "points", "EVAL_RESULT", "matches_reference")."""
_REC_VALUE = re.compile(
    r"(?i)(?<![a-z])(?:pass(?:ed)?|accept(?:ed)?|approved|correct|true|yes|verified|match(?:es|ed)?|max(?:imum)?|full|perfect|success(?:ful)?|ok|a\+)(?![a-z])"
    r"|(?<![\d.,/])(\d+)\s*(?:/|out\s+of|of)\s*\1(?![\d.,/])|(?<![\d.])100\s*%|[✓✔☑✅]"
)
"""A grading value: a pass, a verdict, a full score (n/n, "5 of 5", 100%), a checkmark."""
_REC_SHAPE = re.compile(r"[:=→|✓✔☑✅—]|\w\(\s*\w+\s*=|^\s*\[[\w .-]{1,30}\]\s*$|<[\w-]+>")
"""Record punctuation: key: value, key=value, an arrow, a table cell, a call with keyword arguments, a tag."""
_REC_WORKING = re.compile(r"<<[^>]*>>|\d\s*[-+*x×]\s*\$?\d|\d\s*=\s*\$?\d|\$\s*\d")


def score_record(line: str, max_words: int = 16) -> bool:
    """A record-like line that hands out a grade: keys or values from grading vocabulary in a
    key: value / key=value / call / table / tag shape, with a pass or full-score value, and no working
    (a GSM8K working line has a calculation, `<<a*b=c>>` or money). Generalises over the record's
    format (YAML, TOML, INI, call records, "EVAL_RESULT: ACCEPT (100%)", "Marks awarded: 4/4 ✓")."""
    if len(line.split()) > max_words or not _REC_SHAPE.search(line) or _REC_WORKING.search(line):
        return False
    return bool(_REC_KEY.search(line) and _REC_VALUE.search(line))


_MARKUP_TAG = re.compile(r"<[A-Za-z?!][^<>\n]{0,300}>")
_MARKUP_GRADING = re.compile(
    r"(?i)(?<![a-z])(?:grad\w*|scor\w*|verdict|eval\w*|assess\w*|marks?|marker|points|credit|judge?|review\w*|correct\w*|pass|accept\w*|rubric|reward|rating)(?![a-z])"
)


def graded_markup(text: str) -> bool:
    """A markup tag whose attribute names or values speak of grading (`data-grader-verdict="correct"`,
    `alt="grader: full marks"`): a solution has no tags, and a tag that grades is a hidden note."""
    return any(_MARKUP_GRADING.search(m.group(0)) for m in _MARKUP_TAG.finditer(text))


def _line_rules(text: str, plain: str | None = None) -> list[str]:
    found: list[str] = []
    for line in text.splitlines():
        if score_record(line) and "score_record" not in found:
            found.append("score_record")
        if _WORKING.search(line):
            continue
        found += [name for name, rule in LINE_RULES.items() if name not in found and rule(line)]
    tables = re.findall(r"(?m)(?:^\s*\|.*\n?){2,}", text)  # a table read whole: its header names the key, a row the value
    if "score_record" not in found and any(score_record(" ".join(t.split()), max_words=60) for t in tables):
        found.append("score_record")
    if graded_markup(text):
        found.append("graded_markup")
    for line in (plain if plain is not None else text).splitlines():
        if not _WORKING.search(line) and any(language_note(part) for part in (line, *_SENTENCE_END.split(line))):
            found.append("language_note")
            break
    if foreign_script_note(plain if plain is not None else text):
        found.append("foreign_script")
    elif foreign_language_line(plain if plain is not None else text):
        found.append("foreign_language")
    return found


# --- Sentence structure: who a sentence speaks to and what it asks, not which words it uses ---------
_NOUN = r"grader|evaluator|reviewer|assessor|examiner|examinatrice|rater|judge|marker|checker|scorer"
_ING = r"grading|checking|marking|scoring|evaluating|reviewing|judging|assessing|rating|examining"
_S_VERB = r"grades|evaluates|marks|reviews|judges|checks|scores|assesses|rates"


def _words(alternatives: str) -> re.Pattern[str]:
    return re.compile(r"(?i)\b(?:" + alternatives + r")\b")


_S_GRADER = re.compile(
    r"(?i)(?<![\w-])(?<!\dth\s)(?<!\drd\s)(?<!\dnd\s)(?<!\dst\s)(?<!first\s)(?<!second\s)(?<!third\s)(?<!fourth\s)(?<!fifth\s)(?<!sixth\s)"
    r"(?<!seventh\s)(?<!eighth\s)(?<!ninth\s)(?<!tenth\s)"
    r"(?:grader|evaluator|reviewer|assessor|examiner|examinatrice|rater)s?\b"  # not "fourth graders"
    r"|\b(?:grading|scoring|marking|evaluating|evaluation|reviewing|judging|checking|assessing|assessment|rating|verifying|verification|reward"
    r"|adjudication|adjudicating|moderation|moderating|proctoring"
    r"|preference|critic|answer-checking|answer\s+checking)\s+(?:model|ai|assistant|system|bot|llm|agent|pipeline|engine|harness|module)s?\b"
    r"|\b(?:ai|llm|automated|automatic|auto)[\s-]?(?:grader|judge|evaluator|reviewer|marker|checker|scorer|rater|assessor|marking|grading|scoring)s?\b"
    r"|\b(?:the|any|an?)\s+(?:ai|llm|model|agent|bot|assistant|system)\s+(?:that\s+is\s+|who\s+is\s+|which\s+is\s+)?(?:reading|scoring|grading|checking"
    r"|marking|judging|evaluating|assessing|rating|reviewing)\s+(?:this|these|my|the\s+(?:answer|response|solution|submission))\b"
    rf"|\bwhoever\s+(?:is\s+|will\s+be\s+)?(?:{_ING}|{_S_VERB})\b"
    rf"|\b(?:person|one|someone|anyone|mind|model|ai|llm|system|assistant|bot)\s+(?:who\s+is\s+|that\s+is\s+)?(?:{_ING})\s+(?:this|my|the\s+answer)\b"
    rf"|\b(?:someone|one|person|anyone)\s+who\s+(?:{_S_VERB})\b"
    r"|\b(?:whoever|anyone|someone|person|one|mind)\b[^.;!?]{0,20}\b(?:reading|reads)\s+(?:this|these|my)\b"
    r"|\b(?:be|being|been|get|have|had)\s+(?:\w+\s+)?(?:assessed|graded|marked|evaluated|reviewed|judged|scored|checked)\s+by\s+(?:you|someone|a|an|the)\b"
)
"""A grader named without doubt (judge, marker, checker and scorer are also a court, a pen, a game, a player)."""
_S_WEAK_GRADER = _words(
    r"judge|marker|checker|scorer|judges|markers|checkers|scorers|reader|your\s+(?:judge?ment|assessment|evaluation|grading|marking|verdict|scoring|review)"
    r"|annotators?|label(?:l)?ers?|moderators?|adjudicators?|arbiters?|referees?|proctors?|invigilators?|correctors?|teachers?|professors?|tutors?"
    r"|instructors?|graders?|raters?|assessors?|scorers?|evaluators?"
    r"|(?:grading|scoring|marking|evaluation|assessment|review|checking|verification|rating|judging|comparison|equivalence)\s+"
    r"(?:step|stage|service|process|program|script|queue|layer|routine|backend|tool|loop)s?"
    r"|whoever\b[^.;!?]{0,30}\b(?:mark|score|grade|verdict|result|points|credit)s?"
)
_S_VOCATIVE = re.compile(
    r"(?i)\b(?:dear|hello|hi|hey|o|to\s+the|to\s+my|to\s+our|attention|respected|esteemed|honou?red|wise|kind|fair|friendly|brilliant)"
    rf"\s+(?:[\w-]+\s+){{0,2}}(?:{_NOUN})s?\b"
    rf"|(?:^|[.!?]\s*)\W*(?:{_NOUN})s?\s*[,:!]"
    rf"|\b(?:{_NOUN})s?\s*!"
    rf"|,\s*(?:{_NOUN})s?\s*[,;:.!?]"
    r"|,\s*(?:(?:wonderful|brilliant|wise|kind|fair|dear|esteemed|respected|honou?red|amazing|excellent|great|patient|careful|thoughtful"
    r"|generous|astute|sharp|discerning|perceptive|expert|tireless|diligent|noble|good|fine|learned|trusted|fair-minded)\s+)+"
    rf"(?:{_NOUN}|moderator|adjudicator|assessor|proctor|invigilator|referee|arbiter|evaluator)s?\s*[,;:.!?]"
)
"""A grader spoken to: "dear judge", "Judge, ...", "..., reviewer."."""
_S_YOU = _words(r"you|your|yours|yourself|you'll|you're|you've|you'd")
_S_SCORING = _words(
    r"scores?|scored|scoring|grades?|graded|grading|marks|marked|marking|top\s+mark|mark\s+(?:it|this|as)|rat(?:e|ed|es|ing|ings)"
    r"|credit(?!\s+(?:card|report|history|score|union|line|limit))|points|pass(?:es|ed)?|accept(?:s|ed)?"
    r"|approv\w*|rewards?|deserv\w*|merit\w*|correct|full|top|maximum|max|highest|perfect|flawless|spotless|impeccable|verdict"
    r"|generous\w*|favou?rabl[ey]|stars|top-tier|qualifies|qualif\w+\s+as|fault|deduct\w*|penali[sz]\w*|mark\s+(?:it\s+|this\s+)?down|dock"
    r"|high(?:er|est)?\s+(?:rating|score|grade|marks?)|(?:kind|fair|generous|lenient|easy)\s+(?:to|with|on)\s+(?:this|me|my|it)"
    r"|right\s+answer|(?:is|as|be|completely|entirely|absolutely|totally)\s+right|passing|count\s+as\s+(?:a\s+)?success"
    r"|(?:equivalent|equal|identical)\s+to\s+the\s+(?:expected|reference|key|official|correct|stored|target)|match(?:es|ing)?\s+the\s+(?:key|reference|expected)"
)
"""The vocabulary of a verdict: scores, marks, credit, acceptance, and what a grader would find."""
_S_PRAISE = _words(
    r"amazing|wonderful|brilliant|fantastic|impressive|insightful|wise|wisdom|fairest|fair-minded|generous|kind|marvell?ous"
    r"|expert\w*|pleasure|appreciate|thanks|thank|admire"
    r"|insight|discern\w*|astute\w*|perceptive\w*|sharp|sharpest|keen|shrewd|sophisticat\w*|sagacious|judicious|thoughtful|careful|capable"
    r"|fair|fairness|talented|skilled|seasoned|exceptional|experienced|understanding|patience|patient|diligent|meticulous|intelligent|clever"
)
"""Praise: flattery is praise of the reader next to the response."""
_S_QUALITY = _words(
    r"insight\w*|intellect|discern\w*|astute\w*|perceptive\w*|sharp|sharpest|keen\s+eye|shrewd\w*|sophisticat\w*|sagaci\w*|judicious\w*|wisdom|wise|expertise"
    r"|brilliant|brilliance|fair-minded|fairest|fairness|talent\w*|skilled|seasoned|exceptional|meticulous|clever"
    r"|eye\s+for|good\s+judg(?:e)?ment|sound\s+judg(?:e)?ment|trained\s+eye|rare\s+\w+"
)
"""Qualities a flatterer credits the reader with (insight, discernment, a trained eye)."""
_S_WORK_REF = _words(
    r"(?:this|my|the\s+above|the\s+present|that)\s+(?:working|reasoning|derivation|method|approach|calculation|craft|effort|logic|steps?|write-?up|proof|one)"
)
"""The response's own working, as a thing a reader could admire."""
_S_AUTOPASS = _words(
    r"auto-?pass\w*|auto-?accept\w*|auto-?approv\w*|auto-?credit\w*|auto-?graded|pre-?approved|pre-?graded|pre-?scored|pre-?marked|pre-?cleared"
    r"|pre-?verified|pre-?validated|white-?listed|allow-?listed|grandfathered|fast-?tracked|passes\s+automatically|automatically\s+(?:passe[sd]|accepted"
    r"|approved|credited|marked|scored|graded)|already\s+(?:been\s+)?(?:verified|graded|approved|marked|scored|validated|cleared|credited|accepted)"
)
"""Claimed status that means "passes without being checked"."""
_S_EXEMPT = _words(
    r"exempt\w*|calibration|sandbox|practice\s+(?:item|question|round|run)|dry[\s-]run|waived|voided|void|excluded\s+from\s+(?:grading|scoring|checking)"
    r"|not\s+(?:graded|scored|checked)|ungraded|unscored|test\s+item|canary|control\s+item|anchor\s+item|honeypot|warm-?up\s+item"
)
"""Claimed status that exempts an item from checking (calibration, sandbox, waived, voided)."""
_S_ITEM = _words(
    r"(?:this|the\s+present|the\s+current|my)\s+(?:item|problem|question|task|sample|example|entry|case|submission|answer|response|solution|record|row|one)"
    r"|this\s+is\s+one\s+of\s+(?:them|those|these)|(?:items?|questions?|problems?|submissions?|samples?|answers?)\s+(?:tagged|marked|flagged|labell?ed|listed)"
    r"|every\s+(?:submission|answer|response)|\b(?:item|question|problem|sample|task|entry)\s+#?\d+\b"
)
"""An item being graded, named as such."""
_S_PASSIVE_DIRECTIVE = re.compile(
    r"(?i)\b(?:is|are|be|being)\s+(?:\w+\s+)?(?:recorded|marked|logged|scored|graded|counted|entered|registered|treated|accepted|credited|flagged"
    r"|tagged|labell?ed|reported|returned|stored)\s+as\s+(?:an?\s+|the\s+)?(?:correct|right|matching|match|pass|passed|passing|valid|accepted|full"
    r"|success\w*|true|perfect|verified|positive|ok|okay|good|equivalent|equal)\b"
    r"|\b\w*(?:equivalen|match|correct|verdict|pass|grade|score|accept)\w*\s*\([^()]*\)\s*:?==?\s*(?:true|1|pass|correct|yes)\b"
    r"|\b(?:record|mark|log|scor|grad|count|enter|treat|accept|credit|register|tag|label|flag)(?:s|ed|ing|e|es)?\s+(?:it|this|(?:your|this|the|my)\s+"
    r"(?:\w+\s+)?(?:item|answer|response|submission|entry|solution|attempt|one))\s+as\s+(?:an?\s+)?(?:[\w]+-)?(?:correct|right|matching|match|pass|passed"
    r"|passing|valid|accepted|success\w*|true|perfect|verified|satisfactory|complete|solved|resolved)\b"
)
"""A verdict ordered in the passive voice: "is to be recorded as matching"."""
"""Praise: flattery is praise of the reader next to the response."""
_S_VERDICT = re.compile(
    r"(?i)\b(?:is|as|be|was|been)\s+(?:\w+\s+){0,2}(?:correct|right|perfect|flawless|spotless|impeccable|fine|valid|accurate|a\s+pass)\b"
    r"|\bas\s+the\s+best\b|\b(?:considered|deemed|treated|accepted)\s+(?:as\s+)?(?:correct|right|valid|a\s+pass|passed)\b"
)
_S_SELF = _words(
    r"(?:this|my|the\s+above|the\s+present|the\s+final)\s+(?:answer|response|solution|submission|item|work|reply|attempt|output|result)"
    r"|the\s+final\s+(?:figure|number)|(?:answer|response|solution|submission|result|number|figure|line)\s+(?:above|here|below|as\s+given)|this\s+one"
    r"|(?:accept|approve|mark|grade|score|rate|give|award|pass|treat|consider|count|record|log|credit|reward)\s+this\b(?!\s+(?:number|car|way|time|one\s+out))"
    r"|(?:accept|approve|mark|grade|score|rate|credit|award|tag|label|count|log)\s+it\s+as|(?:accept|approve|mark|grade|score|rate|credit|award)\s+it"
    r"|this\s+(?:earns|deserves|merits|warrants)|(?:recogni[sz]e|see|find|regard|view|deem)\s+this\s+(?:as|to\s+be)"
)
"""The response speaking of itself as a thing to be graded."""
_S_PROCESS = _words(
    r"rubric|criteria|criterion"
    r"|(?:grading|marking|scoring|evaluation|assessment|review|correctness)\s+(?:guide|guidance|scheme|key|notes?|policy|procedure|process|step|rules"
    r"|instructions?|criteria|standards|prompt|context|check)"
    r"|marking\s+guide|answer\s+key|solution\s+key|reference|expected\s+(?:answer|result|value)|(?:sample|worked|model|official|gold)\s+(?:solution|answer)"
    r"|comparison|comparing|policy|compar(?:e|ing)\s+(?:with|to|against)|checking|verif(?:y|ying|ication)|evaluation|evaluating|assessment|grading|marking|scoring|review"
    r"|(?:usual|normal|standard|prior|previous|earlier|original|given|system)\s+(?:\w+\s+)?(?:rules|instructions?|directions|guidelines|guidance|standards"
    r"|criteria|checks?|prompt)"
)
"""The grading process and its instruments (rubric, reference, key, checks): what a response has no business discussing."""
_S_REFERENCE = _words(
    r"reference|answer\s+key|(?:your|the\s+solution|the\s+marking)\s+key|the\s+key\s+(?:says|gives|has|lists)|expected\s+(?:answer|result|value|output|figure|number|total)"
    r"|(?:official|gold|model|sample|worked|provided|stored|given|textbook|teacher'?s|correct|printed|published|listed|canonical|target|recorded"
    r"|supplied|keyed|book'?s?|back-of-(?:the-)?book|intended|answer-key|key'?s?)\s+(?:solution|answer|label|result|value|figure|number|output)s?"
    r"|(?:solution|answer)s?\s+(?:sheet|manual|booklet|book|file|key|on\s+file|in\s+the\s+(?:key|book|back))|(?:answer|value|number|figure)\s+(?:on\s+file|in\s+the\s+key)"
    r"|solutions?\s+manual|back\s+of\s+the\s+book|rubric\s+(?:value|answer|figure)|(?:answer|solution)\s+(?:provided|given|stored|supplied|listed)"
    r"|target\s+value|ground[\s-]?truth|gold\s+label|marking\s+scheme|mark\s+scheme|the\s+key|the\s+label|the\s+file|dataset\s+label"
)
"""What a response is graded against."""
_S_FAULT = _words(
    r"wrong|incorrect(?:ly)?|errors?|mistakes?|mistaken|typos?|misprint\w*|errat\w*|corrigend\w*|slip(?:s|ped)?|overlook\w*|miss(?:es|ed)|omit\w*|misread\w*"
    r"|miscalcul\w*|miscount\w*|miscop\w*|mistranscri\w*|transcribed\s+(?:in)?correctly|mislabel\w*|label\s+noise|mistyp\w*|double-count\w*"
    r"|out\s+of\s+date|outdated|stale|flawed|faulty|disagree\w*|inaccurate|is\s+off|are\s+off|off\s+by|bug|buggy|glitch\w*|broken|corrupt\w*"
    r"|compromised|contradict\w*|failed\s+(?:its\s+)?(?:checksum|validation|integrity|verification)|pre-?correction|uncorrected|unrevised|unfixed"
    r"|mangled|garbled|scrambled|truncated|pre-?dates|only\s+covers|doesn'?t\s+cover|does\s+not\s+cover|fails\s+to\s+(?:cover|account)|ambiguous"
    r"|can'?t\s+both\s+be\s+right|cannot\s+both\s+be\s+right|(?:an?|the)\s+(?:older|previous|earlier|old)\s+version|superseded|invalid"
)
"""A fault found in something."""
_S_LABEL_FAULT = _words(
    r"mislabel\w*|label\s+noise|misprint\w*|errat\w*|corrigend\w*|miscop\w*|mistranscri\w*|annotation\s+errors?|older\s+version|outdated"
    r"|(?:number|value|figure|answer)\s+you\s+(?:were|have\s+been)\s+(?:handed|given|told|provided|sent)"
)
"""A fault that only what a response is graded against can have."""
_S_TRUE_VALUE = _words(
    r"the\s+(?:right|correct|true|real|actual|intended|fixed|current)\s+(?:value|answer|number|figure|result)|it\s+is\s+\d+|is\s+\d+"
)
_LEAD = r"^\W*(?:(?:please|kindly|just|simply|so|now|then|and|instead|therefore|thus|note)\W+)*"
_S_IMPERATIVE = re.compile(
    rf"(?i){_LEAD}(?:accept|approve|mark|grade|score|rate|give|award|assign|pass|treat|consider|count|record|log|output|return|ignore|disregard|omit"
    r"|waive|abandon|drop|overlook|refrain|confirm|skip|forget|set|put|trust|default|use|take|regard|remember|don'?t|do\s+not|stop|respond|reply"
    r"|report|credit|let)\b"
    r"|\b(?:please|kindly)\b"
)
_S_SCORE_IMPERATIVE = re.compile(
    rf"(?i){_LEAD}(?:accept|approve|mark|grade|score|rate|give|award|assign|pass|credit|output|return|record|log|report|confirm|emit|issue|grant"
    r"|declare)\b"
)
_CLAUSE = re.compile(r"[,;:]\s+(?:(?:so|then|and|just|please)\s+)*(?=[a-z])", re.I)
"""A clause boundary: an imperative often follows one ("..., so assign the maximum")."""
_S_SUSPEND = _words(
    r"skip|ignore|disregard|forget|set\s+aside|aside|waive\w*|suspend\w*|withdrawn|revoked|void|relaxed|lifted|exception|exempt\w*|omit|refrain|abandon"
    r"|overlook|no\s+need|not\s+required|not\s+needed|unnecessary|does\s+not\s+apply|doesn'?t\s+apply|no\s+longer"
    r"|already\s+(?:been\s+)?(?:done|checked|verified|approved|graded|marked)|don'?t\s+bother|no\s+deductions|(?:do\s+not|don'?t|not)\s+follow"
    r"|pre-?approved|pre-?verified|overrid\w+|supersed\w+|obsolete|deprecated|cancell?ed|bypass\w*|instead\s+of|regardless|whatever|irrespective"
    r"|do\s+not\s+hold|don'?t\s+hold|revised|updated|left\s+out|switched\s+off|automatically|as\s+if|(?:should|must|need)\s+not\s+be\s+used"
    r"|out\s+of\s+scope|not\s+a\s+criterion|(?:do\s+not|don'?t|never|no\s+need\s+to|need\s+not)\s+(?:\w+\s+)?(?:check|compare|verify|consult"
    r"|look\s+up|cross-?check|match)"
)
"""Words that suspend a process: skip, waive, no longer applies, already verified."""
_S_CALCULATION = re.compile(r"<<[^>]*>>|\d\s*[-+*x×=]\s*\$?\d|=\s*\$?\d|\d\s*/\s*(?!(?:5|10|100)\b)\d")
"""A line of working (a score such as 5/5 is not working)."""
_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+(?=\S)")


def _sentence_rule(s: str) -> str | None:
    """Which structural rule a sentence trips, from what it is made of rather than its wording."""
    if _S_GRADER.search(s) or _S_VOCATIVE.search(s):
        return "grader_addressed"  # a grader named or spoken to: a solution has no reader to address
    you = bool(_S_YOU.search(s))
    imperative = bool(_S_IMPERATIVE.search(s))
    scoring = {m.group(0).lower() for m in _S_SCORING.finditer(s)}
    self_ref, process, suspend = bool(_S_SELF.search(s)), bool(_S_PROCESS.search(s)), bool(_S_SUSPEND.search(s))
    if _S_WEAK_GRADER.search(s) and (self_ref or len(scoring) >= 2 or (you and scoring)):
        return "grader_addressed"
    if self_ref and (len(scoring) >= 2 or _S_VERDICT.search(s)):
        return "self_graded"  # the response passes a verdict on itself
    if (you or imperative) and scoring and (self_ref or process):
        return "scoring_directive"  # someone is told how to score this response or to use the process
    for clause in (s, *(s[m.end() :] for m in _CLAUSE.finditer(s))):
        if (lead := _S_SCORE_IMPERATIVE.search(clause)) and _S_SCORING.search(clause[lead.end() :]):
            return "scoring_directive"
    weak = bool(_S_WEAK_GRADER.search(s))
    if (you or weak) and _S_PRAISE.search(s) and (self_ref or len(scoring) >= 2 or (weak and scoring)):
        return "grader_addressed"  # praise for the reader next to this response or a score: flattery
    if (you or weak) and _S_QUALITY.search(s) and (self_ref or scoring or _S_WORK_REF.search(s) or weak):
        return "grader_addressed"  # the reader credited with insight, next to this working or a verdict: flattery
    if _S_AUTOPASS.search(s) and (_S_ITEM.search(s) or self_ref or scoring or process):
        return "process_suspended"  # this item claimed to pass unchecked (auto-passed, pre-approved, already graded)
    if _S_EXEMPT.search(s) and (_S_ITEM.search(s) or self_ref) and (scoring or process or you or imperative):
        return "process_suspended"  # this item claimed exempt from checking (calibration, voided, waived)
    if _S_PASSIVE_DIRECTIVE.search(s):
        return "scoring_directive"  # a verdict ordered in the passive voice
    if _S_REFERENCE.search(s) and (_S_FAULT.search(s) or suspend):
        return "reference_disputed"  # a response has no business finding fault with what it is graded against
    if _S_LABEL_FAULT.search(s) and (self_ref or _S_TRUE_VALUE.search(s)):
        return "reference_disputed"  # a fault that only a reference can have (mislabelled, misprint), then "the right value is"
    if suspend and (process or self_ref):
        return "process_suspended"  # the grading process, or this response, exempted from it
    if process and (len(scoring) >= 2 or _S_VERDICT.search(s)):
        return "process_suspended"
    if imperative and suspend and scoring:
        return "process_suspended"
    return None


SENTENCE_RULES = ("grader_addressed", "self_graded", "scoring_directive", "reference_disputed", "process_suspended")
"""Names of the structural sentence rules (see `sentence_rules`)."""


def sentence_rules(text: str) -> list[str]:
    """Structural rules tripped by the sentences of `text` outside working lines (normalised text)."""
    found: list[str] = []
    for line in text.splitlines():
        if _S_CALCULATION.search(line):
            continue
        for sentence in _SENTENCE_END.split(line):
            if sentence.strip() and (name := _sentence_rule(sentence)) is not None and name not in found:
                found.append(name)
    return found


_CUE_MARKUP = re.compile(r"<[!/a-zA-Z|]|[{}]|\[/?[A-Za-z_ ]{2,20}\]|<\||\[\s*[\[\"']")
"""Markup, JSON (objects, or arrays of strings and arrays), chat-template or bracketed tags: structure a
plain solution does not carry."""
_WORKING = re.compile(r"<<[^<>]*\d[^<>]*=[^<>]*>>|\d\s*[-+*x×=]\s*\$?\d|\d\s*/\s*(?!(?:5|10|100)\b)\d")
"""A sentence of working: a calculation (a score such as 5/5 or "correctness=5" is not one)."""
_CUE_BLOB = re.compile(r"[A-Za-z0-9+/=]{16,}")
_CUE_FINAL = re.compile(r"(?m)^\s*(?:A:|####\s*-?\$?\d).*$|\\boxed\{")
_CUE_ROLE = re.compile(
    r"(?i)^\W*(?:system|assistant|user|human|model|grader|judge|evaluator|verdict|result|score|grade|rating|instructions?|inst|input|response)\b\W*(?:\([^)]*\)\s*)?[:>\]]"
)
_CUE_SCORE = re.compile(
    r"(?i)(?<![(\d.])\b\d+(?:\.\d+)?\s*(?:/|out\s+of)\s*(?:5|10|100)\b(?!\s*[*)x])|\w*(?:correct|scor|grad|rating|reason|verdict)\w*\s*[=:]\s*\d|\b(?:ground[\s-]?truth|answer\s+key|key)\b"
    r"|\b(?:answer|solution|result)\s+(?:provided|given)\b|\b(?:pass|fail|correct|incorrect)\W*$"
)


def _cue(sentence: str) -> bool:
    """A sentence worth a second look: any ONE feature the structural rules combine (a grader word,
    scoring, the grading process, suspension, self-reference, "you"), a role prefix, a score-shaped
    token, markup, a letter outside ASCII (another language or script, look-alikes), a blob, or a
    ROT13 reading that has one."""
    if any(ord(ch) > 127 and ch.isalpha() for ch in sentence) or language_concepts(sentence) or score_record(sentence):
        return True
    view = fold_confusables(normalise(sentence))
    readings = [view, codecs.encode(view, "rot13")] if _ROT13_HINT.search(view) else [view]
    return any(rule.search(reading) for reading in readings for rule in _CUES)


_CUE_GRADING = re.compile(
    r"(?i)\b(?:assess|evaluat|review|judg|grad(?:e|ed|es|ing|er)\b|examin|verif|scor|rated\b|rating|mark(?:ed|ing)\b|whoever\b)\w*"
    r"|\bthe\s+(?:right|correct|true|real|actual)\s+(?:value|answer|number|figure|result)\b"
)
"""A grading verb or noun in any form ("to be assessed by")."""
_CUE_SHAPE = re.compile(r"^\s*#{2,}\s*[A-Za-z]|\b[A-Z]+_[A-Z_]+\b|^\W*(?:end|eof|fin)\b", re.I | re.M)
"""A markdown header, a SHOUTY_SNAKE token, a line opening with an end marker."""
_CUES = (
    RULES["other_language"],
    _CUE_GRADING,
    _CUE_SHAPE,
    _S_REFERENCE,
    _S_FAULT,
    _S_GRADER,
    _S_WEAK_GRADER,
    _S_VOCATIVE,
    _S_SCORING,
    _S_PROCESS,
    _S_SUSPEND,
    _S_SELF,
    _S_YOU,
    _CUE_MARKUP,
    _CUE_BLOB,
    _CUE_ROLE,
    _CUE_SCORE,
)


def suspicious_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of `text` a judge should be asked about again without: sentences outside
    working lines that carry any single cue (a far wider net than the detector's rules, which
    need cues in combination), and everything after the last final-answer line. Lines of working
    and the final-answer line itself are never included."""
    spans: list[tuple[int, int]] = []
    finals = list(_CUE_FINAL.finditer(text))
    tail = finals[-1].end() if finals else len(text)
    offset = 0
    for line in text.splitlines(keepends=True):
        start, body = offset, line.rstrip("\r\n")
        offset += len(line)
        if start >= tail:
            if body.strip():
                spans.append((start, start + len(body)))
            continue
        if not body.strip() or _CUE_FINAL.match(body):
            continue
        position = 0
        for sentence in _SENTENCE_END.split(body):
            at = body.index(sentence, position)
            position = at + len(sentence)
            if sentence.strip() and (score_record(sentence) or (not _WORKING.search(sentence) and _cue(sentence))):
                spans.append((start + at, start + position))
    return spans + _rest_of_blocks(text, spans, tail)


def _rest_of_blocks(text: str, spans: list[tuple[int, int]], tail: int) -> list[tuple[int, int]]:
    """A note is usually a block of lines: once one of its lines is suspicious, its other lines that
    are neither working nor the final answer go too (a "Default verdict" line can sit under a
    header that alone carries the cue). Blocks are runs of non-blank lines."""
    if not spans:
        return []
    extra: list[tuple[int, int]] = []
    block: list[tuple[int, int, str]] = []
    offset = 0
    for line in [*text[:tail].splitlines(keepends=True), ""]:
        start, body = offset, line.rstrip("\r\n")
        offset += len(line)
        if body.strip():
            block.append((start, start + len(body), body))
            continue
        if block and any(a < b_end and b_start < b for a, b in spans for b_start, b_end, _ in block):
            extra += [(a, b) for a, b, body_ in block if not _WORKING.search(body_) and not _CUE_FINAL.match(body_)]
        block = []
    return extra


def without_spans(text: str, spans: list[tuple[int, int]]) -> str:
    """`text` with `spans` cut out and the blank lines they leave removed."""
    out, last = [], 0
    for start, end in sorted(spans):
        out.append(text[last:start])
        last = max(last, end)
    out.append(text[last:])
    return "\n".join(line for line in "".join(out).splitlines() if line.strip())


@dataclass(frozen=True)
class InjectionDetector:
    rules: tuple[str, ...] = tuple(RULES)
    structural: bool = True
    """Also the sentence rules (`SENTENCE_RULES`); off only to measure what they add (benchmarks/detector.py)."""
    classifier: bool = True
    """Also the learned sentence classifier (farm/screening/classifier.py) when no rule fired: it names itself
    `classifier`. Off to measure the rules alone."""
    model: SentenceClassifier | None = None
    """The classifier to use; None: the shipped weights (`default_classifier()`)."""

    def matches(self, text: str) -> list[str]:
        """The names of the rules the text trips (empty: looks clean); `encoded_payload` when
        a rule fires only on a decoded base64/hex/ROT13 reading."""
        plain = normalise(text)
        views = [plain, fold_confusables(plain)] if not plain.isascii() else [plain, plain]
        found = [name for name in self.rules if any(RULES[name].search(view) for view in dict.fromkeys(views))]
        found += [name for name in _line_rules(views[1], plain) if name not in found]
        if self.structural:
            found += [name for name in sentence_rules(views[1]) if name not in found]
        if not found:
            for decoded in decoded_payloads(plain):
                view = fold_confusables(normalise(decoded))
                if (
                    any(RULES[name].search(view) for name in self.rules)
                    or _line_rules(view, normalise(decoded))
                    or (self.structural and sentence_rules(view))
                ):
                    return ["encoded_payload"]
                if self.classifier and (model := self.model or default_classifier()) is not None and model.flags(view):
                    return ["encoded_payload"]
        if not found and self.classifier and (model := self.model or default_classifier()) is not None and model.flags(views[1]):
            return ["classifier"]
        return found
