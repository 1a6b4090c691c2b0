"""The text of an extract file: UTF-8 (with or without BOM) or GB18030.

No detector library: the two encodings real department exports use are told
apart by whether the bytes are valid UTF-8. GB18030 is a superset of GBK and
GB2312, the usual export of Chinese government systems, so those names read
as GB18030. A file that is mostly valid UTF-8 with one bad byte is a damaged
UTF-8 file, not GBK: GB18030 would decode it into plausible nonsense.
"""
from __future__ import annotations

import codecs
from pathlib import Path

from agents.extract.problems import ExtractError

# GBK/GB2312 files are GB18030 files; reading them as GB18030 also accepts
# the characters a GBK system adds beyond GB2312.
_AS_GB18030 = {"gbk", "gb2312", "gb18030", "cp936", "euc_cn", "hz"}
# Non-ASCII characters read as valid UTF-8 before the first invalid byte
# that make the file UTF-8 (GBK text fails as UTF-8 within a character or two).
_UTF8_EVIDENCE = 4


BLOCK = 1 << 20  # bytes read at a time: the file is checked, never held whole


def detect(path: Path, where: str, encoding: str | None = None) -> str:
    """The codec the file's text is in, after checking every byte of it in
    blocks; `encoding` None tries UTF-8, then GB18030. A byte that decodes in
    neither is an ExtractError naming its row."""
    if encoding is not None:
        codec = _codec(encoding, where)
        _check(path, where, codec, codec)
        return codec
    with path.open("rb") as f:
        head = f.read(2)
    if head in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        raise ExtractError(f"{where}: row 1: UTF-16 text (Excel's 'Unicode text'); save the extract as CSV UTF-8")
    failed = _check(path, where, "utf-8-sig", None)
    if failed is None:
        return "utf-8-sig"
    _check(path, where, "gb18030", "UTF-8 nor GB18030/GBK")  # not UTF-8, so where GB18030 fails is the byte to fix
    return "gb18030"


def _check(path: Path, where: str, codec: str, what: str | None) -> int | None:
    """Decode the whole file in blocks. On the first bad byte: an ExtractError
    (`what` names the encoding tried), or, for `what` None (UTF-8 tried first),
    its offset, unless enough UTF-8 came before it to call the file damaged UTF-8."""
    decoder = codecs.getincrementaldecoder(codec)()
    offset, lines, non_ascii = 0, 0, 0
    with path.open("rb") as f:
        while True:
            block = f.read(BLOCK)
            pending = decoder.getstate()[0]
            try:
                text = decoder.decode(block, final=not block)
            except UnicodeDecodeError as e:
                start = offset - len(pending) + e.start  # into the file
                if what is None and non_ascii < _UTF8_EVIDENCE:
                    before = (pending + block)[:e.start]
                    if _non_ascii((before).decode(codec, errors="ignore")) + non_ascii < _UTF8_EVIDENCE:
                        return start
                line = lines + (pending + block)[:e.start].count(b"\n") + 1
                raise ExtractError(f"{where}: row {line}: not valid {what or 'UTF-8'} (byte {start}); "
                                   "save the extract as UTF-8 or set its encoding") from None
            if non_ascii < _UTF8_EVIDENCE:
                non_ascii += _non_ascii(text)
            if not block:
                return None
            lines += block.count(b"\n")
            offset += len(block)


def _codec(encoding: str, where: str) -> str:
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise ExtractError(f"{where}: unknown encoding {encoding!r} (e.g. utf-8, gb18030)") from None
    # A BOM is never part of the header's first column name.
    return "gb18030" if name in _AS_GB18030 else "utf-8-sig" if name == "utf-8" else name


def _non_ascii(text: str) -> int:
    return len(text) - len(text.encode("ascii", "ignore"))
