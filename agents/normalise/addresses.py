"""Addresses: the part after the administrative prefix, for q-gram comparison."""
from __future__ import annotations

import re
from functools import lru_cache

from agents.normalise.unicode_forms import DEFAULT_SCRIPT, nfkc, simplified

# Administrative prefixes are stripped level by level from the start, each
# level optional, so "广东省广州市天河区体育西路12号", "广州市天河区体育西路12号",
# "天河区体育西路12号" and "体育西路12号" all come out "体育西路12号".
# Province: a named province + 省, an autonomous region, or a municipality.
_PROVINCE = (
    r"(?:(?:河北|山西|辽宁|吉林|黑龙江|江苏|浙江|安徽|福建|江西|山东|河南|湖北|湖南|广东|"
    r"海南|四川|贵州|云南|陕西|甘肃|青海|台湾)省"
    r"|内蒙古自治区|广西壮族自治区|西藏自治区|宁夏回族自治区|新疆维吾尔自治区"
    r"|(?:北京|天津|上海|重庆)市|(?:香港|澳门)特别行政区)"
)
_HAN = "[\u4e00-\u9fff]"
# Prefecture level: short name + 市/地区/盟, or a longer 自治州 name. 市 is not
# taken when followed by 场 (市场, a market) or preceded by 超 (超市).
_CITY = rf"(?:{_HAN}{{1,8}}?自治州|{_HAN}{{1,5}}?(?:地区|盟)|{_HAN}{{1,5}}?(?<!超)市(?!场))"
# County level: short name + 区/县/市/旗, or a longer 自治县/自治旗 name. The
# lookarounds keep residential and street words that end in the same
# characters (小区, 社区, 园区, 校区, 景区, 街区, 红旗路, 市场) from being
# mistaken for a district.
_COUNTY = (
    rf"(?:{_HAN}{{1,8}}?自治[县旗]"
    rf"|{_HAN}{{1,4}}?(?<![小社园校景街厂])区"
    rf"|{_HAN}{{1,4}}?县"
    rf"|{_HAN}{{2,5}}?旗(?![路街道巷])"
    rf"|{_HAN}{{1,4}}?(?<!超)市(?!场))"
)
_ADMIN_PREFIX_RE = re.compile(rf"(?:{_PROVINCE})?(?:{_CITY})?(?:{_COUNTY})?")
_ADDRESS_DROP_RE = re.compile(r"[\W_]+")
# What one register records and another does not: the unit, floor and room
# after the building ("幸福小区3栋2单元501室", "幸福小区3号楼501"). The building
# is written 栋, 幢, 座 or 号楼, read as 栋; from the first unit, floor or room
# (or a bare room number after the building) on, the rest is dropped, so the
# household-registration and residence forms of one home come out equal.
_BUILDING_RE = re.compile(r"(?<=[0-9a-z])(?:号楼|幢|座)")
_UNIT_DETAIL_RE = re.compile(r"(?:[0-9a-z]+|[零〇一二两三四五六七八九十百]+)(?:单元|层|楼|室|户)|(?<=栋)[0-9a-z-]+$")


def normalise_address(raw: str, script: str = DEFAULT_SCRIPT) -> str:
    """The address with its administrative prefix and unit details removed, for q-gram comparison.

    NFKC (full-width digits and letters to half-width), simplified script
    (OpenCC `script`), lower-case, all
    whitespace and punctuation removed; then an optional province (or
    autonomous region, or municipality), an optional prefecture (市, 地区,
    盟, 自治州) and an optional county-level unit (区, 县, 市, 旗, 自治县) are
    stripped from the start, in that order, each by a short bounded pattern;
    building, unit, floor and room (栋, 单元, 室, ...) are cut from the end.

    Why level by level and not "after the last 省/市/区/县 in the first 12
    characters": the window cut also cuts inside the street part (小区,
    新区大道) at a position that depends on how long the stripped prefix
    was, so the same address with and without its province would come out
    different. Bounded names per level cut only real admin prefixes in
    practice, and cut the same thing whether or not the higher levels are
    present. Chinese numerals are not converted, town/street levels (镇, 乡,
    街道) are kept, and an admin name written without its suffix
    ("广州天河体育西路") is not recognised.
    If stripping would leave nothing, the unstripped form is returned.
    """
    if not raw:
        return ""
    return _normalise_address_cached(raw, script)


@lru_cache(maxsize=1 << 17)  # a household's address recurs in every register it is in
def _normalise_address_cached(raw: str, script: str) -> str:
    text = _ADDRESS_DROP_RE.sub("", simplified(nfkc(raw), script)).lower()
    stripped = _BUILDING_RE.sub("栋", text[_ADMIN_PREFIX_RE.match(text).end():] or text)
    unit = _UNIT_DETAIL_RE.search(stripped)
    return stripped[:unit.start()] if unit and unit.start() else stripped
