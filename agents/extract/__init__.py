"""Read a department extract (CSV, .xlsx, Parquet or SQL) as frames of strings, a few thousand rows at a time.

Every problem is reported with the file, the row (1-based line in the file,
header = line 1; a sheet's row number) and the field, every bad row of a
file at once, and nothing is sent when the extract is bad: the coordinator
never holds half of a broken extract.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pandas as pd

from agents.extract.cells import frame_text
from agents.extract.csvfile import csv_chunks
from agents.extract.decoding import detect
from agents.extract.problems import ExtractError
from agents.extract.record_ids import RecordIds
from agents.extract.values import read_values
from fedlink.schema import DEPARTMENT_COLUMNS, IDENTITY_COLUMNS

__all__ = ["CHUNK", "Extract", "ExtractError", "SUFFIXES", "read_extract", "required_columns"]

SUFFIXES = (".csv", ".xlsx", ".parquet")
CHUNK = 5000  # records per frame: what the agent holds of an extract at a time
# A workbook's first bytes (a zip archive), whatever the file is called.
_ZIP_MAGIC = b"PK\x03\x04"


def required_columns(department: str, identity: Sequence[str] = IDENTITY_COLUMNS[1:]) -> tuple[str, ...]:
    return ("record_id",) + tuple(c for c in dict.fromkeys(identity) if c != "record_id") + \
        DEPARTMENT_COLUMNS[department]


class Extract:
    """An extract read as it is iterated, in frames of at most `rows` records, so memory
    does not grow with the extract: each frame has the schema's column names, all
    values as stripped strings ('' = blank), indexed by line. `columns` maps schema
    column -> column in the file. The header is checked when the extract is opened;
    the rows' problems (malformed CSV, blank or repeated record_id) are raised
    together, as one ExtractError, after the last frame, so a reader that goes
    through the whole extract before sending anything sends nothing of a bad one.

    `identity` names the identity columns that must be there (a project's
    schema reads its own, `fedlink.schema.schema_columns`); None keeps every
    column of the file after record_id and the department's (a worklist
    shows caseworkers the department's whole row). `encoding` is a CSV's
    (None: UTF-8, else GB18030/GBK); `sheet` a workbook's (None: the first).
    Values real systems write (Excel serial dates, 1,234, 是/否) are read
    into plain forms (agents/extract/values.py); each frame's
    `attrs["converted"]` counts them."""

    def __init__(self, source: Path | str, department: str, columns: dict[str, str] | None = None,
                 sql: dict[str, str] | None = None, identity: Sequence[str] | None = IDENTITY_COLUMNS[1:],
                 encoding: str | None = None, sheet: str | None = None, rows: int = CHUNK):
        if source == "sql":
            self.where = f"SQL query on {(sql or {}).get('url', '?').split('@')[-1]}"
            header, self._raw = _sql_chunks(sql or {}, rows)
        else:
            self.where = str(source)
            header, self._raw = _file_chunks(Path(source), encoding, sheet, rows)
        repeated = sorted({h for h in header if header.count(h) > 1})
        if repeated:
            raise ExtractError(f"{self.where}: the header repeats column(s) {', '.join(map(str, repeated))}")
        mapping = dict(columns or {})
        self._rename = {v: k for k, v in mapping.items()}
        named = [self._rename.get(h, h) for h in header]
        if identity is None:
            identity = [c for c in named if c not in required_columns(department, ())]
        self.columns = list(required_columns(department, identity))
        missing = [c for c in self.columns if c not in named]
        if missing:
            raise ExtractError(f"{self.where}: missing column(s) {', '.join(missing)} for department {department}"
                               + (f" (mapped: {mapping})" if mapping else ""))

    def __iter__(self) -> Iterator[pd.DataFrame]:
        ids = RecordIds(self.where)
        for raw in self._raw:
            frame = raw.rename(columns=self._rename)[self.columns].astype(str).apply(lambda s: s.str.strip())
            ids.add(frame["record_id"])
            yield read_values(frame)
        ids.raise_any()


def read_extract(source: Path | str, department: str, columns: dict[str, str] | None = None,
                 sql: dict[str, str] | None = None,
                 identity: Sequence[str] | None = IDENTITY_COLUMNS[1:],
                 encoding: str | None = None, sheet: str | None = None) -> pd.DataFrame:
    """The whole extract as one frame (see Extract), for what needs it whole: a
    bench, a test. `frame.attrs["converted"]` counts the values read from another form."""
    extract = Extract(source, department, columns, sql, identity, encoding, sheet)
    frames = list(extract)
    if not frames:
        return read_values(pd.DataFrame({c: pd.Series(dtype=object) for c in extract.columns},
                                        index=pd.Index([], name="line", dtype="int64")))
    frame = pd.concat(frames) if len(frames) > 1 else frames[0]
    converted: dict[str, int] = {}
    for f in frames:
        for column, n in f.attrs["converted"].items():
            converted[column] = converted.get(column, 0) + n
    frame.attrs = {"converted": converted}
    return frame


def _file_chunks(path: Path, encoding: str | None, sheet: str | None, rows: int):
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ExtractError(f"{path}: extracts are {', '.join(SUFFIXES)} files (or extract = 'sql'); "
                           f"{suffix or 'no suffix'} is not one")
    if not path.is_file():
        raise ExtractError(f"{path}: no such extract file")
    if suffix == ".xlsx":
        from agents.extract.xlsx import xlsx_chunks
        return xlsx_chunks(path, sheet, rows)
    if suffix == ".parquet":
        return _parquet_chunks(path, rows)
    try:
        with path.open("rb") as f:
            magic = f.read(len(_ZIP_MAGIC))
        if magic == _ZIP_MAGIC:
            raise ExtractError(f"{path}: this is an Excel workbook, not CSV text; name it .xlsx")
        return csv_chunks(path, detect(path, str(path), encoding), str(path), rows)
    except OSError as e:
        raise ExtractError(f"{path}: cannot be read ({e.strerror})") from None


def _numbered(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """Parquet/SQL: rows numbered as a file's would be, header = 1."""
    line = 2
    for frame in frames:
        frame.index = pd.RangeIndex(line, line + len(frame), name="line")
        line += len(frame)
        yield frame


def _parquet_chunks(path: Path, rows: int):
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ExtractError(f"{path}: reading Parquet needs pyarrow: pip install 'fedlink[agent]'") from None
    try:
        file = pq.ParquetFile(path)
    except (OSError, ValueError) as e:
        raise ExtractError(f"{path}: not a readable Parquet file ({e})") from None

    def frames():
        try:
            for batch in file.iter_batches(batch_size=rows):
                yield frame_text(batch.to_pandas())
        except (OSError, ValueError) as e:
            raise ExtractError(f"{path}: not a readable Parquet file ({e})") from None

    return list(file.schema_arrow.names), _numbered(frames())


def _sql_chunks(sql: dict[str, str], rows: int):
    if not sql.get("url") or not sql.get("query"):
        raise ExtractError("extract = 'sql' needs [sql] url and query")
    from sqlalchemy import create_engine, text

    conn = create_engine(sql["url"]).connect()
    # Streamed from the server in partitions, not fetched whole.
    result = conn.execution_options(stream_results=True).execute(text(sql["query"]))
    header = list(result.keys())

    def frames():
        with conn:
            for part in result.partitions(rows):
                # Object columns: an ID stored as a number reads as its digits (agents/extract/cells.py).
                yield frame_text(pd.DataFrame([tuple(r) for r in part], columns=header, dtype=object))

    return header, _numbered(frames())
