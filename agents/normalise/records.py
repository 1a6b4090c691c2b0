"""One extract row to its encoding features: every field through its normaliser, blanks
filled from a valid resident ID."""
from __future__ import annotations

from collections.abc import Iterable, Mapping

from agents.normalise.addresses import normalise_address
from agents.normalise.dates import normalise_date
from agents.normalise.fields import normalise_digits, normalise_phone, normalise_sex, normalise_text
from agents.normalise.names import name_pinyin, normalise_name
from agents.normalise.resident_ids import parse_resident_id
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
