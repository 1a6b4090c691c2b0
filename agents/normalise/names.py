"""Names: the Chinese-character form and the toneless pinyin of a name."""
from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from pypinyin import Style, lazy_pinyin

from agents.normalise.unicode_forms import nfkc

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
_DOT_TABLE = str.maketrans({c: _MIDDLE_DOT for c in _DOT_VARIANTS})
_DOT_RUN_RE = re.compile(f"{_MIDDLE_DOT}+")


def _keep_name_char(ch: str) -> bool:
    # Letters, combining marks and digits stay; whitespace, punctuation,
    # symbols and control characters go. The middle dot is handled before.
    return ch == _MIDDLE_DOT or unicodedata.category(ch)[0] in "LMN"


def _has_cjk(text: str) -> bool:
    return _CJK_RE.search(text) is not None


def normalise_name(raw: str) -> str:
    """The Chinese-character form of a name, "" for a pinyin-only rendering.

    NFKC; every middle-dot variant becomes U+00B7, runs of dots collapse to
    one and dots at either end go; all other whitespace and punctuation is
    removed. Latin letters mixed into a CJK name are kept, lower-cased.
    """
    if not raw:
        return ""
    return _normalise_name_cached(raw)


@lru_cache(maxsize=1 << 17)
def _normalise_name_cached(raw: str) -> str:
    text = nfkc(raw).translate(_DOT_TABLE)
    kept = "".join(ch for ch in text if _keep_name_char(ch))
    if not _has_cjk(kept):
        # A pinyin rendering carries no characters to compare; its pinyin
        # feature (name_pinyin) is what links it.
        return ""
    # Dropping a space can leave a combining mark next to a letter; compose
    # again so the result is a fixed point.
    kept = nfkc(kept.lower())
    return _DOT_RUN_RE.sub(_MIDDLE_DOT, kept).strip(_MIDDLE_DOT)


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
    return "".join(syllables)


def _cjk_run_pinyin(run: str, first: bool) -> str:
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
    return "".join(parts)


# ü in its tone-marked and plain forms, and the "u:" spelling some systems
# use for it, become "v" as pypinyin writes it.
_U_UMLAUT_RE = re.compile("u\u0308|u:")
_NOT_LOWER_LATIN_RE = re.compile("[^a-z]+")


def _latin_pinyin(text: str) -> str:
    # NFD splits a tone-marked vowel into the vowel and its combining mark;
    # ü (u + U+0308) is kept as "v" before the other marks are dropped.
    decomposed = unicodedata.normalize("NFD", text.lower())
    decomposed = _U_UMLAUT_RE.sub("v", decomposed)
    return _NOT_LOWER_LATIN_RE.sub("", decomposed)


def name_pinyin(raw: str) -> str:
    """Toneless lower-case pinyin with no separators; "" if none.

    CJK characters are read one by one with pypinyin (Style.NORMAL, ü as v),
    the name's first character (or a known compound surname) with its
    surname reading. Latin text loses case, tone marks, spaces, hyphens and
    apostrophes. Homophones agree by construction: 王小慧 and 王晓慧 both give
    "wangxiaohui", as do "WANG Xiao-hui" and "Wáng Xiǎohuì".
    """
    if not raw:
        return ""
    return _name_pinyin_cached(raw)


@lru_cache(maxsize=1 << 18)
def _name_pinyin_cached(raw: str) -> str:
    text = nfkc(raw)
    out = []
    pos = 0
    first = True
    for match in _CJK_RUN_RE.finditer(text):
        out.append(_latin_pinyin(text[pos:match.start()]))
        out.append(_cjk_run_pinyin(match.group(), first and not "".join(out)))
        first = False
        pos = match.end()
    out.append(_latin_pinyin(text[pos:]))
    return "".join(out)
