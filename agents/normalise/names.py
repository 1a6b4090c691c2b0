"""Names: the Chinese-character form and the toneless pinyin of a name."""
from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from pypinyin import Style, lazy_pinyin

from agents.normalise.surnames import own_name
from agents.normalise.unicode_forms import DEFAULT_SCRIPT, nfkc, simplified

_MIDDLE_DOT = "\u00b7"
# Han ideographs (URO, Ext A, compatibility block, Ext B..H) and 〇, which is
# used as a character in names and reads "ling".
_CJK_CLASS = "\u3007\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
_CJK_RE = re.compile(f"[{_CJK_CLASS}]")
_CJK_RUN_RE = re.compile(f"[{_CJK_CLASS}]+")

# Everything a keyboard, an IME or an OCR pass produces where a transliterated
# minority name has its separator dot. After NFKC, U+FF0E and U+FE52 are "."
# and U+FF65 is U+30FB, but they are listed too so the set reads as a spec.
_DOT_VARIANTS = (
    ".\u00b7\u0387\u2022\u2027\u2219\u22c5\u2e31\u30fb\uff65\uff0e\ufe52"
    "\u3002\uff61\u16eb\u318d\u1427\u2024"
)
# U+3000 (the ideographic space an IME types between the parts of 阿卜杜拉　买买提)
# is a separator too; it is read before NFKC, which would make it a plain space.
_DOT_TABLE = str.maketrans({c: _MIDDLE_DOT for c in _DOT_VARIANTS + "\u3000"})
_DOT_RUN_RE = re.compile(f"{_MIDDLE_DOT}+")


def _keep_name_char(ch: str) -> bool:
    # Letters, combining marks and digits stay; whitespace, punctuation,
    # symbols and control characters go. The middle dot is handled before.
    return ch == _MIDDLE_DOT or unicodedata.category(ch)[0] in "LMN"


def _has_cjk(text: str) -> bool:
    return _CJK_RE.search(text) is not None


def _han_own_name(text: str) -> str:
    """``text``'s name characters without a husband's surname in front where they are Han characters
    alone (surnames.own_name); a minority name's parts or a Latin one are left as they are."""
    han = "".join(ch for ch in text if _keep_name_char(ch))
    return own_name(han) if _CJK_RUN_RE.fullmatch(han) else text


def normalise_name(raw: str, script: str = DEFAULT_SCRIPT) -> str:
    """The Chinese-character form of a name in simplified script, "" for a pinyin-only rendering.

    NFKC; traditional characters to simplified (OpenCC `script`, and the name
    variants of unicode_forms); every middle-dot variant and the ideographic
    space become U+00B7, runs of dots collapse to one and dots at either end
    go; all other whitespace and punctuation is removed. Latin letters mixed
    into a CJK name are kept, lower-cased. A husband's surname written in front
    of a married woman's name goes (surnames.own_name: 陈王秀英 -> 王秀英).
    """
    if not raw:
        return ""
    return _normalise_name_cached(raw, script)


@lru_cache(maxsize=1 << 17)
def _normalise_name_cached(raw: str, script: str) -> str:
    text = simplified(nfkc(raw.translate(_DOT_TABLE)), script).translate(_DOT_TABLE)
    kept = "".join(ch for ch in text if _keep_name_char(ch))
    if not _has_cjk(kept):
        # A pinyin rendering carries no characters to compare; its pinyin
        # feature (name_pinyin) is what links it.
        return ""
    # Dropping a space can leave a combining mark next to a letter; compose
    # again so the result is a fixed point.
    kept = nfkc(kept.lower())
    return _han_own_name(_DOT_RUN_RE.sub(_MIDDLE_DOT, kept).strip(_MIDDLE_DOT))


# pypinyin (0.55) has no surname mode: lazy_pinyin reads a lone character
# with its most common reading, which is wrong for a handful of frequent
# surnames (单 shan, not dan). A department that writes the name in pinyin
# wrote the surname reading, and a homophone typo (善 for 单) reads shan, so
# the first character of a name is read from this table when it is in it.
_SURNAME_READING = {
    "单": "shan", "曾": "zeng", "解": "xie", "仇": "qiu", "朴": "piao", "查": "zha",
    "区": "ou", "乐": "yue", "盖": "ge", "覃": "qin", "缪": "miao", "翟": "zhai",
    "召": "shao", "种": "chong", "秘": "bi", "繁": "po", "员": "yun", "隗": "wei",
    "句": "gou", "阚": "kan", "薄": "bo", "藏": "zang", "折": "she", "卜": "bu",
    "重": "chong", "都": "du", "长": "chang", "角": "jue", "祭": "zhai", "粘": "nian",
    "能": "nai", "乜": "nie", "黑": "he", "洗": "xian", "炅": "gui", "谌": "chen",
    "啜": "chuai", "厍": "she", "蕃": "pi", "番": "pan", "尉": "wei", "贲": "ben",
}
# Two-character surnames whose per-character reading is wrong.
_COMPOUND_SURNAME_READING = {
    "万俟": "moqi", "尉迟": "yuchi", "单于": "chanyu", "长孙": "zhangsun",
    "澹台": "tantai", "令狐": "linghu",
}
# Characters whose dictionary default is wrong in any name: 卜 is "bo" only in
# 萝卜 (radish), never in a name; in transliterations (阿卜杜拉) it is "bu".
_NAME_READING = {"卜": "bu"}


@lru_cache(maxsize=1 << 16)
def _char_pinyin(ch: str) -> str:
    # One character at a time, not phrase by phrase: the same character must
    # read the same in every name, or a typo in one character could change
    # the reading of its neighbour through pypinyin's phrase dictionary.
    if ch in _NAME_READING:
        return _NAME_READING[ch]
    syllables = lazy_pinyin(ch, style=Style.NORMAL, errors="ignore")
    return "".join(syllables).replace("v", "u")


def _cjk_run_readings(run: str, first: bool) -> list[str]:
    """The reading of each character of a CJK run (a compound surname as one)."""
    parts = []
    i = 0
    if first:
        if run[:2] in _COMPOUND_SURNAME_READING:
            parts.append(_COMPOUND_SURNAME_READING[run[:2]])
            i = 2
        elif run[0] in _SURNAME_READING:
            parts.append(_SURNAME_READING[run[0]])
            i = 1
    parts.extend(_char_pinyin(ch) for ch in run[i:])
    return parts


# ü is written ü, u:, v (pypinyin's and keyboards' form), u (passports since
# 2012 drop the dots) or yu (lyu, nyu). All of them become "u", the only form
# every system can write: 吕 and 卢 (lü, lu) then agree, a homophone collision
# of the kind pinyin comparison accepts anyway.
_U_UMLAUT_RE = re.compile("u\u0308|u:|v|(?<=[ln])yu")
_NOT_LOWER_LATIN_RE = re.compile("[^a-z]+")
_COMBINING_RE = re.compile("[\u0300-\u036f]+")  # the tone marks NFD splits off


def _latin_words(text: str) -> list[str]:
    # NFD splits a tone-marked vowel into the vowel and its combining mark;
    # ü (u + U+0308) is read before the other marks are dropped.
    decomposed = unicodedata.normalize("NFD", text.lower())
    decomposed = _COMBINING_RE.sub("", _U_UMLAUT_RE.sub("u", decomposed))
    return [w for w in _NOT_LOWER_LATIN_RE.split(decomposed) if w]


def name_pinyin(raw: str, script: str = DEFAULT_SCRIPT) -> str:
    """Toneless lower-case pinyin with no separators; "" if none.

    CJK characters (traditional ones first made simplified) are read one by
    one with pypinyin (Style.NORMAL), the name's first character (or a known
    compound surname) with its surname reading; ü is written u. Latin text
    loses case, tone marks, spaces, hyphens and apostrophes. Homophones agree
    by construction: 王小慧 and 王晓慧 both give "wangxiaohui", as do
    "WANG Xiao-hui" and "Wáng Xiǎohuì". A Han name is read without a husband's
    surname in front, as normalise_name has it (陈王秀英 "wangxiuying").
    """
    if not raw:
        return ""
    return _name_pinyin_cached(raw, script)


@lru_cache(maxsize=1 << 18)
def _name_pinyin_cached(raw: str, script: str) -> str:
    return "".join(reading for reading, _ in pinyin_pieces(_han_own_name(simplified(nfkc(raw), script))))


def pinyin_pieces(text: str) -> list[tuple[str, bool]]:
    """(reading, from_characters) of each CJK character and each Latin word of NFKC,
    simplified `text`, in order: a character's reading is one syllable (a compound
    surname's two), a Latin word may be several run together ("xiaohui")."""
    out: list[tuple[str, bool]] = []
    pos = 0
    for match in _CJK_RUN_RE.finditer(text):
        out.extend((w, False) for w in _latin_words(text[pos:match.start()]))
        out.extend((r, True) for r in _cjk_run_readings(match.group(), not out) if r)
        pos = match.end()
    out.extend((w, False) for w in _latin_words(text[pos:]))
    return out


def name_parts(raw: str, script: str = DEFAULT_SCRIPT) -> list[str]:
    """The parts of a name between its separators (·, •, ‧, ., the ideographic space and
    their variants), NFKC and simplified: ["阿卜杜拉", "买买提"]; one part for a Han name, without
    a husband's surname in front (normalise_name)."""
    text = simplified(nfkc(raw.translate(_DOT_TABLE)), script).translate(_DOT_TABLE)
    parts = [p for p in text.split(_MIDDLE_DOT) if p.strip()]
    return [_han_own_name(parts[0])] if len(parts) == 1 else parts
