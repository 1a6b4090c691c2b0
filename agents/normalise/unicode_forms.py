"""Unicode forms every normaliser starts from."""
from __future__ import annotations

import unicodedata


def nfkc(text: str) -> str:
    # Full-width digits/letters, compatibility ideographs and half-width
    # katakana dots all become their ordinary forms. ASCII is its own NFKC.
    if text.isascii():
        return text
    return unicodedata.normalize("NFKC", text)
