"""Normalisation for the realities of China's registers (issue 15): traditional script,
pinyin in every style, minority names and their transliteration variants, Hong Kong,
Macau and Taiwan documents, placeholder and lunar dates, addresses two registers share.
Each case is two renderings one person has in two registers, and what must come out."""
from __future__ import annotations

import pandas as pd
import pytest

from agents.encoding import Encoder, date_tokens, dice
from agents.normalise import feature_columns, name_pinyin, normalise_address, normalise_name, parse_resident_id
from agents.normalise.permits import document_region, normalise_permit
from agents.normalise.surnames import own_name
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


@pytest.mark.parametrize("one,other,region", [
    ("810000199001011234", "H12345678", "HK"),     # a residence permit and the travel permit of one person
    ("82000019900101123X", "M87654321", "MO"),
    ("830000199001011234", "1234567890(B)", "TW"),  # 台胞证, an old booklet
    ("A123456(7)", "h 1234 5678", "HK"),            # the identity card and the travel permit
])
def test_both_kinds_of_hong_kong_macau_taiwan_document_give_their_region(one, other, region):
    assert document_region(one) == document_region(other) == region


@pytest.mark.parametrize("raw", ["11010519491231002X", "440881195002270896", "", "81000019900101", "not an id"])
def test_a_mainland_id_or_anything_else_has_no_document_region(raw):
    assert document_region(raw) == ""


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


@pytest.mark.parametrize("married,own", [
    ("陈王秀英", "王秀英"),      # husband 陈, her own name 王秀英
    ("張陳桂芳", "陈桂芳"),      # traditional script: read after the conversion
    ("鍾唐雲琴", "唐云琴"),
    ("陈 王秀英", "王秀英"),     # a space between the two surnames
    ("陈欧阳秀英", "欧阳秀英"),  # her surname compound
    ("司马王秀英", "王秀英"),    # his compound
])
def test_a_husbands_surname_in_front_of_a_married_womans_name_goes(married, own):
    assert normalise_name(married) == own
    assert name_pinyin(married) == name_pinyin(own)
    assert name_syllables(married) == name_syllables(own)
    assert name_phonetic(married) == name_phonetic(own)


@pytest.mark.parametrize("name", [
    "王秀英", "欧阳素珍", "夏侯素珍", "诸葛明华",  # a compound surname is one surname, not two
    "陈王丽",            # three characters: 陈 with the given name 王丽 as likely as a married 王丽
    "艾合买提", "卓玛央金", "祖丽菲亚", "阿依古丽",  # transliterated names: no surname in front
    "艾力·买买提", "王秀英英英",
])
def test_names_that_are_not_a_husbands_surname_and_hers_stay_as_written(name):
    assert normalise_name(name) == own_name(name) == name


def test_two_different_women_stay_two():
    """王秀英 and 李秀英 are two women; so are they married to the same 陈 (陈王秀英, 陈李秀英):
    taking the husband's surname off leaves each her own surname."""
    assert normalise_name("陈王秀英") == "王秀英" != normalise_name("陈李秀英") == "李秀英"
    schema = LinkageSchema(fields=(FieldSpec("name", hashes=12, qgram=1), FieldSpec("name_pinyin", hashes=8, qgram=2)))
    enc = Encoder(schema, b"s" * 16, "p")
    records = [{"name": normalise_name(n), "name_pinyin": name_pinyin(n)} for n in ("陈王秀英", "王秀英", "陈李秀英")]
    married, unmarried, other = (f.tobytes() for f in enc.encode(records))
    assert dice(married, unmarried) == 1.0
    # before: the husband's 陈 shared with the other woman's married name weighed for them
    assert dice(married, other) < 0.75
    plain = [{"name": "陈王秀英", "name_pinyin": "chenwangxiuying"}, {"name": "陈李秀英", "name_pinyin": "chenlixiuying"}]
    assert dice(married, other) < dice(*(f.tobytes() for f in enc.encode(plain)))
