"""A data-quality summary of an extract: what the matcher will not be able to use.

Counts only, never values, so the summary may be printed, logged and sent to
the coordinator. A value is unreadable when it is not blank but normalises to
nothing (agents/normalise.py decides, through its own functions): a date in
no known form, a name with neither characters nor letters, a phone of three
digits. A resident ID of the right shape whose check character (ISO 7064
MOD 11-2) or birth date is wrong is counted apart, as invalid: it still
links on most of its digits, but gives no age and vouches for nothing.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

import pandas as pd

from agents.extract.values import excel_date
from agents.normalise import feature_columns, name_pinyin, normalise_name, parse_resident_ids
from fedlink.schema import BUILTIN_FEATURES


def column_kinds(features: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Column -> kind from (kind, column) pairs; the first feature read from a column
    gives its kind ("name" before "name_pinyin"), a field read from "a+b" checks both."""
    kinds: dict[str, str] = {}
    for kind, column in features:
        for part in column.split("+"):
            kinds.setdefault(part, kind)
    return kinds


# The extract contract's identity columns; a project's are
# column_kinds((f.kind, f.column) for f in project.schema.fields).
IDENTITY_KINDS = column_kinds(BUILTIN_FEATURES.values())


@dataclass(frozen=True)
class FieldQuality:
    column: str
    kind: str
    blank: int
    unreadable: int
    invalid_ids: int = 0  # resident_id columns: right shape, wrong check character or birth date
    pinyin_only: int = 0  # name columns: written in letters only, no characters to compare
    converted: int = 0    # read from another written form: an Excel serial date, 1,234, 是/否


@dataclass(frozen=True)
class QualitySummary:
    records: int
    fields: tuple[FieldQuality, ...]

    def to_dict(self) -> dict:
        """JSON-able: counts as ints and, for each, its share of the records as a float."""
        out = {}
        for f in self.fields:
            counts = {k: v for k, v in asdict(f).items() if k not in ("column", "kind")}
            out[f.column] = {"kind": f.kind, **counts,
                             **{f"{k}_share": self._share(v) for k, v in counts.items()}}
        return {"records": self.records, "fields": out}

    def render(self) -> str:
        """A few lines for an operator: one per field, naming only what is not clean."""
        if not self.records:
            return "0 records: the extract holds no rows"
        lines = [f"{self.records} records"]
        for f in self.fields:
            parts = [f"{n} {label} ({self._share(n):.1%})" for n, label in
                     ((f.blank, "blank"), (f.unreadable, "unreadable"), (f.invalid_ids, "invalid IDs"),
                      (f.pinyin_only, "pinyin only"), (f.converted, "converted from another form")) if n]
            lines.append(f"  {f.column}: {', '.join(parts) or 'all readable'}")
        return "\n".join(lines)

    def _share(self, count: int) -> float:
        return round(count / self.records, 4) if self.records else 0.0


class QualityTally:
    """The summary built frame by frame as an extract is read (agents.extract.Extract):
    counts per column, so it needs no more of the extract than the frame in hand."""

    def __init__(self, kinds: Mapping[str, str] = IDENTITY_KINDS):
        self.kinds = dict(kinds)
        self.records = 0
        self._counts: dict[str, dict[str, int]] = {}

    def add(self, frame: pd.DataFrame) -> None:
        self.records += len(frame)
        converted = frame.attrs.get("converted", {})
        for column, kind in self.kinds.items():
            if column in frame:
                tally = self._counts.setdefault(column, dict.fromkeys(_COUNTS, 0))
                for what, n in _field(frame[column], kind).items():
                    tally[what] += n
                tally["converted"] += converted.get(column, 0)

    def summary(self) -> QualitySummary:
        return QualitySummary(self.records, tuple(FieldQuality(column, self.kinds[column], **counts)
                                                  for column, counts in self._counts.items()))


def summarise(frame: pd.DataFrame, kinds: Mapping[str, str] = IDENTITY_KINDS) -> QualitySummary:
    """The summary of a whole extract read by agents.extract.read_extract (stripped strings, '' = blank)."""
    tally = QualityTally(kinds)
    tally.add(frame)
    return tally.summary()


_COUNTS = ("blank", "unreadable", "invalid_ids", "pinyin_only", "converted")


def _field(values: pd.Series, kind: str) -> dict[str, int]:
    # Each distinct value is judged once (registers repeat few values many times),
    # all of a frame's at once: IDs, phones and addresses hardly repeat at all.
    counts = values.value_counts()
    tally = {"blank": int(counts.get("", 0)), "unreadable": 0, "invalid_ids": 0, "pinyin_only": 0}
    known = counts[counts.index != ""]
    for judgement, n in zip(_judge(known.index.tolist(), kind), known.tolist()):
        for what in judgement:
            tally[what] += int(n)
    return tally


def _judge(values: list[str], kind: str) -> list[tuple[str, ...]]:
    """What is wrong with each (non-blank) value of a field of this kind, if anything."""
    if kind == "resident_id":
        return [("unreadable",) if not r.value else () if r.valid else ("invalid_ids",)
                for r in parse_resident_ids(values)]
    if kind == "name":
        return [() if normalise_name(v) else ("pinyin_only",) if name_pinyin(v) else ("unreadable",) for v in values]
    if kind == "date":
        values = [excel_date(v) for v in values]
    features = feature_columns({"v": values}, (("v", kind, "v"),))["v"]
    return [() if f else ("unreadable",) for f in features]
