"""Read a department extract (CSV, .xlsx, Parquet or SQL) into a frame of strings.

Every problem is reported with the file, the row (1-based line in the file,
header = line 1; a sheet's row number) and the field, every bad row of a
file at once, and nothing is sent when the extract is bad: the coordinator
never holds half of a broken extract.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from agents.extract.cells import frame_text
from agents.extract.csvfile import parse_csv
from agents.extract.decoding import decode
from agents.extract.problems import ExtractError, Problems
from agents.extract.values import read_values
from fedlink.schema import DEPARTMENT_COLUMNS, IDENTITY_COLUMNS

__all__ = ["ExtractError", "SUFFIXES", "read_extract", "required_columns"]

SUFFIXES = (".csv", ".xlsx", ".parquet")
# A workbook's first bytes (a zip archive), whatever the file is called.
_ZIP_MAGIC = b"PK\x03\x04"


def required_columns(department: str, identity: Sequence[str] = IDENTITY_COLUMNS[1:]) -> tuple[str, ...]:
    return ("record_id",) + tuple(c for c in dict.fromkeys(identity) if c != "record_id") + \
        DEPARTMENT_COLUMNS[department]


def read_extract(source: Path | str, department: str, columns: dict[str, str] | None = None,
                 sql: dict[str, str] | None = None,
                 identity: Sequence[str] | None = IDENTITY_COLUMNS[1:],
                 encoding: str | None = None, sheet: str | None = None) -> pd.DataFrame:
    """The extract with the schema's column names, all values as stripped strings
    ('' = blank), indexed by line. `columns` maps schema column -> column in the file.

    `identity` names the identity columns that must be there (a project's
    schema reads its own, `fedlink.schema.schema_columns`); None keeps every
    column of the file after record_id and the department's (a worklist
    shows caseworkers the department's whole row). `encoding` is a CSV's
    (None: UTF-8, else GB18030/GBK); `sheet` a workbook's (None: the first).
    Values real systems write (Excel serial dates, 1,234, 是/否) are read
    into plain forms (agents/extract/values.py)."""
    if source == "sql":
        frame = _read_sql(sql or {})
        where = f"SQL query on {(sql or {}).get('url', '?').split('@')[-1]}"
    else:
        where = str(source)
        frame = _read_file(Path(source), encoding, sheet)
    repeated = sorted(set(frame.columns[frame.columns.duplicated()]))
    if repeated:
        raise ExtractError(f"{where}: the header repeats column(s) {', '.join(map(str, repeated))}")
    mapping = dict(columns or {})
    frame = frame.rename(columns={v: k for k, v in mapping.items()})
    if identity is None:
        identity = [c for c in frame.columns if c not in required_columns(department, ())]
    wanted = required_columns(department, identity)
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise ExtractError(f"{where}: missing column(s) {', '.join(missing)} for department {department}"
                           + (f" (mapped: {mapping})" if mapping else ""))
    frame = frame[list(wanted)].astype(str).apply(lambda s: s.str.strip())
    if frame.index.name != "line":  # Parquet/SQL: number rows as a file would, header = 1
        frame.index = pd.RangeIndex(2, len(frame) + 2, name="line")
    _check_record_ids(frame, where)
    return read_values(frame)


def _read_file(path: Path, encoding: str | None, sheet: str | None) -> pd.DataFrame:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ExtractError(f"{path}: extracts are {', '.join(SUFFIXES)} files (or extract = 'sql'); "
                           f"{suffix or 'no suffix'} is not one")
    if not path.is_file():
        raise ExtractError(f"{path}: no such extract file")
    if suffix == ".xlsx":
        from agents.extract.xlsx import read_xlsx
        return read_xlsx(path, sheet)
    if suffix == ".parquet":
        return _read_parquet(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ExtractError(f"{path}: cannot be read ({e.strerror})") from None
    if raw.startswith(_ZIP_MAGIC):
        raise ExtractError(f"{path}: this is an Excel workbook, not CSV text; name it .xlsx")
    return parse_csv(decode(raw, str(path), encoding), str(path))


def _check_record_ids(frame: pd.DataFrame, where: str) -> None:
    problems = Problems(where)
    ids = frame["record_id"]
    first_line = pd.Series(ids.index, index=ids.index).groupby(ids.to_numpy()).transform("min")
    for line in ids.index[(ids == "") | (first_line != ids.index)]:
        if ids[line] == "":
            problems.add(line, "field record_id is blank")
        else:
            problems.add(line, f"field record_id repeats the value of row {first_line[line]}; "
                               "record_id must be unique in the extract")
    problems.raise_any()


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return frame_text(pd.read_parquet(path))
    except ImportError:
        raise ExtractError(f"{path}: reading Parquet needs pyarrow: pip install 'fedlink[agent]'") from None
    except (OSError, ValueError) as e:
        raise ExtractError(f"{path}: not a readable Parquet file ({e})") from None


def _read_sql(sql: dict[str, str]) -> pd.DataFrame:
    if not sql.get("url") or not sql.get("query"):
        raise ExtractError("extract = 'sql' needs [sql] url and query")
    from sqlalchemy import create_engine, text

    engine = create_engine(sql["url"])
    with engine.connect() as conn:
        return frame_text(pd.read_sql(text(sql["query"]), conn))
