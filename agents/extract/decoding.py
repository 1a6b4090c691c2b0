"""The text of an extract file: UTF-8 (with or without BOM) or GB18030.

No detector library: the two encodings real department exports use are told
apart by whether the bytes are valid UTF-8. GB18030 is a superset of GBK and
GB2312, the usual export of Chinese government systems, so those names read
as GB18030. A file that is mostly valid UTF-8 with one bad byte is a damaged
UTF-8 file, not GBK: GB18030 would decode it into plausible nonsense.
"""
from __future__ import annotations

import codecs

from agents.extract.problems import ExtractError

# GBK/GB2312 files are GB18030 files; reading them as GB18030 also accepts
# the characters a GBK system adds beyond GB2312.
_AS_GB18030 = {"gbk", "gb2312", "gb18030", "cp936", "euc_cn", "hz"}
# Non-ASCII characters read as valid UTF-8 before the first invalid byte
# that make the file UTF-8 (GBK text fails as UTF-8 within a character or two).
_UTF8_EVIDENCE = 4


def decode(raw: bytes, where: str, encoding: str | None = None) -> str:
    """The file's text; `encoding` None tries UTF-8, then GB18030."""
    if encoding is not None:
        return _decode_as(raw, where, _codec(encoding, where))
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as utf8:
        if raw[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
            raise ExtractError(f"{where}: row 1: UTF-16 text (Excel's 'Unicode text'); "
                               "save the extract as CSV UTF-8") from None
        if _looks_utf8(raw[:utf8.start]):
            raise _undecodable(raw, where, utf8, "UTF-8") from None
        try:
            return raw.decode("gb18030")
        except UnicodeDecodeError as gb:  # not UTF-8, so where GB18030 fails is the byte to fix
            raise _undecodable(raw, where, gb, "UTF-8 nor GB18030/GBK") from None


def _codec(encoding: str, where: str) -> str:
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise ExtractError(f"{where}: unknown encoding {encoding!r} (e.g. utf-8, gb18030)") from None
    # A BOM is never part of the header's first column name.
    return "gb18030" if name in _AS_GB18030 else "utf-8-sig" if name == "utf-8" else name


def _decode_as(raw: bytes, where: str, codec: str) -> str:
    try:
        return raw.decode(codec)
    except UnicodeDecodeError as e:
        raise _undecodable(raw, where, e, codec) from None


def _looks_utf8(prefix: bytes) -> bool:
    text = prefix.decode("utf-8-sig", errors="ignore")
    return sum(not ch.isascii() for ch in text) >= _UTF8_EVIDENCE


def _undecodable(raw: bytes, where: str, e: UnicodeDecodeError, what: str) -> ExtractError:
    line = raw[:e.start].count(b"\n") + 1
    return ExtractError(f"{where}: row {line}: not valid {what} (byte {e.start}); "
                        "save the extract as UTF-8 or set its encoding")
