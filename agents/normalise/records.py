"""Extract rows to their encoding features: every field through its normaliser, blanks
filled from a valid resident ID.

Values repeat across records (names, birth dates, sexes, villages), so a column
is normalised once per distinct value and the results mapped back.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from functools import partial

import pandas as pd
from pandas.api.types import infer_dtype

from agents.normalise.addresses import normalise_address
from agents.normalise.dates import normalise_date
from agents.normalise.fields import normalise_digits, normalise_phone, normalise_sex, normalise_text
from agents.normalise.names import name_pinyin, normalise_name
from agents.normalise.permits import document_region, normalise_permit
from agents.normalise.pinyin_keys import name_phonetic, name_syllables
from agents.normalise.resident_ids import ResidentId, parse_resident_ids
from agents.normalise.unicode_forms import DEFAULT_SCRIPT
from fedlink.schema import BUILTIN_FEATURES


def _text(value: object) -> str:
    # pandas hands over None, NaN or numbers for blank or numeric cells.
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value != value:  # NaN
        return ""
    return str(value)


_NORMALISERS = {
    "name": normalise_name,
    "pinyin": name_pinyin,
    "sex": normalise_sex,
    "date": normalise_date,
    "address": normalise_address,
    "phone": normalise_phone,
    "text": normalise_text,
    "digits": normalise_digits,
    "syllables": name_syllables,
    "phonetic": name_phonetic,
    "permit": normalise_permit,
    "document_region": document_region,
}
# The normalisers that read Chinese characters, which take the register's script.
_SCRIPTED = ("name", "pinyin", "address", "syllables", "phonetic")
_BUILTIN = tuple((name, kind, column) for name, (kind, column) in BUILTIN_FEATURES.items())

Rows = pd.DataFrame | Mapping[str, Sequence[object]]


def raw_column(rows: Rows, column: str, n: int) -> list[str]:
    """The text of extract column(s) `column` for each row; "a+b" reads columns a and b
    joined by a space, so a value recorded in the other column (swapped address lines)
    still agrees. A column the rows lack is blank."""
    parts = [rows[c] if c in rows else [None] * n for c in column.split("+")]
    if len(parts) == 1:
        # An extract is all strings already (agents.extract); the check runs in C.
        if isinstance(parts[0], pd.Series) and infer_dtype(parts[0], skipna=False) == "string":
            return parts[0].tolist()
        return per_distinct(_text, list(parts[0]))
    return [" ".join(t for t in map(_text, vs) if t) for vs in zip(*parts)]


def per_distinct(fn, values: Sequence) -> list:
    """fn of each value, computed once per distinct value."""
    out = {v: fn(v) for v in dict.fromkeys(values)}
    return [out[v] for v in values]


def feature_columns(rows: Rows, fields: Iterable[tuple[str, str, str]],
                    script: str = DEFAULT_SCRIPT) -> dict[str, list[str]]:
    """The encoding features of extract rows (a frame, or a list of values per column)
    for (name, kind, column) fields: one list of values per field name. `script` is
    the OpenCC conversion the register's traditional characters need (t2s, hk2s, tw2s).

    Sex and birth date left blank are filled from a resident ID when the ID
    is valid. A declared value that disagrees with the ID is kept: the ID may
    be someone else's mistyped number, and the filter carries the ID
    separately, so both pieces of evidence reach the matcher.
    """
    fields = tuple(fields)
    n = len(rows) if isinstance(rows, pd.DataFrame) else len(next(iter(rows.values()), ()))
    raw = {column: raw_column(rows, column, n) for _, _, column in fields}
    ids = {column: parse_resident_ids(raw[column]) for _, kind, column in fields if kind == "resident_id"}
    out = {name: [r.value for r in ids[column]] if kind == "resident_id"
           else per_distinct(_normaliser(kind, script), raw[column]) for name, kind, column in fields}
    fill = [(name, kind) for name, kind, _ in fields if kind in ("sex", "date")]
    if fill and ids:
        rid = [next((r for r in candidates if r.valid), None) for candidates in zip(*ids.values())]
        for name, kind in fill:
            out[name] = [v or _from_id(r, kind) for v, r in zip(out[name], rid)]
    return out


def _normaliser(kind: str, script: str):
    fn = _NORMALISERS[kind]
    return partial(fn, script=script) if kind in _SCRIPTED and script != DEFAULT_SCRIPT else fn


def _from_id(rid: ResidentId | None, kind: str) -> str:
    if rid is None:
        return ""
    return rid.sex if kind == "sex" else rid.birth_date


def record_features(row: Mapping[str, object], fields: Iterable[tuple[str, str, str]]) -> dict[str, str]:
    """The encoding features of one extract row (feature_columns of one row)."""
    fields = tuple(fields)
    columns = feature_columns({c: [row.get(c)] for _, _, column in fields for c in column.split("+")}, fields)
    return {name: values[0] for name, values in columns.items()}


def normalise_record(row: Mapping[str, str]) -> dict[str, str]:
    """The built-in features (fedlink.schema.FEATURES) of a standard extract row."""
    return record_features(row, _BUILTIN)
