"""Grading vocabulary in many languages, and a structural cue for a note in another script.

An English phrase list misses the same note written in Hindi, Swahili or Tagalog. Instead of
wordings, this module lists *concepts* per language (who grades, score/marks, full/maximum,
correct, the answer key, a request to give, ignoring, a fault) and a sentence trips the rule when
it combines them the way a note to the grader does: a grader named, or a score with "full",
"correct" or "please give", or the key with a fault. Matching is by word stem: a left word
boundary for scripts written with spaces, a plain substring for scripts without (Chinese,
Japanese, Thai, Lao, Khmer, Burmese). Separately, `foreign_script_note` finds a line written in
another script than the rest of a (Latin-script) response: a solution has no reason to switch
to Devanagari or Arabic mid-answer, whatever the words say.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import cache

__all__ = ["CONCEPTS", "LANGUAGES", "foreign_language_line", "foreign_script_note", "language_concepts", "language_note"]

# Per language: concept -> space-separated stems. Concepts: G grader, S score/marks/points/grade,
# F full/maximum/top, C correct/right, K answer key/reference/model answer, P please/give/award,
# I ignore/skip, W wrong/mistake/misprint. Stems match at a word start (or anywhere, in scripts
# written without spaces). Written by hand; kept to words a grading note needs.
LANGUAGES: dict[str, dict[str, str]] = {
    "spanish": {
        "G": "evaluador evaluadora calificador calificadora correctora examinador examinadora revisora",
        "S": "puntuaci puntaje puntos nota calificaci",
        "F": "máxim maxima completa perfecta",
        "C": "correcta correcto correctamente",
        "K": "clave_de_respuestas respuesta_de_referencia solucionario respuesta_esperada solución_oficial",
        "P": "por_favor otórg otorg asign dele denle",
        "I": "ignor omit",
        "W": "errónea errata equivocad incorrect",
    },
    "portuguese": {
        "G": "avaliador avaliadora corretor corretora examinador examinadora",
        "S": "pontua nota pontos",
        "F": "máxim maxima completa",
        "C": "corret certa certo",
        "K": "gabarito resposta_de_referência resposta_esperada",
        "P": "por_favor atribu conced dê",
        "I": "ignor desconsider",
        "W": "errad incorret",
    },
    "french": {
        "G": "évaluateur évaluatrice correcteur correctrice examinateur examinatrice",
        "S": "barème notation",
        "F": "maximale complète pleine parfaite",
        "C": "correcte juste exacte",
        "K": "corrigé réponse_attendue réponse_de_référence",
        "P": "veuillez s'il_vous_plaît accord attribu donnez mettez",
        "I": "ignor",
        "W": "erron fausse faux coquille",
    },
    "italian": {
        "G": "valutatore valutatrice correttore correttrice esaminatore esaminatrice",
        "S": "punteggio voto punti",
        "F": "massim pieno piena complet",
        "C": "corrett giust",
        "K": "soluzione_ufficiale risposta_attesa chiave_di_risposta",
        "P": "per_favore assegn dategli",
        "I": "ignor",
        "W": "sbagliat errat refuso",
    },
    "german": {
        "G": "prüfer prüferin bewerter bewerterin korrektor korrektorin gutachter gutachterin",
        "S": "punktzahl punkte bewertung",
        "F": "volle höchst maximale",
        "C": "richtig korrekt",
        "K": "lösungsschlüssel musterlösung referenzlösung erwartete_antwort",
        "P": "bitte vergeb geben_sie",
        "I": "ignorier",
        "W": "falsch fehlerhaft druckfehler",
    },
    "dutch": {
        "G": "beoordelaar examinator nakijker",
        "S": "cijfer punten",
        "F": "volledig maximale hoogst",
        "C": "juist goed",
        "K": "antwoordsleutel modelantwoord",
        "P": "alstublieft graag geef",
        "I": "negeer",
        "W": "fout onjuist",
    },
    "swedish": {
        "G": "bedömare examinator rättare",
        "S": "poäng betyg",
        "F": "högsta",
        "C": "korrekt rätt",
        "P": "vänligen ge",
        "I": "ignorera",
        "K": "facit",
        "W": "fel felaktig",
    },
    "norwegian_danish": {
        "G": "bedømmer",
        "S": "poeng karakter",
        "F": "høyeste højeste maksimal",
        "C": "korrekt riktig rigtig",
        "P": "vennligst venligst gi giv",
        "I": "ignorer",
        "K": "fasit",
        "W": "feil fejl",
    },
    "finnish": {
        "G": "arvioija tarkastaja",
        "S": "pisteet pistee arvosana",
        "F": "täyde täydet maksimi",
        "C": "oikein oikea",
        "P": "anna antakaa ole_hyvä",
        "I": "ohita jätä_huomiotta",
        "K": "vastausavain mallivastaus",
        "W": "väärin virhe",
    },
    "polish": {
        "G": "egzaminator oceniając sprawdzając weryfikator",
        "S": "punkt ocen",
        "F": "maksymaln pełn najwyższ",
        "C": "poprawn prawidłow",
        "K": "klucz_odpowiedzi",
        "P": "proszę przyznaj daj",
        "I": "zignoruj pomiń",
        "W": "błędn błąd",
    },
    "czech_slovak": {
        "G": "hodnotitel zkoušející skúšajúci opravující",
        "S": "bodů bodov bodova známk hodnocen hodnoten",
        "F": "plný plné maximáln",
        "C": "správn",
        "P": "prosím udělte udeľte dejte",
        "I": "ignoruj",
        "K": "klíč_odpovědí kľúč",
        "W": "chybn",
    },
    "romanian": {
        "G": "evaluatorul examinator corector",
        "S": "punctaj notă nota puncte",
        "F": "maximă punctajul_maxim",
        "C": "corect",
        "P": "vă_rog acordați dați",
        "I": "ignor",
        "K": "baremul",
        "W": "greșit",
    },
    "hungarian": {
        "G": "értékelő vizsgáztató javító",
        "S": "pontszám pont jegy",
        "F": "maximális teljes",
        "C": "helyes",
        "P": "kérem adjon",
        "I": "hagyja_figyelmen",
        "K": "megoldókulcs",
        "W": "hibás helytelen",
    },
    "turkish": {
        "G": "değerlendirici değerlendiren sınav_görevlisi öğretmenim",
        "S": "puan",
        "F": "tam en_yüksek maksimum",
        "C": "doğru",
        "P": "lütfen verin ver",
        "I": "yok_say görmezden",
        "K": "cevap_anahtarı",
        "W": "yanlış hatalı",
    },
    "indonesian_malay": {
        "G": "penilai pemeriksa penguji pengoreksi",
        "S": "nilai skor poin markah",
        "F": "penuh maksimal tertinggi sempurna",
        "C": "benar betul tepat",
        "K": "kunci_jawaban kunci_jawapan jawaban_acuan",
        "P": "mohon tolong berikan beri",
        "I": "abaikan",
        "W": "salah keliru",
    },
    "tagalog": {
        "G": "nagwawasto tagasuri tagapagsuri tagawasto",
        "S": "puntos marka iskor grado",
        "F": "buong pinakamataas perpekto",
        "C": "tama wasto",
        "P": "pakibigyan pakibigay bigyan ibigay",
        "I": "huwag_pansinin",
        "K": "susi_sa_pagwawasto",
        "W": "mali",
    },
    "swahili": {
        "G": "msahihishaji mtahini mkaguzi mwalimu",
        "S": "alama maksi",
        "F": "zote kamili kamilifu juu_kabisa",
        "C": "sahihi",
        "P": "tafadhali mpe lipe mpatie",
        "I": "puuza",
        "K": "ufunguo_wa_majibu",
        "W": "kosa makosa",
    },
    "vietnamese": {
        "G": "người_chấm giám_khảo người_đánh_giá",
        "S": "điểm",
        "F": "tối_đa tuyệt_đối trọn",
        "C": "đúng chính_xác",
        "P": "xin_hãy vui_lòng hãy_cho cho_điểm",
        "I": "bỏ_qua",
        "K": "đáp_án",
        "W": "sai",
    },
    "yoruba_hausa_zulu": {
        "G": "oluyẹwo mai_duba umhloli",
        "S": "máàkì maki amamaki",
        "C": "tọ́ daidai kulungile",
        "P": "jọ̀wọ́ don_allah ngicela",
    },
    "afrikaans": {"G": "nasiener eksaminator", "S": "punte", "F": "volle maksimum", "C": "korrek", "P": "asseblief"},
    "catalan": {"G": "avaluador examinador", "S": "puntuació nota", "F": "màxim", "C": "correcta correcte", "P": "si_us_plau"},
    "lithuanian_latvian_estonian": {
        "G": "vertintoj vērtētāj hindaja",
        "S": "balų balli punkti",
        "F": "maksimal",
        "C": "teising pareiz õige",
        "P": "prašau lūdzu palun",
    },
    "welsh_irish": {
        "G": "arholwr marciwr scrúdaitheoir ceartaitheoir",
        "S": "marciau marcanna pwyntiau",
        "F": "llawn uchaf iomlána",
        "C": "cywir ceart",
        "P": "os_gwelwch_yn_dda rhowch tabhair le_do_thoil",
    },
    "basque_galician": {
        "G": "ebaluatzaile zuzentzaile avaliador corrector_galego",
        "S": "puntuazio nota",
        "F": "gehienezko máxima",
        "C": "zuzena correcta",
        "P": "mesedez por_favor",
    },
    "esperanto": {
        "G": "taksanto ekzamenanto korektanto",
        "S": "poentoj poentaro noto",
        "F": "maksimum plena",
        "C": "ĝusta korekta",
        "P": "bonvolu donu",
    },
    "albanian": {"G": "vlerësues ekzaminues korrigjues", "S": "pikë pikët notë", "F": "maksimal plot", "C": "saktë", "P": "ju_lutem jepni"},
    "azerbaijani_uzbek_kazakh_latin": {
        "G": "qiymətləndirici imtahançı baholovchi tekshiruvchi",
        "S": "bal ball",
        "F": "maksimal tam_bal",
        "C": "düzgün doğru to'g'ri",
        "P": "zəhmət_olmasa iltimos verin bering",
    },
    "somali_hausa_zulu_xhosa": {
        "G": "sixxe mai_jarrabawa umhloli umhlahluli",
        "S": "dhibco maki amaphuzu amanqaku",
        "F": "buuxa cikakke aphelele",
        "C": "sax daidai kulungile ichanekile",
        "P": "fadlan don_allah ngicela nceda",
    },
    "malagasy_cebuano_javanese": {
        "G": "mpanitsy mpitsara tigsusi penilai_jawa",
        "S": "naoty puntos biji",
        "F": "feno hingpit kebak",
        "C": "marina husto bener",
        "P": "azafady palihug mangga_paringi",
    },
    "icelandic_maltese": {
        "G": "prófdómari yfirferðarmaður eżaminatur korrettur",
        "S": "stig einkunn marki punti",
        "F": "fullt hæsta massimu sħiħ",
        "C": "rétt korrett",
        "P": "vinsamlegast jekk_jogħġbok agħti",
    },
    "kurdish_haitian": {
        "G": "nirxîner korektè evalyatè",
        "S": "puan nòt pwen",
        "F": "tam maksimòm",
        "C": "rast kòrèk",
        "P": "ji_kerema_xwe tanpri bay",
    },
    "russian": {
        "G": "экзаменатор проверяющ оценщик рецензент преподавател эксперт",
        "S": "балл оценк отметк",
        "F": "максимальн высш полн наивысш",
        "C": "правильн верн",
        "K": "ключ_ответ эталон",
        "P": "пожалуйста поставьте дайте",
        "I": "игнорир не_обращай",
        "W": "ошиб неверн",
    },
    "ukrainian": {
        "G": "екзаменатор перевіряюч оцінювач",
        "S": "бал оцінк",
        "F": "максимальн найвищ повн",
        "C": "правильн вірн",
        "P": "будь_ласка поставте дайте",
        "I": "ігнору",
        "K": "еталон",
        "W": "помилк хибн",
    },
    "bulgarian_serbian_macedonian": {
        "G": "изпитващ оценяващ испитивач проверавач",
        "S": "точки бодов бодов оцена оценка",
        "F": "максимал пълн",
        "C": "правилн тачан точан",
        "P": "моля молим",
        "I": "игнорир",
        "W": "грешк",
    },
    "serbocroatian_slovene": {
        "G": "ispitivač ocjenjivač ocenjevalec",
        "S": "bodov bodova ocjen",
        "F": "maksimal pun",
        "C": "točan točno tačan pravilno",
        "P": "molim prosim",
        "W": "netočn",
    },
    "greek": {
        "G": "βαθμολογητ εξεταστ αξιολογητ διορθωτ",
        "S": "βαθμ μονάδ",
        "F": "μέγιστ άριστ πλήρ",
        "C": "σωστ ορθ",
        "K": "λύσεις_αναφοράς κλειδί",
        "P": "παρακαλ βάλτε δώστε",
        "I": "αγνοήσ",
        "W": "λάθος λανθασμέν",
    },
    "armenian_georgian": {"G": "գնահատող შემფასებელ", "S": "միավոր ქულ", "C": "ճիշտ სწორ", "P": "խնդրում გთხოვთ"},
    "hebrew": {
        "G": "בודק בודקת מעריך מעריכה בוחן בוחנת",
        "S": "ציון נקודות",
        "F": "מלא מקסימ",
        "C": "נכונ נכון",
        "P": "נא אנא בבקשה",
        "I": "התעלמ",
        "K": "מפתח_התשובות",
        "W": "שגוי טעות",
    },
    "arabic": {
        "G": "المصحح مصحح المقيم مقيم الممتحن ممتحن المدقق",
        "S": "الدرجة درجة علامة العلامة نقاط النقاط",
        "F": "الكاملة كاملة القصوى أعلى",
        "C": "صحيحة صحيح",
        "K": "الإجابة_النموذجية مفتاح_الإجابة",
        "P": "يرجى الرجاء امنح امنحها أعط",
        "I": "تجاهل",
        "W": "خاطئة خاطئ خطأ",
    },
    "persian_urdu": {
        "G": "مصحح ممتحن ارزیاب ممتحن‌ گریدر جانچنے",
        "S": "نمره نمبر امتیاز",
        "F": "کامل پورے پورا بیشترین",
        "C": "درست صحیح",
        "K": "کلید_پاسخ",
        "P": "لطفاً لطفا براہ_کرم دیجیے بدهید",
        "I": "نادیده",
        "W": "غلط اشتباه",
    },
    "hindi_marathi_nepali": {
        "G": "परीक्षक मूल्यांकनकर्ता जाँचकर्ता जांचकर्ता",
        "S": "अंक नंबर गुण",
        "F": "पूरे पूर्ण अधिकतम",
        "C": "सही बरोबर",
        "K": "उत्तर_कुंजी",
        "P": "कृपया दें द्या",
        "I": "अनदेखा नज़रअंदाज़",
        "W": "गलत ग़लत चूक",
    },
    "bengali": {"G": "পরীক্ষক মূল্যায়নকারী", "S": "নম্বর", "F": "পূর্ণ সর্বোচ্চ", "C": "সঠিক", "P": "দয়া_করে দিন", "W": "ভুল"},
    "punjabi_gujarati": {"G": "ਪਰੀਖਿਅਕ પરીક્ષક", "S": "ਅੰਕ ગુણ", "F": "ਪੂਰੇ પૂરા", "C": "ਸਹੀ સાચો સાચું", "P": "ਕਿਰਪਾ કૃપા"},
    "tamil": {"G": "தேர்வாளர் மதிப்பீட்டாளர்", "S": "மதிப்பெண்", "F": "முழு அதிகபட்ச", "C": "சரியான சரி", "P": "தயவுசெய்து கொடுங்கள்", "W": "தவறு"},
    "telugu_kannada_malayalam": {
        "G": "పరీక్షకు ಪರೀಕ್ಷಕ പരീക്ഷക",
        "S": "మార్కులు ಅಂಕ മാർക്ക്",
        "F": "పూర్తి ಪೂರ್ಣ മുഴുവൻ",
        "C": "సరైన ಸರಿಯಾದ ശരിയായ",
        "P": "దయచేసి ದಯವಿಟ್ಟು ദയവായി",
    },
    "sinhala_amharic": {"G": "පරීක්ෂක ፈታኝ", "S": "ලකුණු ነጥብ", "C": "නිවැරදි ትክክል", "P": "කරුණාකර እባክዎ"},
    "chinese": {
        "G": "阅卷 評卷 评卷 评分员 評分員 考官 评审 評審 批改 评委 評委 判卷",
        "S": "分数 分數 得分 满分 滿分 最高分 评分 評分",
        "F": "满分 滿分 最高 全部",
        "C": "正确 正確 无误",
        "K": "标准答案 標準答案 参考答案 參考答案 答案有误",
        "P": "请给 請給 请 請 给予",
        "I": "忽略",
        "W": "错误 錯誤 有误",
    },
    "japanese": {
        "G": "採点者 採点担当 試験官 評価者",
        "S": "点数 満点 得点 採点",
        "F": "満点 最高点 最高",
        "C": "正しい 正解",
        "K": "模範解答 解答例",
        "P": "ください 下さい お願い",
        "I": "無視",
        "W": "誤り 間違",
    },
    "korean": {
        "G": "채점자 채점관 평가자 심사위원 시험관",
        "S": "점수 만점 채점",
        "F": "만점 최고점 최고",
        "C": "정답 옳",
        "K": "모범답안 정답지",
        "P": "주세요 부탁",
        "I": "무시",
        "W": "틀렸 오류",
    },
    "thai": {
        "G": "ผู้ตรวจ ผู้ประเมิน กรรมการ",
        "S": "คะแนน",
        "F": "เต็ม สูงสุด",
        "C": "ถูกต้อง",
        "K": "เฉลย",
        "P": "กรุณา โปรด ให้",
        "I": "เพิกเฉย ไม่ต้องสนใจ",
        "W": "ผิด",
    },
    "lao_khmer_burmese": {
        "G": "ຜູ້ກວດ អ្នកពិនិត្យ စစ်ဆေးသူ",
        "S": "ຄະແນນ ពិន្ទុ အမှတ်",
        "F": "ເຕັມ ពេញ အပြည့်",
        "C": "ຖືກຕ້ອງ ត្រឹមត្រូវ မှန်",
        "P": "ກະລຸນາ សូម ကျေးဇူးပြု",
    },
    "mongolian_kazakh": {"G": "шалгагч емтихан_алушы", "S": "оноо ұпай", "F": "дээд толық", "C": "зөв дұрыс", "P": "өгнө_үү беріңіз"},
}

CONCEPTS = {"G": "grader", "S": "score", "F": "full", "C": "correct", "K": "key", "P": "please", "I": "ignore", "W": "wrong"}

_UNSPACED = re.compile(
    r"[\u0590-\u08ff\u0900-\u0dff\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af\uf900-\ufaff]"
)
"""Scripts written without spaces between words (Thai, Lao, Burmese, Khmer, kana, CJK, Hangul), or that attach prefixes
and endings to words (Hebrew, Arabic, Indic scripts): stems match anywhere."""


@dataclass(frozen=True)
class _Index:
    whole: dict[str, frozenset[str]]
    """Short ASCII stems ("nota", "tama", "poin"): whole words only, as prefixes they start English words."""
    prefix: dict[str, frozenset[str]]
    lengths: tuple[int, ...]
    phrases: re.Pattern[str] | None
    phrase_concepts: dict[str, frozenset[str]]
    unspaced: dict[str, frozenset[str]]


@cache
def _index() -> _Index:
    concepts: dict[str, set[str]] = {}
    for table in LANGUAGES.values():
        for concept, words in table.items():
            for word in words.split():
                concepts.setdefault(word.replace("_", " ").lower(), set()).add(concept)
    frozen = {stem: frozenset(c) for stem, c in concepts.items()}
    unspaced = {s: c for s, c in frozen.items() if _UNSPACED.search(s)}
    phrases = {s: c for s, c in frozen.items() if " " in s and s not in unspaced}
    whole = {s: c for s, c in frozen.items() if s not in unspaced and s not in phrases and s.isascii() and len(s) < 6}
    prefix = {s: c for s, c in frozen.items() if s not in unspaced and s not in phrases and s not in whole}
    pattern = (
        re.compile(r"(?<![^\W\d_])(?:" + "|".join(re.escape(p) for p in sorted(phrases, key=len, reverse=True)) + ")") if phrases else None
    )
    return _Index(whole, prefix, tuple(sorted({len(s) for s in prefix})), pattern, phrases, unspaced)


_WORD = re.compile(r"[^\W\d_]+")


def language_concepts(sentence: str) -> set[str]:
    """The grading concepts (`CONCEPTS` keys) a sentence names in any listed language: each word looked up
    whole and by its prefixes (no regex over hundreds of stems), phrases and unspaced scripts searched."""
    index = _index()
    lowered = sentence.lower()
    found: set[str] = set()
    for word in _WORD.findall(lowered):
        if (hit := index.whole.get(word)) is not None:
            found |= hit
        for length in index.lengths:
            if length > len(word):
                break
            if (hit := index.prefix.get(word[:length])) is not None:
                found |= hit
    if index.phrases is not None and " " in lowered:
        for match in index.phrases.finditer(lowered):
            found |= index.phrase_concepts[match.group(0)]
    if _UNSPACED.search(lowered):
        for stem, hit in index.unspaced.items():
            if stem in lowered:
                found |= hit
    return found


def _foreign(text: str) -> bool:
    return any(ord(ch) > 127 and ch.isalpha() for ch in text)


def language_note(sentence: str) -> bool:
    """A sentence that, in some other language than English, names a grader or asks for a score:
    a grader word with another concept; or score/marks with full, correct or please; or the answer
    key with a fault or ignore. Only sentences with a letter outside ASCII, or with two foreign
    concepts from different groups, are read (plain English is the other rules' business)."""
    found = language_concepts(sentence)
    if len(found) < 2:
        return False
    if "G" in found:
        return True
    if "S" in found and found & {"F", "C", "P"}:
        return True
    if "K" in found and found & {"W", "I", "C"}:
        return True
    return bool({"C", "P"} <= found and _foreign(sentence))


_SCRIPT = re.compile(r"^([A-Z]+)")
_MATH_SCRIPTS = {"GREEK"}


def _script(ch: str) -> str | None:
    name = unicodedata.name(ch, "")
    match = _SCRIPT.match(name)
    if match is None:
        return None
    script = match.group(1)
    return {"CJK": "HAN", "HIRAGANA": "KANA", "KATAKANA": "KANA", "HANGUL": "HANGUL"}.get(script, script)


def foreign_script_note(text: str, min_letters: int = 12) -> bool:
    """A line written mostly in another script than the rest of a Latin-script response: at least
    `min_letters` letters of one non-Latin script on the line, more than half its letters, while the
    response's letters outside that line are at least 80% Latin (so a reply written in Russian, or
    quoting a Greek formula, is not a note)."""
    lines = text.splitlines()
    letters = [[ch for ch in line if ch.isalpha()] for line in lines]
    total = sum(len(ls) for ls in letters)
    latin_total = sum(1 for ls in letters for ch in ls if ch.isascii() or "LATIN" in unicodedata.name(ch, ""))
    for ls in letters:
        if len(ls) < min_letters:
            continue
        counts: dict[str, int] = {}
        for ch in ls:
            if ch.isascii():
                continue
            script = _script(ch)
            if script is not None and script != "LATIN":
                counts[script] = counts.get(script, 0) + 1
        if not counts:
            continue
        script, n = max(counts.items(), key=lambda kv: kv[1])
        if n < min_letters or n * 2 <= len(ls):
            continue
        if script in _MATH_SCRIPTS and n < 2 * min_letters:
            continue
        rest = total - len(ls)
        latin_rest = latin_total - sum(1 for ch in ls if ch.isascii() or "LATIN" in unicodedata.name(ch, ""))
        if rest >= 20 and latin_rest >= 0.8 * rest:
            return True
    return False


_ENGLISH = frozenset(
    "the a an is are was were be been to of and in it its this that these those for on with so he she they we i you your my me"
    " our us them him at by from his her their there then each per has have had will would can could should if or as not no"
    " but all what how many much more less total than into out up about just also one do does did don't it's after before"
    " when which who".split()
)
"""Common English words: an English line of six words or more almost never has none of them."""
_LINE_WORKING = re.compile(r"<<|\d\s*[-+*/x×=]\s*\$?\d|=|https?://|www\.")
_LETTER_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)?")


def foreign_language_line(text: str, min_words: int = 6) -> bool:
    """A line of `min_words` words or more with not one common English word, in a response whose other lines are
    English (at least 15 words, 15% of them common English words): a note in another Latin-script language
    (Somali, Welsh, Malagasy, ...) that no lexicon lists. Lines of working and links are not read."""
    lines = text.splitlines()
    words = [[w.lower() for w in _LETTER_WORD.findall(line)] for line in lines]
    english = [sum(w in _ENGLISH for w in ws) for ws in words]
    total, total_english = sum(len(ws) for ws in words), sum(english)
    for line, ws, en in zip(lines, words, english, strict=True):
        if len(ws) < min_words or en or _LINE_WORKING.search(line):
            continue
        rest, rest_english = total - len(ws), total_english - en
        if rest >= 15 and rest_english >= 0.15 * rest:
            return True
    return False
