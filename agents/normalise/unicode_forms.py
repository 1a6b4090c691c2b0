"""Unicode forms every normaliser starts from: NFKC, and Chinese text in simplified script."""
from __future__ import annotations

import unicodedata
from functools import lru_cache

import opencc

from fedlink.schema import DEFAULT_SCRIPT, SCRIPTS

# Variant characters OpenCC leaves as they are because both forms are in
# simplified use, but which registers write interchangeably in names: the
# first is what the surname or given-name character is standardised to
# (《通用规范汉字表》's correspondences).
_NAME_VARIANTS = str.maketrans({
    "甯": "宁", "囯": "国", "峯": "峰", "堃": "坤", "昇": "升", "喆": "哲", "綉": "绣", "姫": "姬",
})


def nfkc(text: str) -> str:
    # Full-width digits/letters, compatibility ideographs and half-width
    # katakana dots all become their ordinary forms. ASCII is its own NFKC.
    if text.isascii():
        return text
    return unicodedata.normalize("NFKC", text)


@lru_cache(maxsize=len(SCRIPTS))
def _converter(script: str) -> opencc.OpenCC:
    if script not in SCRIPTS:
        raise ValueError(f"script {script!r} is not one of {', '.join(SCRIPTS)}")
    return opencc.OpenCC(script)


def simplified(text: str, script: str = DEFAULT_SCRIPT) -> str:
    """`text` in simplified characters (OpenCC `script`), name variants folded; ASCII as is."""
    if text.isascii():
        return text
    return _converter(script).convert(text).translate(_NAME_VARIANTS)
