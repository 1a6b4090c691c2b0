"""The caseworkers' worklist: each flag of the department joined to its own
row of the extract, with the need, its urgency, its status over time and a
plain-sentence explanation, in the language of the agent's TOML. Written as
CSV (UTF-8 with a BOM, so Excel opens Chinese text) or, for an `.xlsx`
--out, as a workbook (openpyxl). The columns are documented in
docs/data-format.md, "Worklists"."""
from __future__ import annotations

import csv
import io
from pathlib import Path

import pandas as pd

from agents.extract import ExtractError
from fedlink.files import write_atomic

# Added after the department's own columns: (key, English header, Chinese header).
COLUMNS = (
    ("need", "need", "需求"),
    ("tier", "tier", "紧急程度"),
    ("status", "status", "状态"),
    ("since", "since", "首次发现"),
    ("transition_until", "transition_until", "过渡期至"),
    ("explanation", "explanation", "说明"),
    ("departments_linked", "departments_linked", "关联部门数"),
    ("match_scores", "match_scores", "匹配分数"),
    ("reasons", "reasons", "触发规则"),
    ("run_id", "run_id", "批次"),
    ("rests_on_first_seen", "rests_on_first_seen", "依据新增记录"),
    ("in_extract", "in_extract", "在当前数据中"),
)
# A flag whose record the current extract no longer holds (the run used an earlier one) is still listed,
# by its record_id, and says so instead of showing blank columns as if the row were empty.
NOT_IN_EXTRACT = {"en": "no: the record is not in the current extract (the run used an earlier one); look it up "
                        "by record_id",
                  "zh": "否：当前数据中已无此记录（本次运行用的是更早的数据），请按 record_id 查找"}
STATUS_ZH = {"new": "新发现", "continuing": "持续", "transition": "渐退过渡期", "resolved": "已解除"}
DEPARTMENT_ZH = {"population": "户籍", "civil_affairs": "民政", "medical_insurance": "医保", "human_resources": "人社",
                 "education": "教育", "housing": "住建"}


def header(own_columns: list[str], language: str) -> list[str]:
    return list(own_columns) + [zh if language == "zh" else en for _, en, zh in COLUMNS]


def flag_cells(flag, language: str) -> list:
    """One flag's added cells, in COLUMNS' order but the last (in_extract, which the extract decides)."""
    zh = language == "zh"
    scores = ("；" if zh else "; ").join(
        f"{DEPARTMENT_ZH.get(d, d) if zh else d} {s:.3f}"
        for d, s in zip(list(flag.match_departments) or [""] * len(flag.match_scores), flag.match_scores))
    return [flag.need, flag.tier, STATUS_ZH.get(flag.status, flag.status) if zh else flag.status, flag.since,
            flag.transition_until, (flag.explanation_zh or flag.explanation) if zh else flag.explanation,
            flag.departments_linked, scores.strip(),
            "; ".join(f"{r.rule}: {', '.join(r.indicators)}" for r in flag.reasons), flag.run_id,
            int(flag.rests_on_first_seen)]


def write(out: Path, columns: list[str], rows: list[tuple[str, object, pd.DataFrame]], language: str) -> None:
    """`rows`: (record_id, flag, frame) in delivery order, `frame` the rows the flag is joined to (the agent's
    copy of the upload its run used, or the current extract), indexed by record_id; `columns`: record_id first."""
    out = Path(out)
    table = [header(columns, language)]
    suffix = out.suffix.lower()
    if suffix not in (".csv", ".xlsx"):
        raise ExtractError(f"{out}: a worklist is written as .csv or .xlsx, not {suffix or 'a file without suffix'}")
    for record_id, flag, frame in rows:
        held = record_id in frame.index
        # A column the other frame lacks (the extract's columns changed since the upload) is left blank.
        own = frame.loc[record_id].reindex(columns, fill_value="").tolist() if held \
            else [record_id] + [""] * (len(columns) - 1)
        table.append(own + flag_cells(flag, language) + [("是" if language == "zh" else "yes") if held
                                                          else NOT_IN_EXTRACT[language]])
    if suffix == ".xlsx":
        data = _xlsx_bytes(table, language)
    else:
        text = io.StringIO(newline="")
        csv.writer(text).writerows(table)
        data = text.getvalue().encode("utf-8-sig")
    # Whole or not at all: the previous worklist stays until the new one is complete on disk.
    write_atomic(out, data, 0o600)


def _xlsx_bytes(table: list[list], language: str) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font

    book = Workbook()
    sheet = book.active
    sheet.title = "待核查" if language == "zh" else "worklist"
    for row in table:
        sheet.append(row)
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    sheet.freeze_panes = "A2"
    explanation = table[0].index("说明" if language == "zh" else "explanation") + 1
    for row in sheet.iter_rows(min_row=2, min_col=explanation, max_col=explanation):
        row[0].alignment = Alignment(wrap_text=True, vertical="top")
    sheet.column_dimensions[sheet.cell(1, explanation).column_letter].width = 80
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()
