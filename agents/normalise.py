"""Canonical identity features from one raw extract row.

Pure functions, no state beyond module-level compiled patterns and caches.
Every function takes arbitrary text and returns a str (or a ResidentId of
strs); "" means "unknown", which the encoder leaves out of the filter rather
than encoding a guess. Nothing here logs or prints a value: these are raw
identities.

The point of every rule is that two departments' renderings of the same
person come out equal (or nearly so, for the q-gram encoder), not that the
output is a faithful copy of the input.
"""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from functools import lru_cache

from pypinyin import Style, lazy_pinyin

from fedlink.schema import BUILTIN_FEATURES

__all__ = [
    "ResidentId",
    "check_char",
    "name_pinyin",
    "normalise_address",
    "normalise_date",
    "normalise_name",
    "normalise_digits",
    "normalise_phone",
    "normalise_record",
    "normalise_sex",
    "normalise_text",
    "parse_resident_id",
    "record_features",
]

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


def _nfkc(text: str) -> str:
    # Full-width digits/letters, compatibility ideographs and half-width
    # katakana dots all become their ordinary forms.
    return unicodedata.normalize("NFKC", text)


def _keep_name_char(ch: str) -> bool:
    # Letters, combining marks and digits stay; whitespace, punctuation,
    # symbols and control characters go. The middle dot is handled before.
    return ch == _MIDDLE_DOT or unicodedata.category(ch)[0] in "LMN"


def _has_cjk(text: str) -> bool:
    return _CJK_RE.search(text) is not None


# ---------------------------------------------------------------- names

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
    text = _nfkc(raw).translate(_DOT_TABLE)
    kept = "".join(ch for ch in text if _keep_name_char(ch))
    if not _has_cjk(kept):
        # A pinyin rendering carries no characters to compare; its pinyin
        # feature (name_pinyin) is what links it.
        return ""
    # Dropping a space can leave a combining mark next to a letter; compose
    # again so the result is a fixed point.
    kept = _nfkc(kept.lower())
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
    text = _nfkc(raw)
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


# ---------------------------------------------------------------- sex

# GB/T 2261.1: 1 male, 2 female; 0 (unknown) and 9 (unstated) fall to "".
_SEX = {
    "m": "M", "male": "M", "男": "M", "男性": "M", "1": "M",
    "f": "F", "female": "F", "女": "F", "女性": "F", "2": "F",
}


def normalise_sex(raw: str) -> str:
    """"M", "F" or "" (blank, unknown or unreadable)."""
    if not raw:
        return ""
    return _SEX.get(_nfkc(raw).strip().lower(), "")


# ---------------------------------------------------------------- dates

# One pattern for every separator form: 1985-03-07, 1985/3/7, 1985.3.7,
# 1985年3月7日; a trailing time (spreadsheet exports add " 00:00:00") is
# tolerated and dropped.
_DATE_SEP_RE = re.compile(
    r"(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*[日号]?"
    r"(?:[\sT]+\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?"
)
_DATE_COMPACT_RE = re.compile(r"(\d{4})(\d{2})(\d{2})")
_MIN_YEAR, _MAX_YEAR = 1900, 2100


def _iso_date(year: int, month: int, day: int) -> str:
    # date() rejects Feb 30, month 13 and so on; the year range keeps out
    # 0001-01-01 placeholders and typo'd centuries.
    if not _MIN_YEAR <= year <= _MAX_YEAR:
        return ""
    try:
        return date(year, month, day).isoformat()
    except ValueError:
        return ""


def normalise_date(raw: str) -> str:
    """ISO "YYYY-MM-DD", or "" if blank, unreadable, impossible or outside 1900..2100."""
    if not raw:
        return ""
    return _normalise_date_cached(raw)


@lru_cache(maxsize=1 << 17)
def _normalise_date_cached(raw: str) -> str:
    text = _nfkc(raw).strip()
    match = _DATE_SEP_RE.fullmatch(text) or _DATE_COMPACT_RE.fullmatch(text)
    if match is None:
        return ""
    year, month, day = (int(g) for g in match.groups())
    return _iso_date(year, month, day)


# ---------------------------------------------------------------- resident ID

@dataclass(frozen=True)
class ResidentId:
    value: str       # canonical 18-char upper-case ID ("" if unusable), 15-digit converted to 18
    valid: bool      # check character correct (ISO 7064 MOD 11-2) and birth date plausible
    birth_date: str  # ISO YYYY-MM-DD taken from the ID, "" if none
    sex: str         # "M"/"F" from the sequence digit (odd = male), "" if none


_UNUSABLE_ID = ResidentId("", False, "", "")
# GB 11643-1999 weights: 2**(17 - i) mod 11 for positions i = 0..16.
_ID_WEIGHTS = tuple(pow(2, 17 - i, 11) for i in range(17))
_ID_CHECK = "10X98765432"
_ID18_RE = re.compile(r"[0-9]{17}[0-9X]")
_ID15_RE = re.compile(r"[0-9]{15}")
_ID_LOOSE_RE = re.compile(r"[0-9X]{17,18}")
_DIGITS17_RE = re.compile(r"[0-9]{17}")
_ID_STRIP_RE = re.compile(r"[\s\-]+")
# A birth date in the future is a typo; fixed at import, which is fine for a
# process that does not run across years.
_TODAY = date.today().isoformat()


def check_char(first17: str) -> str:
    """ISO 7064 MOD 11-2 check character ("0".."9" or "X") of 17 digits; "" if not 17 ASCII digits."""
    if not isinstance(first17, str) or _DIGITS17_RE.fullmatch(first17) is None:
        return ""
    total = sum(int(d) * w for d, w in zip(first17, _ID_WEIGHTS))
    return _ID_CHECK[total % 11]


def _id_birth_date(yyyymmdd: str) -> str:
    if not yyyymmdd.isdigit() or not yyyymmdd.isascii() or len(yyyymmdd) != 8:
        return ""
    iso = _iso_date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:]))
    return iso if iso and iso <= _TODAY else ""


def _id_sex(seq_digit: str) -> str:
    if not seq_digit.isdigit() or not seq_digit.isascii():
        return ""
    return "M" if int(seq_digit) % 2 else "F"


def parse_resident_id(raw: str) -> ResidentId:
    """Parse a resident ID (GB 11643-1999) in any of the forms seen in extracts.

    Whitespace and hyphens are removed, NFKC applied, x upper-cased.
    - 18 characters, 17 digits then a digit or X: value is the ID; valid if
      the check character is right and the birth date is a real date in
      1900..today.
    - 15 digits (legacy): "19" is inserted before the YYMMDD birth date and
      the check character computed; valid if the birth date is real.
    - anything else that is 17-18 characters of [0-9X] (a dropped digit, an
      X in the wrong place): value is kept as is, valid=False, so that one
      wrong digit still shares most q-grams with the right ID.
    - otherwise value "" (unusable).
    birth_date and sex are read whenever the embedded date is real, even for
    an invalid ID; callers that fill blanks from the ID use only valid ones.
    """
    if not raw:
        return _UNUSABLE_ID
    return _parse_resident_id_cached(raw)


@lru_cache(maxsize=1 << 12)
def _parse_resident_id_cached(raw: str) -> ResidentId:
    # Small cache: IDs are nearly all unique, but blank-like placeholders and
    # repeated test values are not.
    text = _ID_STRIP_RE.sub("", _nfkc(raw)).upper()
    if _ID18_RE.fullmatch(text):
        birth = _id_birth_date(text[6:14])
        sex = _id_sex(text[16]) if birth else ""
        valid = bool(birth) and check_char(text[:17]) == text[17]
        return ResidentId(text, valid, birth, sex)
    if _ID15_RE.fullmatch(text):
        # 15-digit IDs were issued before 2000, to people born in the 1900s.
        first17 = text[:6] + "19" + text[6:]
        birth = _id_birth_date(first17[6:14])
        sex = _id_sex(first17[16]) if birth else ""
        return ResidentId(first17 + check_char(first17), bool(birth), birth, sex)
    if _ID_LOOSE_RE.fullmatch(text):
        birth = _id_birth_date(text[6:14])
        sex = _id_sex(text[16]) if birth and len(text) > 16 else ""
        return ResidentId(text, False, birth, sex)
    return _UNUSABLE_ID


# ---------------------------------------------------------------- address

# Administrative prefixes are stripped level by level from the start, each
# level optional, so "广东省广州市天河区体育西路12号", "广州市天河区体育西路12号",
# "天河区体育西路12号" and "体育西路12号" all come out "体育西路12号".
# Province: a named province + 省, an autonomous region, or a municipality.
_PROVINCE = (
    r"(?:(?:河北|山西|辽宁|吉林|黑龙江|江苏|浙江|安徽|福建|江西|山东|河南|湖北|湖南|广东|"
    r"海南|四川|贵州|云南|陕西|甘肃|青海|台湾)省"
    r"|内蒙古自治区|广西壮族自治区|西藏自治区|宁夏回族自治区|新疆维吾尔自治区"
    r"|(?:北京|天津|上海|重庆)市|(?:香港|澳门)特别行政区)"
)
_HAN = "[\u4e00-\u9fff]"
# Prefecture level: short name + 市/地区/盟, or a longer 自治州 name. 市 is not
# taken when followed by 场 (市场, a market) or preceded by 超 (超市).
_CITY = rf"(?:{_HAN}{{1,8}}?自治州|{_HAN}{{1,5}}?(?:地区|盟)|{_HAN}{{1,5}}?(?<!超)市(?!场))"
# County level: short name + 区/县/市/旗, or a longer 自治县/自治旗 name. The
# lookarounds keep residential and street words that end in the same
# characters (小区, 社区, 园区, 校区, 景区, 街区, 红旗路, 市场) from being
# mistaken for a district.
_COUNTY = (
    rf"(?:{_HAN}{{1,8}}?自治[县旗]"
    rf"|{_HAN}{{1,4}}?(?<![小社园校景街厂])区"
    rf"|{_HAN}{{1,4}}?县"
    rf"|{_HAN}{{2,5}}?旗(?![路街道巷])"
    rf"|{_HAN}{{1,4}}?(?<!超)市(?!场))"
)
_ADMIN_PREFIX_RE = re.compile(rf"(?:{_PROVINCE})?(?:{_CITY})?(?:{_COUNTY})?")
_ADDRESS_DROP_RE = re.compile(r"[\W_]+")


def normalise_address(raw: str) -> str:
    """The address with its administrative prefix removed, for q-gram comparison.

    NFKC (full-width digits and letters to half-width), lower-case, all
    whitespace and punctuation removed; then an optional province (or
    autonomous region, or municipality), an optional prefecture (市, 地区,
    盟, 自治州) and an optional county-level unit (区, 县, 市, 旗, 自治县) are
    stripped from the start, in that order, each by a short bounded pattern.

    Why level by level and not "after the last 省/市/区/县 in the first 12
    characters": the window cut also cuts inside the street part (小区,
    新区大道) at a position that depends on how long the stripped prefix
    was, so the same address with and without its province would come out
    different. Bounded names per level cut only real admin prefixes in
    practice, and cut the same thing whether or not the higher levels are
    present. Chinese numerals are not converted, town/street levels (镇, 乡,
    街道) are kept, and an admin name written without its suffix
    ("广州天河体育西路") is not recognised.
    If stripping would leave nothing, the unstripped form is returned.
    """
    if not raw:
        return ""
    text = _ADDRESS_DROP_RE.sub("", _nfkc(raw)).lower()
    stripped = text[_ADMIN_PREFIX_RE.match(text).end():]
    return stripped or text


# ---------------------------------------------------------------- phone

_NON_DIGIT_RE = re.compile(r"[^0-9]+")
# Several numbers in one cell ("138..., 139...") are common; the first is used.
_PHONE_SPLIT_RE = re.compile(r"[,;/、，；|]|\s{2,}|或")
_MOBILE_RE = re.compile(r"1[3-9]\d{9}")


def normalise_phone(raw: str) -> str:
    """Digits only, the first number of a cell; +86/0086/86 dropped before an
    11-digit mobile; "" if fewer than 7 digits remain."""
    if not raw:
        return ""
    text = _nfkc(raw)
    for part in _PHONE_SPLIT_RE.split(text):
        digits = _NON_DIGIT_RE.sub("", part)
        if digits:
            break
    else:
        return ""
    if len(digits) == 13 and digits.startswith("86") and _MOBILE_RE.fullmatch(digits[2:]):
        digits = digits[2:]
    elif len(digits) == 15 and digits.startswith("0086") and _MOBILE_RE.fullmatch(digits[4:]):
        digits = digits[4:]
    return digits if len(digits) >= 7 else ""


# ---------------------------------------------------------------- Latin text and digits

_NOT_WORD_RE = re.compile(r"[^0-9a-z]+")
_DIGIT_DROP_RE = re.compile(r"[^0-9]+")


def normalise_text(raw: str) -> str:
    """Free text in Latin script (names, street names, places): accents
    dropped, lower case, letters and digits only.

    Spaces go too: registers split and join words at will ("sherlockstreet",
    "rosett a village", "Mary Ann" / "Maryann"), and the q-grams of the
    joined form still carry the word order. "O'Brien" and "St. Kilda" come
    out "obrien" and "stkilda".
    """
    if not raw:
        return ""
    decomposed = unicodedata.normalize("NFKD", raw.lower())
    ascii_only = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _NOT_WORD_RE.sub("", ascii_only)


def normalise_digits(raw: str) -> str:
    """The digits of a number written in any form (full-width, spaced,
    hyphenated, a spreadsheet's "4223.0" is read as 4223); "" if none."""
    if not raw:
        return ""
    text = _nfkc(raw).strip()
    if text.endswith(".0"):
        text = text[:-2]
    return _DIGIT_DROP_RE.sub("", text)


# ---------------------------------------------------------------- record

def _text(value: object) -> str:
    # pandas hands over None, NaN or numbers for blank or numeric cells.
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value != value:  # NaN
        return ""
    return str(value)


def _joined(row: Mapping[str, str], column: str) -> str:
    # "address_1+address_2": a field read from several columns, joined, so
    # a value recorded in the other column (swapped address lines) still agrees.
    return " ".join(v for v in (_text(row.get(c)) for c in column.split("+")) if v)


_NORMALISERS = {
    "name": normalise_name,
    "pinyin": name_pinyin,
    "sex": normalise_sex,
    "date": normalise_date,
    "resident_id": lambda raw: parse_resident_id(raw).value,
    "address": normalise_address,
    "phone": normalise_phone,
    "text": normalise_text,
    "digits": normalise_digits,
}
_BUILTIN = tuple((name, kind, column) for name, (kind, column) in BUILTIN_FEATURES.items())


def record_features(row: Mapping[str, str], fields: Iterable[tuple[str, str, str]]) -> dict[str, str]:
    """The encoding features of one extract row for (name, kind, column) fields;
    a column "a+b" reads columns a and b joined by a space.

    Sex and birth date left blank are filled from a resident ID when the ID
    is valid. A declared value that disagrees with the ID is kept: the ID may
    be someone else's mistyped number, and the filter carries the ID
    separately, so both pieces of evidence reach the matcher.
    """
    fields = tuple(fields)
    out = {name: _NORMALISERS[kind](_joined(row, column)) for name, kind, column in fields}
    ids = (parse_resident_id(_joined(row, column)) for _, kind, column in fields if kind == "resident_id")
    rid = next((r for r in ids if r.valid), None)
    if rid is not None:
        for name, kind, _ in fields:
            if kind in ("sex", "date") and not out[name]:
                out[name] = rid.sex if kind == "sex" else rid.birth_date
    return out


def normalise_record(row: Mapping[str, str]) -> dict[str, str]:
    """The built-in features (fedlink.schema.FEATURES) of a standard extract row."""
    return record_features(row, _BUILTIN)
