"""Behaviour of the identity normaliser that linkage quality depends on."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.normalise import (
    ResidentId,
    check_char,
    name_pinyin,
    normalise_address,
    normalise_date,
    normalise_name,
    normalise_phone,
    normalise_record,
    normalise_sex,
    parse_resident_id,
    parse_resident_ids,
)
from fedlink.schema import FEATURES

# ---------------------------------------------------------------- names


def test_homophones_give_the_same_pinyin():
    assert name_pinyin("王小慧") == name_pinyin("王晓慧") == "wangxiaohui"


@pytest.mark.parametrize("rendering", [
    "Wang Xiaohui", "WANG XIAO HUI", "wang xiaohui", "Wáng Xiǎohuì", "Wang Xiao-hui",
    " Wang  Xiaohui ", "ＷＡＮＧ　ＸＩＡＯＨＵＩ", "Wang Xiao'hui",
])
def test_pinyin_renderings_equal_the_characters_pinyin(rendering):
    assert name_pinyin(rendering) == name_pinyin("王小慧")


def test_pinyin_only_name_has_no_character_form():
    assert normalise_name("Wang Xiaohui") == ""
    assert normalise_name("王 小慧 ") == "王小慧"


def test_u_umlaut_in_every_spelling_is_u():
    spellings = ("吕布", "呂布", "Lǚ Bù", "LÜ BU", "Lv Bu", "LYU BU", "Lu: Bu", "Lu Bu")
    assert {name_pinyin(s) for s in spellings} == {"lubu"}
    assert name_pinyin("女") == name_pinyin("NYU") == "nu"
    # "yu" on its own is a syllable (于, 余), not a spelling of ü.
    assert name_pinyin("于丽") == name_pinyin("Yu Li") == "yuli"


def test_surname_reading_of_first_character():
    # pypinyin alone reads 单 as "dan"; as a surname it is "shan", as written in pinyin.
    assert name_pinyin("单田芳") == name_pinyin("Shan Tianfang") == "shantianfang"
    assert name_pinyin("曾小明") == "zengxiaoming"
    assert name_pinyin("尉迟恭") == "yuchigong"


DOT_VARIANTS = ["·", "・", "•", "‧", ".", "．", "\u00b7", "\u30fb", "\u2022", "\u2027", "\uff0e", "\uff65", "。", "∙"]


@pytest.mark.parametrize("dot", DOT_VARIANTS)
def test_minority_name_dot_variants_normalise_to_one_form(dot):
    raw = f"阿卜杜拉{dot}艾力"
    assert normalise_name(raw) == "阿卜杜拉\u00b7艾力"
    assert name_pinyin(raw) == "abudulaaili"


def test_minority_name_dot_spacing_and_doubling():
    assert normalise_name(" 阿卜杜拉 · · 艾力 ") == "阿卜杜拉·艾力"
    assert normalise_name("·阿卜杜拉·艾力·") == "阿卜杜拉·艾力"
    assert normalise_name("阿卜杜拉艾力") == "阿卜杜拉艾力"


def test_name_punctuation_removed():
    assert normalise_name("王,小慧!") == "王小慧"
    assert normalise_name("") == normalise_name(None) == ""  # type: ignore[arg-type]

# ---------------------------------------------------------------- sex


@pytest.mark.parametrize("raw,expected", [
    ("M", "M"), ("m", "M"), ("男", "M"), ("male", "M"), ("Male", "M"), ("1", "M"), (" 男 ", "M"),
    ("F", "F"), ("f", "F"), ("女", "F"), ("female", "F"), ("FEMALE", "F"), ("2", "F"),
    ("", ""), ("  ", ""), ("0", ""), ("9", ""), ("unknown", ""),
])
def test_sex_forms(raw, expected):
    assert normalise_sex(raw) == expected

# ---------------------------------------------------------------- dates


@pytest.mark.parametrize("raw", [
    "1985-03-07", "1985/3/7", "1985.3.7", "19850307", "1985年3月7日", "1985年03月07日",
    "  1985-03-07\t", "１９８５－０３－０７", "１９８５年３月７日", "1985/03/07", "1985-03-07 00:00:00",
])
def test_date_forms(raw):
    assert normalise_date(raw) == "1985-03-07"


@pytest.mark.parametrize("raw", [
    "1985-02-30", "1985-13-01", "1899-12-31", "2101-01-01", "19850230", "", "  ", "07/03/1985",
    "1985-3", "not a date", "1985年3月", "0000-00-00",
])
def test_impossible_or_unreadable_dates_are_blank(raw):
    assert normalise_date(raw) == ""


def test_leap_day():
    assert normalise_date("2000-02-29") == "2000-02-29"
    assert normalise_date("1900-02-29") == ""

# ---------------------------------------------------------------- resident ID


def test_public_example_id_is_valid():
    assert check_char("11010519491231002") == "X"
    assert parse_resident_id("11010519491231002X") == ResidentId(
        "11010519491231002X", True, "1949-12-31", "F")


def test_check_char_by_hand():
    # 4*7 + 4*9 + 0*10 + 1*5 + 0*8 + 6*4 + 1*2 + 9*1 + 8*6 + 5*3 + 0*7 + 3*9
    # + 0*10 + 7*5 + 0*8 + 0*4 + 1*2 = 231; 231 mod 11 = 0 -> "1" in "10X98765432".
    assert check_char("44010619850307001") == "1"
    # 11010519491231002: ... = 167; 167 mod 11 = 2 -> "X".
    assert check_char("11010519491231002") == "X"


def test_check_char_rejects_non_17_digit_input():
    assert check_char("1234") == ""
    assert check_char("1101051949123100X") == ""


def test_lowercase_x_and_whitespace():
    parsed = parse_resident_id(" 110105 19491231 002x ")
    assert parsed.value == "11010519491231002X"
    assert parsed.valid


def test_fifteen_digit_id_converts_to_eighteen():
    # 110105 491231 002 -> 110105 19491231 002 + check char.
    parsed = parse_resident_id("110105491231002")
    assert parsed.value == "11010519491231002" + check_char("11010519491231002")
    assert parsed.value == "11010519491231002X"
    assert parsed.valid and parsed.birth_date == "1949-12-31" and parsed.sex == "F"
    male = parse_resident_id("440106850307001")
    assert male.value == "440106198503070011" and male.valid and male.sex == "M"


def test_one_mistyped_digit_is_invalid_but_kept():
    parsed = parse_resident_id("11010519491231003X")  # sequence digit off by one
    assert parsed.valid is False
    assert parsed.value == "11010519491231003X"
    # The embedded date is still a real date, so it is reported.
    assert parsed.birth_date == "1949-12-31"


def test_dropped_digit_is_kept_and_bad_length_is_unusable():
    dropped = parse_resident_id("1101051949123102X")
    assert dropped.value == "1101051949123102X" and not dropped.valid
    assert parse_resident_id("1101051949").value == ""
    assert parse_resident_id("ABCDEFGHIJKLMNOPQR").value == ""
    assert parse_resident_id("") == ResidentId("", False, "", "")


def test_impossible_embedded_date_is_invalid_and_blank():
    first17 = "11010519491331002"  # month 13
    parsed = parse_resident_id(first17 + check_char(first17))
    assert not parsed.valid and parsed.birth_date == "" and parsed.sex == ""
    assert parsed.value == first17 + check_char(first17)


def test_future_birth_date_is_invalid():
    first17 = "11010520990101001"
    assert not parse_resident_id(first17 + check_char(first17)).valid

# ---------------------------------------------------------------- address


def test_address_admin_prefixes_share_the_stripped_form():
    forms = [
        "广东省广州市天河区体育西路12号",
        "广州市天河区体育西路12号",
        "天河区体育西路12号",
        "体育西路12号",
        "广东省 广州市 天河区 体育西路１２号",
        "广东省广州市天河区体育西路12号。",
    ]
    assert {normalise_address(f) for f in forms} == {"体育西路12号"}


@pytest.mark.parametrize("full,short", [
    ("北京市朝阳区建国路88号", "建国路88号"),
    ("新疆维吾尔自治区乌鲁木齐市天山区解放南路5号", "解放南路5号"),
    ("内蒙古自治区呼和浩特市土默特左旗红旗路1号", "红旗路1号"),
    ("湖北省恩施土家族苗族自治州恩施市舞阳大道1号", "舞阳大道1号"),
    ("广东省广州市天河区华景新城小区3栋", "华景新城小区3栋"),
    ("广州市天河区华景新城小区3栋", "华景新城小区3栋"),
])
def test_address_variants(full, short):
    assert normalise_address(full) == short
    assert normalise_address(short) == short


def test_address_street_words_are_not_taken_for_districts():
    for street in ["华景新城小区3栋", "阳光社区5号", "红旗路1号", "市场路3号", "高新园区8号"]:
        assert normalise_address(street) == street


def test_address_latin_lower_and_full_width():
    assert normalise_address("Room Ａ1, 体育西路12号") == "rooma1体育西路12号"
    assert normalise_address("") == ""

# ---------------------------------------------------------------- phone


@pytest.mark.parametrize("raw", [
    "13800138000", "138 0013 8000", "138-0013-8000", "+86 138 0013 8000", "+8613800138000",
    "008613800138000", "8613800138000", "１３８００１３８０００", "13800138000, 13900139000",
    "13800138000/13900139000",
])
def test_mobile_forms(raw):
    assert normalise_phone(raw) == "13800138000"


def test_landline_and_short_numbers():
    assert normalise_phone("020-8765 4321") == "02087654321"
    assert normalise_phone("8765432") == "8765432"
    assert normalise_phone("123456") == ""
    assert normalise_phone("") == normalise_phone("n/a") == ""

# ---------------------------------------------------------------- record


def test_record_keys_match_schema_features():
    assert tuple(normalise_record({})) == FEATURES


def test_record_fills_sex_and_birth_date_from_valid_id():
    out = normalise_record({"name": "王小慧", "sex": "", "birth_date": "", "resident_id": "11010519491231002x"})
    assert out["sex"] == "F" and out["birth_date"] == "1949-12-31"
    assert out["resident_id"] == "11010519491231002X"
    assert out["name"] == "王小慧" and out["name_pinyin"] == "wangxiaohui"


def test_record_does_not_fill_from_invalid_id():
    out = normalise_record({"resident_id": "11010519491231003X"})
    assert out["sex"] == "" and out["birth_date"] == ""
    assert out["resident_id"] == "11010519491231003X"


def test_record_keeps_declared_values_over_the_id():
    out = normalise_record({"sex": "男", "birth_date": "1985/3/7", "resident_id": "11010519491231002X"})
    assert out["sex"] == "M" and out["birth_date"] == "1985-03-07"


def test_record_missing_none_and_nan_are_blank():
    out = normalise_record({"name": None, "sex": float("nan"), "phone": None})
    assert out == dict.fromkeys(FEATURES, "")


def test_record_pinyin_only_name():
    out = normalise_record({"name": "WANG XIAO HUI"})
    assert out["name"] == "" and out["name_pinyin"] == "wangxiaohui"

# ---------------------------------------------------------------- robustness


_STR_FUNCTIONS = [normalise_name, name_pinyin, normalise_sex, normalise_date, check_char,
                  normalise_address, normalise_phone]
_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)


@settings(max_examples=300, deadline=None)
@given(raw=_text)
def test_every_function_returns_str_on_arbitrary_text(raw):
    for fn in _STR_FUNCTIONS:
        assert isinstance(fn(raw), str)
    parsed = parse_resident_id(raw)
    assert isinstance(parsed, ResidentId)
    assert all(isinstance(v, str) for v in (parsed.value, parsed.birth_date, parsed.sex))
    assert isinstance(parsed.valid, bool)


@settings(max_examples=200, deadline=None)
@given(row=st.dictionaries(st.sampled_from(["record_id", "name", "sex", "birth_date", "resident_id",
                                            "address", "phone", "other"]), _text))
def test_normalise_record_on_arbitrary_rows(row):
    out = normalise_record(row)
    assert tuple(out) == FEATURES
    assert all(isinstance(v, str) for v in out.values())


@settings(max_examples=200, deadline=None)
@given(first17=st.text(alphabet="0123456789", min_size=17, max_size=17))
def test_check_char_makes_a_checkable_id(first17):
    char = check_char(first17)
    assert char in "0123456789X" and len(char) == 1
    # Changing any single digit changes the check character (MOD 11-2 catches all single errors).
    for i in range(17):
        swapped = first17[:i] + str((int(first17[i]) + 1) % 10) + first17[i + 1:]
        assert check_char(swapped) != char


@settings(max_examples=200, deadline=None)
@given(raw=_text)
def test_normalisers_are_idempotent(raw):
    for fn in (normalise_name, normalise_date, normalise_phone):
        once = fn(raw)
        assert fn(once) == once


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(
    st.text(alphabet="0123456789Xx -１２", min_size=14, max_size=20),
    st.from_regex(r"[1-6][0-9]{5}(19|20)[0-9]{2}(0[1-9]|1[0-2])(0[1-9]|[12][0-9]|3[01])[0-9]{3}[0-9X]", fullmatch=True),
    st.text(max_size=20)), max_size=30))
def test_resident_ids_in_a_batch_parse_as_one_by_one(values):
    values = values * 16  # batches of 16 and more take the numpy path
    assert parse_resident_ids(values) == [parse_resident_id(v) for v in values]
