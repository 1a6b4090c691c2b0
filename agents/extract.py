"""Read a department extract (CSV, Parquet or SQL) into a frame of strings.

Every problem is reported with the file, the row (1-based line in the file,
header = line 1) and the field, and nothing is sent when the extract is bad:
the coordinator never holds half of a broken extract.
"""
from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from fedlink.schema import DEPARTMENT_COLUMNS, IDENTITY_COLUMNS


class ExtractError(ValueError):
    pass


def required_columns(department: str, identity: Sequence[str] = IDENTITY_COLUMNS[1:]) -> tuple[str, ...]:
    return ("record_id",) + tuple(c for c in dict.fromkeys(identity) if c != "record_id") + \
        DEPARTMENT_COLUMNS[department]


def read_extract(source: Path | str, department: str, columns: dict[str, str] | None = None,
                 sql: dict[str, str] | None = None,
                 identity: Sequence[str] | None = IDENTITY_COLUMNS[1:]) -> pd.DataFrame:
    """The extract with the schema's column names, all values as stripped strings
    ('' = blank). `columns` maps schema column -> column in the file.

    `identity` names the identity columns that must be there (a project's
    schema reads its own, `fedlink.schema.schema_columns`); None keeps every
    column of the file after record_id and the department's (a worklist
    shows caseworkers the department's whole row)."""
    if source == "sql":
        frame = _read_sql(sql or {})
        where = f"SQL query on {(sql or {}).get('url', '?').split('@')[-1]}"
    else:
        path = Path(source)
        where = str(path)
        if path.suffix.lower() == ".parquet":
            frame = pd.read_parquet(path).astype("string").fillna("")
        else:
            frame = _read_csv(path)
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
    blank = frame["record_id"] == ""
    if blank.any():
        raise ExtractError(f"{where}: row {blank.idxmax()}: field record_id is blank")
    dup = frame["record_id"].duplicated(keep="first")
    if dup.any():
        line = dup.idxmax()
        first = frame.index[frame["record_id"] == frame.at[line, "record_id"]][0]
        raise ExtractError(f"{where}: row {line}: field record_id repeats the value of row {first}; "
                           "record_id must be unique in the extract")
    return frame


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ExtractError(f"{path}: no such extract file") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise ExtractError(f"{path}: row {line}: not valid UTF-8 (byte {e.start}); save the extract as UTF-8") from None
    rows = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(rows)
    except StopIteration:
        raise ExtractError(f"{path}: the file is empty (no header row)") from None
    header = [h.strip() for h in header]
    width = len(header)
    body, lines = [], []
    try:
        for row in rows:
            if not row:
                continue
            if len(row) != width:
                raise ExtractError(f"{path}: row {rows.line_num}: {len(row)} fields, the header has {width}")
            body.append(row)
            lines.append(rows.line_num)
    except csv.Error as e:
        raise ExtractError(f"{path}: row {rows.line_num}: malformed CSV: {e}") from None
    frame = pd.DataFrame(body, columns=header, dtype=str)
    frame.index = pd.Index(lines, name="line")
    return frame


def _read_sql(sql: dict[str, str]) -> pd.DataFrame:
    if not sql.get("url") or not sql.get("query"):
        raise ExtractError("extract = 'sql' needs [sql] url and query")
    from sqlalchemy import create_engine, text

    engine = create_engine(sql["url"])
    with engine.connect() as conn:
        return pd.read_sql(text(sql["query"]), conn).astype("string").fillna("")
