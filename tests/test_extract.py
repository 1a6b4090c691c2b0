"""Department files as real systems write them, read honestly: GBK and BOM
text, workbooks, Parquet, every bad row at its physical line, Excel serial
dates, thousands separators and 是/否; and the data-quality summary of what
was read. Every file here is written by the test, the way its tool writes it."""
from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pytest

from agents.extract import ExtractError, read_extract
from agents.extract.values import COLUMN_KINDS, excel_date
from agents.normalise import check_char
from agents.quality import IDENTITY_KINDS, column_kinds, summarise
from fedlink.schema import DEPARTMENT_COLUMNS, IDENTITY_COLUMNS, LinkageSchema

HEADER = list(IDENTITY_COLUMNS) + list(DEPARTMENT_COLUMNS["civil_affairs"])


def rid(first17: str) -> str:
    return first17 + check_char(first17)


def person(i: int, **values) -> dict[str, str]:
    row = {"record_id": f"R{i:03d}", "name": ["王小慧", "张伟", "李娜", "欧阳明"][i % 4], "sex": "女",
           "birth_date": "1985-03-07", "resident_id": rid(f"11010519850307{i % 1000:03d}"),
           "address": "广西壮族自治区柳州市城中区文昌路12号", "phone": "13812345678", "household_id": f"H{i}",
           "household_size": "3", "household_monthly_income": "2400", "dibao": "0", "region_code": "450202"}
    return {**row, **values}


def csv_lines(rows: list[dict[str, str]]) -> list[str]:
    """The header and one line per row: lines[k] is physical line k + 1, person k - 1."""
    return [",".join(HEADER)] + [",".join(r[c] for c in HEADER) for r in rows]


def write(path, lines: list[str], encoding: str = "utf-8"):
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode(encoding))
    return path


# -- encodings -------------------------------------------------------------------

def test_a_gbk_export_is_detected_and_an_encoding_can_be_named(tmp_path):
    rows = [person(i) for i in range(6)]
    path = write(tmp_path / "civil_affairs.csv", csv_lines(rows), "gbk")
    for encoding in (None, "gbk", "GB2312", "gb18030"):
        frame = read_extract(path, "civil_affairs", encoding=encoding)
        assert list(frame["name"]) == [r["name"] for r in rows]
        assert list(frame["address"]) == [r["address"] for r in rows]
    with pytest.raises(ExtractError, match=r"civil_affairs\.csv: row 2: not valid utf-8-sig \(byte \d+\)"):
        read_extract(path, "civil_affairs", encoding="utf-8")
    with pytest.raises(ExtractError, match=r"unknown encoding 'klingon'"):
        read_extract(path, "civil_affairs", encoding="klingon")


def test_a_utf8_bom_export_reads_its_first_column(tmp_path):
    path = write(tmp_path / "civil_affairs.csv", csv_lines([person(1)]), "utf-8-sig")
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    for encoding in (None, "utf-8"):
        assert list(read_extract(path, "civil_affairs", encoding=encoding)["record_id"]) == ["R001"]


def test_a_damaged_utf8_file_is_not_taken_for_gbk(tmp_path):
    """Bytes that are valid GBK (你) in a file that is UTF-8 up to there: decoding it all as
    GB18030 would turn every name into plausible nonsense, so the damaged row is named."""
    lines = [line.encode("utf-8") for line in csv_lines([person(i) for i in range(5)])]
    lines[3] = lines[3].replace("李娜".encode("utf-8"), "你".encode("gbk"))
    path = tmp_path / "civil_affairs.csv"
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(ExtractError, match=r"civil_affairs\.csv: row 4: not valid UTF-8 \(byte \d+\)"):
        read_extract(path, "civil_affairs")


def test_a_file_in_neither_encoding_names_the_file_and_the_row(tmp_path):
    lines = [line.encode("gbk") for line in csv_lines([person(i) for i in range(5)])]
    lines[3] = lines[3] + b"\xff"  # a byte neither UTF-8 nor GB18030 has
    path = tmp_path / "civil_affairs.csv"
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(ExtractError, match=r"civil_affairs\.csv: row 4: not valid UTF-8 nor GB18030/GBK"):
        read_extract(path, "civil_affairs")


# -- workbooks and Parquet -------------------------------------------------------

def test_an_xlsx_reads_dates_and_big_numbers_as_written(tmp_path):
    from openpyxl import Workbook

    book = Workbook()
    book.active.title = "说明"
    book.active.append(["This sheet explains the export"])
    sheet = book.create_sheet("低保")
    sheet.append(HEADER)
    first = person(1)
    sheet.append([13812345678 if c == "phone" else int(first[c]) if c == "region_code" else
                  dt.date(1985, 3, 7) if c == "birth_date" else 3.0 if c == "household_size" else
                  2400.5 if c == "household_monthly_income" else first[c] for c in HEADER])
    sheet.append([])  # a blank row is skipped, and the next keeps its sheet row number
    second = person(2)
    sheet.append([dt.datetime(1990, 12, 31, 0, 0) if c == "birth_date" else 13812345679.0 if c == "phone" else
                  second[c] for c in HEADER[:-1]])  # the last cell left empty
    path = tmp_path / "civil_affairs.xlsx"
    book.save(path)

    frame = read_extract(path, "civil_affairs", sheet="低保")
    assert list(frame.index) == [2, 4]
    assert list(frame["phone"]) == ["13812345678", "13812345679"]
    assert list(frame["birth_date"]) == ["1985-03-07", "1990-12-31"]
    assert list(frame["region_code"]) == ["450202", ""]
    assert frame.at[2, "household_size"] == "3" and frame.at[2, "household_monthly_income"] == "2400.5"
    assert frame.at[4, "name"] == second["name"]
    with pytest.raises(ExtractError, match=r"civil_affairs\.xlsx: missing column\(s\) record_id"):
        read_extract(path, "civil_affairs")  # the first sheet is the explanation
    with pytest.raises(ExtractError, match=r"no sheet 'housing'; the workbook has 说明, 低保"):
        read_extract(path, "civil_affairs", sheet="housing")
    # A workbook is never read as CSV text, whatever it is called.
    path.rename(tmp_path / "civil_affairs.csv")
    with pytest.raises(ExtractError, match=r"civil_affairs\.csv: this is an Excel workbook, not CSV text"):
        read_extract(tmp_path / "civil_affairs.csv", "civil_affairs")


def test_an_unknown_suffix_names_the_supported_ones(tmp_path):
    for name in ("civil_affairs.xls", "civil_affairs.txt", "civil_affairs"):
        (tmp_path / name).write_text("x")
        with pytest.raises(ExtractError, match=rf"{name}: extracts are \.csv, \.xlsx, \.parquet files"):
            read_extract(tmp_path / name, "civil_affairs")


def test_a_parquet_reads_integers_with_nulls_and_dates_as_written(tmp_path):
    rows = [person(i) for i in range(3)]
    frame = pd.DataFrame(rows)
    frame["phone"] = [13812345678.0, None, 13812345679.0]  # an integer column with a null is float
    frame["household_size"] = pd.array([3, None, 1], dtype="Int64")
    frame["birth_date"] = [dt.date(1985, 3, 7), dt.date(2019, 1, 2), None]
    frame["household_monthly_income"] = [2400.5, 0.0, 1234.0]
    path = tmp_path / "civil_affairs.parquet"
    frame.to_parquet(path, engine="pyarrow")

    read = read_extract(path, "civil_affairs")
    assert list(read.index) == [2, 3, 4]
    assert list(read["phone"]) == ["13812345678", "", "13812345679"]
    assert list(read["household_size"]) == ["3", "", "1"]
    assert list(read["birth_date"]) == ["1985-03-07", "2019-01-02", ""]
    assert list(read["household_monthly_income"]) == ["2400.5", "0", "1234"]
    assert list(read["name"]) == [r["name"] for r in rows]


# -- bad rows, all of them, where they are ----------------------------------------

def test_an_unclosed_quote_is_reported_where_it_opens_after_a_multiline_field(tmp_path):
    lines = csv_lines([person(i) for i in range(12)])
    # Line 3 holds an address over two physical lines (lines 3-4), quoted as CSV allows.
    lines[2] = lines[2].replace(person(2)["address"], '"文昌路12号\n3栋"')
    lines[6] = lines[6].replace(person(5)["name"], '"张伟')  # physical line 8: the quote never closes
    path = write(tmp_path / "civil_affairs.csv", lines)
    with pytest.raises(ExtractError) as e:
        read_extract(path, "civil_affairs")
    assert [p.line for p in e.value.problems] == [8]
    assert "row 8: " in str(e.value) and "is a quote left open?" in str(e.value)

    del lines[6]  # without the bad row, the multi-line record is indexed at the line it starts on
    frame = read_extract(write(path, lines), "civil_affairs")
    assert frame.at[3, "address"] == "文昌路12号\n3栋" and list(frame.index[:3]) == [2, 3, 5]


def test_a_stray_quote_inside_a_field_is_reported(tmp_path):
    lines = csv_lines([person(i) for i in range(4)])
    lines[3] = lines[3].replace("李娜", '李"娜')
    path = write(tmp_path / "civil_affairs.csv", lines)
    with pytest.raises(ExtractError, match=r"civil_affairs\.csv: row 4: a quote inside an unquoted field"):
        read_extract(path, "civil_affairs")
    # A quote doubled inside a quoted field is CSV's way of writing one.
    lines[3] = lines[3].replace('李"娜', '"李""娜"')
    assert read_extract(write(path, lines), "civil_affairs").at[4, "name"] == '李"娜'


def test_every_bad_row_is_reported_with_the_count(tmp_path):
    lines = csv_lines([person(i) for i in range(10)])
    lines[2] += ",extra"
    lines[5] = lines[5].replace(person(4)["name"], 'x"y')
    lines[8] = ",".join(lines[8].split(",")[:3])
    path = write(tmp_path / "civil_affairs.csv", lines)
    with pytest.raises(ExtractError) as e:
        read_extract(path, "civil_affairs")
    message = str(e.value)
    assert message.startswith(f"{path}: 3 bad rows:")
    assert e.value.total == 3 and [p.line for p in e.value.problems] == [3, 6, 9]
    assert "row 3: 13 fields, the header has 12" in message and "row 9: 3 fields, the header has 12" in message

    many = csv_lines([person(i) for i in range(30)])
    many[1:26] = [line + ",extra" for line in many[1:26]]
    with pytest.raises(ExtractError) as e:
        read_extract(write(path, many), "civil_affairs")
    assert e.value.total == 25 and len(e.value.problems) == 20
    assert "25 bad rows (the first 20 shown)" in str(e.value)


def test_every_blank_and_repeated_record_id_is_reported(tmp_path):
    rows = [person(i) for i in range(6)]
    rows[1]["record_id"] = ""
    rows[4]["record_id"] = rows[2]["record_id"]
    path = write(tmp_path / "civil_affairs.csv", csv_lines(rows))
    with pytest.raises(ExtractError) as e:
        read_extract(path, "civil_affairs")
    assert [str(p) for p in e.value.problems] == [
        "row 3: field record_id is blank",
        "row 6: field record_id repeats the value of row 4; record_id must be unique in the extract"]


def test_an_extract_read_in_small_frames_reports_the_same_rows_across_frames(tmp_path):
    """Frames of three rows: a repeat, a bad row and a multi-line record in different
    frames are reported at their lines, together, after the last frame; nothing is
    held but the frame in hand and a few bytes per record."""
    from agents.extract import Extract

    rows = [person(i) for i in range(11)]
    rows[9]["record_id"] = rows[1]["record_id"]
    lines = csv_lines(rows)
    lines[4] = lines[4].replace(person(3)["address"], '"文昌路12号\n3栋"')  # lines 5-6
    lines[7] += ",extra"  # physical line 9
    path = write(tmp_path / "civil_affairs.csv", lines)
    extract = Extract(path, "civil_affairs", rows=3)
    seen = []
    with pytest.raises(ExtractError) as e:
        for frame in extract:
            seen.append(len(frame))
    assert max(seen) == 3 and sum(seen) == 10  # every good row was read before the problems were raised
    assert [str(p) for p in e.value.problems] == [
        "row 9: 13 fields, the header has 12"]  # the file's own problems first, as a whole read does
    del lines[7]
    with pytest.raises(ExtractError) as e:
        list(Extract(write(path, lines), "civil_affairs", rows=3))
    assert [str(p) for p in e.value.problems] == [
        "row 11: field record_id repeats the value of row 3; record_id must be unique in the extract"]
    del lines[9]
    frames = list(Extract(write(path, lines), "civil_affairs", rows=3))
    assert [list(f.index) for f in frames] == [[2, 3, 4], [5, 7, 8], [9, 10, 11]]
    assert frames[1].at[5, "address"] == "文昌路12号\n3栋"


# -- values real systems write -----------------------------------------------------

def test_excel_serial_dates_thousands_separators_and_yes_no_are_read(tmp_path):
    rows = [person(1, birth_date="45124", household_monthly_income='"1,234"', dibao="是"),
            person(2, birth_date="31113", household_monthly_income="1，234.50", dibao="否"),
            person(3, birth_date="60", household_monthly_income='"12,34"', dibao="不详"),
            person(4, birth_date="19850307", household_monthly_income="2400", dibao="Y")]
    frame = read_extract(write(tmp_path / "civil_affairs.csv", csv_lines(rows)), "civil_affairs")
    assert list(frame["birth_date"]) == ["2023-07-17", "1985-03-07", "60", "19850307"]
    assert list(frame["household_monthly_income"]) == ["1234", "1234.50", "12,34", "2400"]
    assert list(frame["dibao"]) == ["1", "0", "不详", "1"]


def test_excel_serials_follow_excel_including_its_1900_leap_day():
    assert excel_date("1") == "1900-01-01" and excel_date("59") == "1900-02-28"
    assert excel_date("60") == "60"  # Excel's 1900-02-29, a day that never was
    assert excel_date("61") == "1900-03-01" and excel_date("44927") == "2023-01-01"
    assert excel_date("45124.75") == "2023-07-17" and excel_date("2958465") == "9999-12-31"
    assert excel_date("0") == "0" and excel_date("2958466") == "2958466"


def test_the_column_kinds_name_columns_of_the_contract():
    contract = set(IDENTITY_COLUMNS) | {c for cols in DEPARTMENT_COLUMNS.values() for c in cols}
    assert set(COLUMN_KINDS) <= contract and set(COLUMN_KINDS.values()) == {"date", "number", "flag"}


# -- the data-quality summary ------------------------------------------------------

def test_the_quality_summary_counts_what_the_matcher_cannot_use():
    valid = rid("45020219850307123")
    wrong = valid[:-1] + ("0" if valid[-1] != "0" else "1")
    frame = pd.DataFrame({
        "record_id": [f"R{i}" for i in range(8)],
        "name": ["王小慧", "Wang Xiaohui", "", "???", "张伟", "LI Na", "李娜", ""],
        "sex": ["女", "F", "", "?", "男", "男", "女", "女"],
        "birth_date": ["45124", "1985-03-07", "19850307", "1985/3/7", "not a date", "", "1985-02-30", ""],
        "resident_id": [valid, wrong, "", "450202850307123", "12345", valid, "", ""],
        "phone": ["13812345678"] * 7 + ["123"],
    })
    summary = summarise(frame)
    fields = {f.column: f for f in summary.fields}
    assert summary.records == 8 and list(fields) == ["name", "sex", "birth_date", "resident_id", "phone"]
    assert (fields["name"].blank, fields["name"].unreadable, fields["name"].pinyin_only) == (2, 1, 2)
    assert (fields["sex"].blank, fields["sex"].unreadable) == (1, 1)
    assert (fields["birth_date"].blank, fields["birth_date"].unreadable) == (2, 2)
    rids = fields["resident_id"]
    assert (rids.blank, rids.unreadable, rids.invalid_ids) == (3, 1, 1)  # the 15-digit old form is valid
    assert (fields["phone"].blank, fields["phone"].unreadable) == (0, 1)

    data = json.loads(json.dumps(summary.to_dict()))
    assert data["records"] == 8 and data["fields"]["resident_id"]["invalid_ids"] == 1
    assert data["fields"]["name"]["pinyin_only_share"] == 0.25
    assert all(isinstance(v, (int, float)) for f in data["fields"].values() for k, v in f.items() if k != "kind")
    text = summary.render()
    assert "8 records" in text and "resident_id: 3 blank (37.5%), 1 unreadable (12.5%), 1 invalid IDs" in text
    assert not any(value in text for value in frame.drop(columns="record_id").to_numpy().ravel() if value)


def test_the_quality_summary_reads_a_projects_own_columns():
    schema = LinkageSchema(fields=LinkageSchema().fields[:1] + (
        type(LinkageSchema().fields[0])("dob", hashes=4, kind="date"),
        type(LinkageSchema().fields[0])("street", hashes=4, kind="text", column="street_1+street_2")))
    kinds = column_kinds((f.kind, f.column) for f in schema.fields)
    assert kinds == {"name": "name", "dob": "date", "street_1": "text", "street_2": "text"}
    assert IDENTITY_KINDS["birth_date"] == "date"
    frame = pd.DataFrame({"name": ["王五"], "dob": ["45124"], "street_1": ["--"], "street_2": [""]})
    fields = {f.column: f for f in summarise(frame, kinds).fields}
    assert fields["dob"].unreadable == 0 and fields["street_1"].unreadable == 1 and fields["street_2"].blank == 1
