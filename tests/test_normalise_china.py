"""Normalisation for the realities of China's registers (issue 15): traditional script,
pinyin in every style, minority names and their transliteration variants, Hong Kong,
Macau and Taiwan documents, placeholder and lunar dates, addresses two registers share.
Each case is two renderings one person has in two registers, and what must come out."""
from __future__ import annotations

import pandas as pd
import pytest

from agents.encoding import Encoder, date_tokens, dice
from agents.normalise import feature_columns, name_pinyin, normalise_address, normalise_name, parse_resident_id
from agents.normalise.permits import normalise_permit
from agents.normalise.pinyin_keys import name_phonetic, name_syllables, phonetic_key, split_syllables
from fedlink.schema import FieldSpec, LinkageSchema


@pytest.mark.parametrize("traditional,simplified", [
    ("歐陽翠華", "欧阳翠华"), ("鄭國強", "郑国强"), ("劉麗紅", "刘丽红"), ("陳偉", "陈伟"),
    ("甯峯", "宁峰"),  # variant characters OpenCC keeps, folded for names
])
def test_traditional_names_come_out_simplified(traditional, simplified):
    assert normalise_name(traditional) == simplified
    assert name_pinyin(traditional) == name_pinyin(simplified)
    assert name_syllables(traditional) == name_syllables(simplified)


def test_hong_kong_and_taiwan_variant_forms_need_their_script():
    # 衞 is the Hong Kong form of 卫; t2s keeps it, hk2s reads it.
    assert normalise_name("衞志明", "hk2s") == "卫志明"
    assert normalise_name("衞志明", "t2s") != "卫志明"
    columns = feature_columns({"name": ["衞志明"]}, [("name", "name", "name")], script="hk2s")
    assert columns["name"] == ["卫志明"]
    assert normalise_address("香港九龍彌敦道12號") == "香港九龙弥敦道12号"


@pytest.mark.parametrize("rendering", [
    "王小慧", "WANG Xiaohui", "Xiaohui Wang", "XIAOHUI WANG", "wang xiao hui", "WANGXIAOHUI",
    "Wang Xiao-hui", "Wáng Xiǎohuì", "xiaohuiwang",
])
def test_pinyin_in_every_style_gives_one_syllable_set(rendering):
    assert name_syllables(rendering) == "hui wang xiao"


@pytest.mark.parametrize("spelling", ["吕小明", "Lü Xiaoming", "LV XIAOMING", "Lyu Xiaoming", "Lu Xiaoming"])
def test_u_umlaut_written_v_u_or_yu(spelling):
    assert name_syllables(spelling) == "lu ming xiao"


def test_syllables_cut_run_together_pinyin_into_the_fewest():
    assert split_syllables("zhangsan") == ("zhang", "san")
    assert split_syllables("xian") == ("xian",)
    assert split_syllables("ouyangcuihua") == ("ou", "yang", "cui", "hua")
    assert split_syllables("smith") == ("smith",)  # not pinyin: kept whole


def test_given_name_first_pinyin_against_characters_encodes_alike():
    schema = LinkageSchema(fields=(FieldSpec("name_syllables", hashes=10, qgram=0),))
    enc = Encoder(schema, b"s" * 16, "p")
    a, b, other = enc.encode([{"name_syllables": name_syllables(n)} for n in ("王小慧", "Xiaohui Wang", "王晓明")])
    assert dice(a.tobytes(), b.tobytes()) == 1.0
    assert dice(a.tobytes(), other.tobytes()) < 0.7


@pytest.mark.parametrize("written", ["阿卜杜拉·买买提", "阿卜杜拉•买买提", "阿卜杜拉‧买买提", "阿卜杜拉.买买提",
                                     "阿卜杜拉\u3000买买提", "阿卜杜拉・买买提", "阿卜杜拉··买买提"])
def test_minority_name_separators(written):
    assert normalise_name(written) == "阿卜杜拉·买买提"
    assert name_phonetic(written) == "pABDN pMMD fABDN"


@pytest.mark.parametrize("one,other,key", [
    ("艾力", "阿力", "AN"), ("买买提", "麦麦提", "MMD"), ("次仁", "才让", "ZRN"), ("多吉", "多杰", "DJ"),
    ("扎西顿珠", "扎西东主", "ZJDNZ"),
])
def test_transliteration_variants_share_the_phonetic_key(one, other, key):
    assert phonetic_key(one) == phonetic_key(other) == key
    assert name_pinyin(one) != name_pinyin(other) or one[0] != other[0]


def test_phonetic_key_still_tells_different_names_apart():
    keys = {phonetic_key(n) for n in ("艾力", "次仁", "多吉", "买买提", "阿依古丽", "热合曼", "王伟", "李娜")}
    assert len(keys) == 8


def test_own_name_only_shares_the_first_part_token():
    full, own = name_phonetic("艾力·买买提").split(), name_phonetic("阿力").split()
    assert "fAN" in full and "fAN" in own and "pAN" in own
    assert set(own) <= set(full)
    # A different own name with the same father's name shares only the father's part.
    assert "fAN" not in name_phonetic("吐尔逊·买买提").split()


@pytest.mark.parametrize("raw,canonical", [
    ("H12345678", "H12345678"), ("h 1234 5678", "H12345678"), ("H1234567801", "H12345678"),  # renewal count
    ("M87654321", "M87654321"), ("12345678", "T12345678"), ("1234567890(B)", "T12345678"),
    ("A123456(7)", "KA1234567"), ("Ｈ１２３４５６７８", "H12345678"),
])
def test_hong_kong_macau_taiwan_documents_are_their_own_field(raw, canonical):
    assert normalise_permit(raw) == canonical
    assert parse_resident_id(raw).value == ""  # never taken for a (broken) resident ID


def test_resident_ids_are_not_permits():
    assert normalise_permit("11010519491231002X") == ""
    # The residence permit of a Hong Kong resident is a GB 11643 number: a resident ID.
    assert normalise_permit("810000199001011234") == ""
    columns = feature_columns({"resident_id": ["H12345678", "11010519491231002X"]},
                              [("resident_id", "resident_id", "resident_id"), ("permit", "permit", "resident_id")])
    assert columns == {"resident_id": ["", "11010519491231002X"], "permit": ["H12345678", ""]}


def test_placeholder_dates_set_only_the_year():
    assert date_tokens("1950-01-01") == date_tokens("1950-07-01") == ["y1950", "Y1950"]
    schema = LinkageSchema(fields=(FieldSpec("birth_date", hashes=10, qgram=0),))
    enc = Encoder(schema, b"s" * 16, "p")
    placeholder, real, other_year = enc.encode([{"birth_date": d} for d in ("1950-01-01", "1950-03-17", "1951-01-01")])
    # Against the real date of the same year it agrees on everything it says ...
    assert (placeholder & real).tobytes() == placeholder.tobytes()
    assert not (placeholder & other_year).any()


def test_lunar_birthday_as_solar_keeps_the_year_strong():
    schema = LinkageSchema(fields=(FieldSpec("birth_date", hashes=10, qgram=0),))
    enc = Encoder(schema, b"s" * 16, "p")
    solar, lunar, unrelated = enc.encode([{"birth_date": d} for d in ("1962-03-14", "1962-02-09", "1971-08-23")])
    assert dice(solar.tobytes(), lunar.tobytes()) >= 0.35  # the year is 2 of 5 tokens
    assert dice(solar.tobytes(), unrelated.tobytes()) < 0.1


@pytest.mark.parametrize("one,other", [
    ("广东省广州市天河区华景新城小区3栋2单元501室", "华景新城小区3号楼501"),
    ("天河区体育西路12号3楼", "广州市天河区体育西路12号"),
    ("幸福小区5幢", "幸福小区5座"),
    ("廣州市天河區體育西路12號", "体育西路12号"),
])
def test_addresses_reduced_to_what_both_registers_record(one, other):
    assert normalise_address(one) == normalise_address(other)


def test_different_buildings_stay_different():
    assert normalise_address("幸福小区3栋") != normalise_address("幸福小区5栋")


def test_a_frame_with_every_reality_normalises_without_error():
    frame = pd.DataFrame({"name": ["歐陽翠華", "Xiaohui WANG", "阿卜杜拉　买买提", ""],
                          "resident_id": ["", "H1234567801", "11010519491231002X", None]})
    fields = [("name", "name", "name"), ("name_syllables", "syllables", "name"),
              ("name_phonetic", "phonetic", "name"), ("permit", "permit", "resident_id")]
    out = feature_columns(frame, fields)
    assert out["name"] == ["欧阳翠华", "", "阿卜杜拉·买买提", ""]
    assert out["name_syllables"][1] == "hui wang xiao"
    assert out["permit"] == ["", "H12345678", "", ""]
    assert out["name_phonetic"][3] == ""
