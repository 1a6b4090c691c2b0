"""Synthetic scenarios in the format of DATA_FORMAT.md: what every quality
figure of fedlink is measured on.

    write_scenario(out, persons, seed=0, error_scale=1.0, reference_date="2025-06-30") -> summary

writes ``out/<department>.csv`` for the six departments, ``out/truth.csv``
(department,record_id,person_id), ``out/needs.csv`` (person_id,need) and
``out/scenario.toml``. The same seed gives the same bytes.

How the population is made (``build``), in the order it happens:

* Households first (sizes 1-6, China 2020 census shares: 25/30/21/13/6.5/4.5 %),
  each of a family type (elderly person alone, couple with children, three
  generations, grandparents with a left-behind grandchild, ...). Members get a
  role (head, spouse, child, grandchild, parent of the head), ages consistent
  with the role (children 21-40 years younger than the head, ...), and sex.
  The result is close to China's 2020 age pyramid (0-14 ~18 %, 60+ ~19 %).
* A household lives in one district (6-digit region code, real codes of
  Shanghai, Zhejiang, Guangdong, Gansu, Beijing, Sichuan, Henan, Hubei and
  Xinjiang) and shares one address. Migrant households in the big cities hold
  resident IDs issued in their home county (sometimes under codes that have
  since been retired, as real IDs do).
* Names: household surname by real frequency (with regional shifts: 陈/黄/梁
  in Guangdong, 顾/陆/沈 in Shanghai, 马 in Gansu), wives keep their own
  surname; given names of one or two characters from frequency-ordered
  male/female character lists, with generation styles (秀英/建国 for the old,
  梓涵/子轩 for the young). About 3 % of persons (most of them in the Xinjiang
  districts) carry Uyghur/Kazakh names ``own·father`` (买买提·吐尔逊); their
  children's second part is the father's first.
* Resident IDs after GB 11643-1999: region + birth date + sequence (odd = male)
  + ISO 7064 MOD 11-2 check character, unique.
* Economy, bottom up: a household latent class sets wages; working-age
  members are employed, in flexible work, unemployed or out of the labour
  force; retirees draw an employee pension or a small residents' pension
  (most rural elderly); a major illness (~4 %, rising with age) cuts wages
  and often the job. Household income is wages + pensions + benefits +
  transfers; per-capita income against the local subsistence line of the
  rule pack gives the poor tail. Dibao goes to ~75 % of the households below
  the line, plus households in the exit transition (income recovered above
  the line), plus inclusion errors (declared income understated, a member
  earns well above the line or owns several properties).
* Department coverage: population ~98 % of persons; civil affairs every dibao
  and low-income household plus ~15 % of other households; medical insurance
  ~90 %; human resources ~75 % of working-age people plus pensioned retirees;
  education the enrolled 6-22 year-olds (~4 % of compulsory-age children are
  not enrolled: missing from the roll or listed with enrolled=0); housing
  ~40 % of adults.

Then every department record gets the errors real registers have (see
``ERROR_RATES``; each rate is multiplied by ``error_scale`` and clipped to
[0, 1]), always on the record, never on the truth. Formats (sex as 男/女 or
M/F, date as 1985-03-07 / 1985/3/7 / 19850307 / 1985年3月7日) follow a
department habit with some mixing, which is not an error and is not scaled.

``needs.csv`` holds what the default rule pack finds on the true department
values and true coverage (``agents.indicators.derive`` per department, the
pack's household indicators applied to every member of the true household of
anyone on a household register (``fedlink.rules.apply_households``), then
``fedlink.rules.evaluate``).

Run ``python -m bench.synth OUT --persons N`` to write one from the shell.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from fedlink.rules import RulePack, apply_households, evaluate, household_labels, load_rulepack
from fedlink.schema import DEPARTMENT_COLUMNS, DEPARTMENTS, HOUSEHOLD_DEPARTMENTS, IDENTITY_COLUMNS

__all__ = [
    "ERROR_RATES",
    "World",
    "build",
    "id_check_char",
    "id_is_valid",
    "resident_id",
    "true_persons",
    "write_scenario",
]

# --------------------------------------------------------------------------------------
# Error rates per department record, at error_scale = 1 (each multiplied by the scale,
# clipped to [0, 1]).
ERROR_RATES = {
    "name_homophone": 0.04,   # one character replaced by a homophone (慧 -> 惠)
    "name_pinyin": 0.04,      # name written in pinyin (Wang Xiaohui, WANG XIAO HUI, ...)
    "name_dropextra": 0.01,   # a character dropped or an extra one added
    "name_dot_variant": 0.20,  # minority names only: the middle dot written as • . ・ space or left out
    "sex_blank": 0.03,
    "date_swap": 0.015,       # day and month swapped (only where day <= 12 and day != month)
    "date_digit": 0.01,       # one digit of the date off (still a valid date)
    "date_blank": 0.02,
    "id_mistype": 0.02,       # one digit of the first 17 mistyped
    "id_transpose": 0.01,     # two adjacent, different characters transposed
    "id_legacy15": 0.03,      # legacy 15-digit form; only for persons born before 2000
    "id_blank": 0.03,
    "id_lower_x": 0.30,       # of the IDs ending in X: written with a lower-case x
    "addr_no_province": 0.30,
    "addr_no_province_city": 0.15,
    "addr_no_district": 0.03,
    "addr_fullwidth": 0.05,   # digits written full width (１２号)
    "addr_spaces": 0.05,      # spaces between the parts
    "addr_moved": 0.02,       # a stale address: another household's
    "phone_blank": 0.12,      # of records that would carry a phone: left blank
    "phone_changed": 0.08,    # of records that would carry a phone: another number
}

# Department habits: sex form, date form, share of a phone recorded, record id prefix.
_HABITS = {
    "population": ("cn", "iso", 0.55, "PR"),
    "civil_affairs": ("cn", "cn", 0.90, "CA"),
    "medical_insurance": ("mf", "compact", 0.80, "MI"),
    "human_resources": ("cn", "slash", 0.90, "HR"),
    "education": ("cn", "iso", 0.90, "ED"),
    "housing": ("mf", "slash", 0.70, "HS"),
}
_FORMAT_MIX = 0.10  # share of records whose date is in another department's form
_SEX_MIX = 0.05     # share of records whose sex is in the other form
_DATE_FORMS = ("iso", "slash", "compact", "cn")

# --------------------------------------------------------------------------------------
# Regions: code, province, city, district, urban, population weight, median monthly
# wage (yuan), share of households that migrated from elsewhere.
_REGIONS = [
    ("310101", "上海市", "", "黄浦区", 1, 1.5, 9500, 0.25),
    ("310104", "上海市", "", "徐汇区", 1, 2.0, 9500, 0.30),
    ("310105", "上海市", "", "长宁区", 1, 1.3, 9000, 0.30),
    ("310107", "上海市", "", "普陀区", 1, 2.0, 8000, 0.30),
    ("310110", "上海市", "", "杨浦区", 1, 2.0, 8000, 0.30),
    ("310112", "上海市", "", "闵行区", 1, 3.0, 8000, 0.40),
    ("310115", "上海市", "", "浦东新区", 1, 5.0, 8500, 0.40),
    ("310117", "上海市", "", "松江区", 1, 2.0, 7000, 0.45),
    ("330102", "浙江省", "杭州市", "上城区", 1, 2.0, 7500, 0.25),
    ("330105", "浙江省", "杭州市", "拱墅区", 1, 2.0, 7000, 0.30),
    ("330106", "浙江省", "杭州市", "西湖区", 1, 2.0, 7500, 0.30),
    ("330110", "浙江省", "杭州市", "余杭区", 1, 2.5, 7000, 0.40),
    ("330203", "浙江省", "宁波市", "海曙区", 1, 2.0, 6500, 0.25),
    ("330302", "浙江省", "温州市", "鹿城区", 1, 2.0, 6000, 0.25),
    ("330522", "浙江省", "湖州市", "长兴县", 0, 2.0, 5000, 0.10),
    ("331082", "浙江省", "台州市", "临海市", 0, 2.0, 5000, 0.08),
    ("440103", "广东省", "广州市", "荔湾区", 1, 1.5, 7000, 0.30),
    ("440104", "广东省", "广州市", "越秀区", 1, 1.5, 7500, 0.25),
    ("440106", "广东省", "广州市", "天河区", 1, 2.5, 8000, 0.40),
    ("440111", "广东省", "广州市", "白云区", 1, 3.0, 6000, 0.50),
    ("440113", "广东省", "广州市", "番禺区", 1, 2.5, 6500, 0.40),
    ("440303", "广东省", "深圳市", "罗湖区", 1, 1.5, 8000, 0.55),
    ("440304", "广东省", "深圳市", "福田区", 1, 2.0, 9000, 0.55),
    ("440305", "广东省", "深圳市", "南山区", 1, 2.0, 10000, 0.60),
    ("440306", "广东省", "深圳市", "宝安区", 1, 3.0, 7000, 0.70),
    ("440307", "广东省", "深圳市", "龙岗区", 1, 3.0, 7000, 0.70),
    ("440604", "广东省", "佛山市", "禅城区", 1, 1.5, 6000, 0.35),
    ("440605", "广东省", "佛山市", "南海区", 1, 2.5, 6000, 0.40),
    ("440606", "广东省", "佛山市", "顺德区", 1, 2.5, 6000, 0.40),
    ("441323", "广东省", "惠州市", "惠东县", 0, 1.5, 4000, 0.10),
    ("441422", "广东省", "梅州市", "大埔县", 0, 1.2, 3200, 0.03),
    ("441823", "广东省", "清远市", "阳山县", 0, 1.2, 3000, 0.03),
    ("445281", "广东省", "揭阳市", "普宁市", 0, 2.0, 3500, 0.05),
    ("440881", "广东省", "湛江市", "廉江市", 0, 1.8, 3200, 0.03),
    ("441702", "广东省", "阳江市", "江城区", 1, 1.2, 4200, 0.10),
    ("620102", "甘肃省", "兰州市", "城关区", 1, 2.5, 5200, 0.20),
    ("620103", "甘肃省", "兰州市", "七里河区", 1, 1.5, 4800, 0.15),
    ("620104", "甘肃省", "兰州市", "西固区", 1, 1.0, 4800, 0.10),
    ("620105", "甘肃省", "兰州市", "安宁区", 1, 1.0, 4800, 0.15),
    ("620121", "甘肃省", "兰州市", "永登县", 0, 1.2, 3000, 0.03),
    ("621102", "甘肃省", "定西市", "安定区", 0, 1.2, 2800, 0.03),
    ("621121", "甘肃省", "定西市", "通渭县", 0, 1.2, 2500, 0.02),
    ("110101", "北京市", "", "东城区", 1, 1.0, 10000, 0.20),
    ("110105", "北京市", "", "朝阳区", 1, 2.5, 10000, 0.35),
    ("110108", "北京市", "", "海淀区", 1, 2.0, 11000, 0.35),
    ("510104", "四川省", "成都市", "锦江区", 1, 1.5, 6000, 0.20),
    ("510107", "四川省", "成都市", "武侯区", 1, 2.0, 6000, 0.25),
    ("511321", "四川省", "南充市", "南部县", 0, 2.0, 3000, 0.02),
    ("410105", "河南省", "郑州市", "金水区", 1, 2.0, 5500, 0.25),
    ("411621", "河南省", "周口市", "扶沟县", 0, 2.0, 2800, 0.02),
    ("411627", "河南省", "周口市", "太康县", 0, 2.0, 2800, 0.02),
    ("420106", "湖北省", "武汉市", "武昌区", 1, 2.0, 6500, 0.20),
    ("650102", "新疆维吾尔自治区", "乌鲁木齐市", "天山区", 1, 1.2, 5500, 0.15),
    ("650104", "新疆维吾尔自治区", "乌鲁木齐市", "新市区", 1, 1.0, 5500, 0.15),
    ("653101", "新疆维吾尔自治区", "喀什地区", "喀什市", 1, 0.8, 3800, 0.05),
    ("653121", "新疆维吾尔自治区", "喀什地区", "疏附县", 0, 0.7, 2600, 0.02),
]
# Share of minority (Uyghur/Kazakh-named) households by province prefix; elsewhere _MINORITY_ELSEWHERE.
_MINORITY_SHARE = {"65": 0.60, "62": 0.02}
_MINORITY_ELSEWHERE = 0.012
# Home counties of migrants (their IDs carry these codes; 431121 and 500228 have since been
# renamed to 431181 and 500155: IDs keep the code they were issued under).
_ORIGINS = ["411621", "411627", "430524", "431121", "360733", "450821", "511321", "500228",
            "621121", "441823", "445281", "440881", "420106", "341221", "522422"]

# --------------------------------------------------------------------------------------
# Surnames with approximate national shares (%), from the 2020 household register ranking.
_SURNAME_TEXT = """
王 7.1 李 7.0 张 6.7 刘 5.4 陈 4.6 杨 3.1 黄 2.5 赵 2.4 吴 2.0 周 2.0 徐 1.5 孙 1.5 马 1.4 朱 1.3 胡 1.3
郭 1.2 何 1.2 林 1.2 高 1.1 罗 1.1 郑 1.0 梁 1.0 谢 0.8 宋 0.8 唐 0.8 许 0.7 韩 0.7 邓 0.7 冯 0.7 曹 0.7
彭 0.6 曾 0.6 肖 0.6 田 0.6 董 0.5 潘 0.5 袁 0.5 蔡 0.5 蒋 0.5 余 0.5 于 0.5 杜 0.5 叶 0.5 程 0.5 魏 0.4
苏 0.4 吕 0.4 丁 0.4 任 0.4 卢 0.4 姚 0.4 沈 0.4 钟 0.4 姜 0.4 崔 0.4 谭 0.3 陆 0.3 范 0.3 汪 0.3 廖 0.3
石 0.3 金 0.3 韦 0.3 贾 0.3 夏 0.3 付 0.3 方 0.3 邹 0.25 熊 0.25 白 0.25 孟 0.2 秦 0.2 邱 0.2 侯 0.2 江 0.2
尹 0.2 薛 0.2 闫 0.2 段 0.2 雷 0.2 龙 0.2 黎 0.2 史 0.2 陶 0.2 贺 0.2 毛 0.2 郝 0.2 顾 0.2 龚 0.2 邵 0.2
万 0.15 覃 0.15 武 0.15 钱 0.15 戴 0.15 严 0.15 莫 0.15 孔 0.1 向 0.1 常 0.1 汤 0.1 康 0.1 易 0.1 乔 0.1
赖 0.1 文 0.1 施 0.1 洪 0.1 俞 0.08 楼 0.03 单 0.05 解 0.03 仇 0.02 区 0.02 查 0.02
欧阳 0.05 司徒 0.02 司马 0.01 上官 0.01 诸葛 0.01 东方 0.005 皇甫 0.005 慕容 0.004 令狐 0.004 尉迟 0.002
"""
_SURNAME_BOOST = {
    "44": {"陈": 2.0, "黄": 2.2, "梁": 2.5, "林": 1.6, "何": 1.5, "罗": 1.5, "邓": 1.5, "冯": 1.6, "谢": 1.5,
           "钟": 2.0, "曾": 1.5, "赖": 2.5, "王": 0.5, "张": 0.7, "刘": 0.8, "欧阳": 2.0, "司徒": 6.0, "区": 8.0},
    "31": {"沈": 2.5, "陆": 3.0, "顾": 3.5, "朱": 1.5, "徐": 1.6, "钱": 2.5, "王": 1.2},
    "33": {"王": 1.3, "陈": 1.5, "金": 2.0, "吴": 1.5, "徐": 1.3, "俞": 4.0, "楼": 8.0},
    "62": {"王": 1.3, "张": 1.4, "李": 1.3, "马": 2.5, "魏": 1.5, "赵": 1.3},
    "65": {"王": 1.3, "张": 1.3, "李": 1.2, "马": 2.0},
    "41": {"王": 1.3, "李": 1.3, "张": 1.4, "刘": 1.3},
    "51": {"杨": 1.3, "陈": 1.2, "罗": 1.5, "何": 1.3, "邓": 1.4, "唐": 1.4},
    "11": {"王": 1.3, "张": 1.3, "刘": 1.3},
}
# Readings of surnames that differ from the characters' common reading.
_SURNAME_PINYIN = {"曾": "zeng", "单": "shan", "解": "xie", "仇": "qiu", "区": "ou", "查": "zha",
                   "覃": "qin", "尉迟": "yuchi", "乐": "yue"}

# Given-name characters, most frequent first (male and female tendency; some overlap).
_MALE_CHARS = (
    "伟强磊军勇杰涛斌超明刚平辉鹏华飞鑫波宇浩凯健俊帆帅旭宁龙林阳建国东峰文亮志成海兵晨坤博杨昊睿哲轩然"
    "泽航晓小振毅新庆春永金荣利忠德福贵生祥瑞安家天宏洪江山松川立子彬炜玮铭鸣敏嘉佳泉锋锐力威武钢学益民"
    "红光长伦卫维巍峻骏晖琛煜烨昕宸皓恒弘鸿耀诚逸远源元啸翔彦云运震正政智致中仲舟洲彪奇琦岩炎延晏鹤栋"
    "梁楠柏森涵豪腾勋骁霖凡剑锦钧朋桦韬辰臣承友宝发全胜才义仁"
)
_FEMALE_CHARS = (
    "芳娜敏静丽艳娟霞秀燕玲桂英红梅莉兰萍婷雪琳慧惠晶倩颖洁佳琴云莹欣怡妍璐露婧菲雯文宁瑶岚月玉凤珍娇媛"
    "丹彤晓小美春青清巧翠淑萱涵悦诗思梦可馨雨嘉蕾蓉荣薇琪琦艺亦依伊宜仪妮君珺筠蕊瑞婉宛佩沛蓓贝娅雅亚"
    "姗珊钰欢环婕彩菊芬冰洋平利霖凌灵晴琼瑾璇绮韵乐希曦茜蓝素爱香华"
)
_OLD_MALE = "建国 建华 国强 国庆 志强 建军 德明 福生 卫东 红兵 援朝 建设 胜利 解放 永福 长顺 金财 树林 玉林 富贵 宝山 德胜 国华 振华 文斌 志刚".split()
_OLD_FEMALE = "秀英 桂英 秀兰 玉兰 桂兰 凤英 淑珍 秀珍 玉梅 桂芳 淑英 秀梅 翠兰 桂珍 玉珍 凤兰 秀芳 素珍 美华 爱华 红梅 秀云 玉英 桂香".split()
_NEW_MALE = "子轩 浩宇 宇轩 梓豪 浩然 俊熙 一鸣 子墨 宇航 皓轩 睿 子豪 梓睿 沐阳 奕辰 宇辰 铭泽 俊宇 博文 思远".split()
_NEW_FEMALE = "梓涵 一诺 欣怡 梓萱 诗涵 语桐 可馨 雨涵 子涵 思涵 紫涵 欣妍 若汐 依诺 梦瑶 语嫣 雨桐 佳怡 诗琪 梓琪".split()
# Uyghur/Kazakh name parts in their usual Chinese transliteration.
_MINO_MALE = ("阿卜杜拉 买买提 艾力 吐尔逊 艾合买提 阿不都热依木 努尔 麦麦提 阿里木 热合曼 艾尼瓦尔 伊力哈木 亚森 "
              "吾买尔 库尔班 肉孜 阿布都 木拉提 艾克拜尔 赛买提 卡德尔 依明 玉苏甫 艾山 阿迪力 买合木提 吐逊 "
              "哈力克 叶尔兰 努尔兰 别克 达吾列提 哈那提 阿不力米提").split()
_MINO_FEMALE = ("古丽米拉 阿依古丽 古丽 热依拉 帕提古丽 米热古丽 努尔古丽 阿依努尔 迪丽努尔 阿娜尔 古再丽 热娜 "
                "祖丽菲亚 麦尔哈巴 布合丽且姆 阿依夏木 萨拉 玛依拉 古丽娜 巴哈尔古丽 阿依达娜 古丽扎尔").split()
_DOT_VARIANTS = ["•", ".", "・", "", " ", "．"]

_STREETS = ("人民 解放 中山 建设 和平 新华 文化 胜利 东风 友谊 长江 黄河 青年 光明 朝阳 幸福 团结 工农 迎宾 滨江 "
            "环城 学府 体育 花园 健康 振兴 发展 育才 园林 春晖 安宁 永安 兴业 新民 华山 泰山 金山 银河 南湖 西湖 "
            "东湖 北海 凤凰 龙华 白云 天河 锦绣 桂花 梧桐 丰收").split()
_STREET_SUFFIX = (["路"] * 12 + ["街"] * 4 + ["大道"] * 2 + ["东路", "西路", "南路", "北路"])
_COMMUNITIES = ("阳光 碧桂园 万科 金地 保利 恒大 幸福 和谐 翠苑 丽景 锦华 新城 华府 御景 滨江 时代 绿地 世纪 东方 紫荆").split()
_COMMUNITY_SUFFIX = ["花园", "小区", "苑", "新村", "家园"]
_TOWNS = "城关 新华 太平 永和 长宁 石门 马坪 大河 白沙 青山 红旗 双河 新桥 龙泉 李家 王庄 高桥 柳林 三合 沙河".split()
_VILLAGES = "东风 红星 新农 前进 和平 团结 胜利 李家 张家 王家 刘庄 赵庄 柳树 杨柳 石桥 河西 河东 上坝 下坝 桃园".split()
_PHONE_PREFIXES = np.array(
    "130 131 132 133 134 135 136 137 138 139 150 151 152 153 155 156 157 158 159 166 173 175 176 177 178 "
    "180 181 182 183 184 185 186 187 188 189 198 199".split(), dtype=object)

# --------------------------------------------------------------------------------------
# Household types: name, size, share among households of that size, member roles.
# H head, S spouse, C child of the head, K grandchild, G parent of the head (random sex),
# M / F father / mother of the head.
_TEMPLATES = [
    ("alone_elderly", 1, 0.32, "H"), ("alone_young", 1, 0.40, "H"), ("alone_mid", 1, 0.28, "H"),
    ("couple_elderly", 2, 0.30, "HS"), ("couple_young", 2, 0.20, "HS"), ("couple_mid", 2, 0.30, "HS"),
    ("single_parent", 2, 0.10, "HC"), ("left_behind", 2, 0.05, "HK"), ("with_parent", 2, 0.05, "HG"),
    ("nuclear", 3, 0.76, "HSC"), ("with_parent", 3, 0.08, "HSG"), ("single_parent", 3, 0.06, "HCC"),
    ("left_behind", 3, 0.07, "HSK"), ("single_parent_gp", 3, 0.03, "HCG"),
    ("nuclear", 4, 0.55, "HSCC"), ("three_gen", 4, 0.35, "HSCG"), ("left_behind", 4, 0.05, "HSKK"),
    ("with_parents", 4, 0.05, "HSMF"),
    ("three_gen", 5, 0.45, "HSCCG"), ("three_gen2", 5, 0.40, "HSCMF"), ("nuclear", 5, 0.15, "HSCCC"),
    ("three_gen2", 6, 0.60, "HSCCMF"), ("three_gen", 6, 0.25, "HSCCCG"), ("nuclear", 6, 0.15, "HSCCCC"),
]
_SIZE_SHARES = np.array([0.25, 0.30, 0.21, 0.13, 0.065, 0.045])
_ROLE_CODES = {"H": 0, "S": 1, "C": 2, "K": 3, "G": 4, "M": 5, "F": 6}
H, S, C, K, G, GM, GF = range(7)
# Head: age sampler (low, high, beta a, beta b) and share male.
_HEAD = {
    "alone_elderly": ((60, 98, 1.4, 2.6), 0.38), "alone_young": ((18, 35, 1.5, 1.5), 0.58),
    "alone_mid": ((36, 59, 1.0, 1.0), 0.55), "couple_elderly": ((60, 92, 1.3, 2.4), 0.85),
    "couple_young": ((22, 34, 1.5, 1.5), 0.85), "couple_mid": ((45, 64, 1.2, 1.0), 0.85),
    "single_parent": ((26, 55, 1.3, 1.3), 0.30), "left_behind": ((52, 75, 1.3, 1.5), 0.55),
    "with_parent": ((33, 60, 1.3, 1.3), 0.60), "nuclear": ((24, 58, 2.2, 2.2), 0.85),
    "single_parent_gp": ((28, 50, 1.3, 1.3), 0.30), "three_gen": ((26, 56, 1.8, 2.2), 0.85),
    "with_parents": ((28, 50, 1.5, 1.5), 0.85), "three_gen2": ((26, 50, 1.8, 2.0), 0.85),
}

_DEPT_SEED = {d: i for i, d in enumerate(DEPARTMENTS)}


# --------------------------------------------------------------------------------------
# Resident identity numbers (GB 11643-1999)
_ID_WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2], dtype=np.int64)
_CHECK = "10X98765432"


def id_check_char(first17: str) -> str:
    """ISO 7064 MOD 11-2 check character of the first 17 digits."""
    if len(first17) != 17 or not first17.isdigit():
        raise ValueError(f"need 17 digits, got {first17!r}")
    s = sum(int(c) * int(w) for c, w in zip(first17, _ID_WEIGHTS))
    return _CHECK[s % 11]


def resident_id(region: str, birth: str, seq: int) -> str:
    """An 18-character resident ID: region (6 digits), birth date (YYYYMMDD or ISO), sequence
    0-999 (odd = male), check character."""
    body = f"{region}{birth.replace('-', '')}{seq:03d}"
    return body + id_check_char(body)


def id_is_valid(value: str) -> bool:
    """Whether an 18-character ID carries the right check character (upper-case X only)."""
    return len(value) == 18 and value[:17].isdigit() and _CHECK[
        int((np.frombuffer(value[:17].encode(), np.uint8) - 48).astype(np.int64) @ _ID_WEIGHTS) % 11] == value[17]


def _zfill(a: np.ndarray, width: int) -> np.ndarray:
    """Non-negative integers as zero-padded strings (object array)."""
    a = np.asarray(a)
    if a.size == 0:
        return np.zeros(0, dtype=object)
    return np.char.zfill(a.astype(np.int64).astype(str), width).astype(object)


def _ids_vectorised(region: np.ndarray, ymd: np.ndarray, seq: np.ndarray) -> np.ndarray:
    body = np.char.add(np.char.add(region.astype("U6"), ymd.astype("U8")), _zfill(seq, 3))
    digits = np.frombuffer(body.astype("S17").tobytes(), np.uint8).reshape(-1, 17).astype(np.int64) - 48
    check = np.array(list(_CHECK))[(digits @ _ID_WEIGHTS) % 11]
    return np.char.add(body, check).astype(object)


# --------------------------------------------------------------------------------------
@dataclass
class World:
    """The true population: persons, households, department coverage and values."""

    reference_date: str
    persons: pd.DataFrame          # one row per person (see true_persons)
    households: pd.DataFrame       # one row per household
    members: dict = field(default_factory=dict)   # dept -> person indices (np.int64)
    values: dict = field(default_factory=dict)    # dept -> {column: object array of strings}
    fam: np.ndarray = None         # surname (Han) / father's name part (minority)
    giv: np.ndarray = None         # given name (Han) / own name part (minority)


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, *stream]))


def _beta_range(rng, spec, n):
    lo, hi, a, b = spec
    return lo + (hi - lo) * rng.beta(a, b, n)


def _surname_tables():
    toks = _SURNAME_TEXT.split()
    names = np.array(toks[0::2], dtype=object)
    base = np.array([float(x) for x in toks[1::2]])
    tables = {}
    for prov in list(_SURNAME_BOOST) + ["*"]:
        w = base.copy()
        for s, f in _SURNAME_BOOST.get(prov, {}).items():
            w[list(names).index(s)] *= f
        tables[prov] = w / w.sum()
    return names, tables


def _char_weights(chars: str) -> tuple[np.ndarray, np.ndarray]:
    uniq = list(dict.fromkeys(chars))
    rank = np.arange(len(uniq))
    w = 1.0 / (rank + 8.0) ** 0.9
    return np.array(uniq, dtype=object), w / w.sum()


_PINYIN_CACHE: dict[str, str] = {}
_HOMOPHONES: dict[str, list[str]] | None = None


def _py(ch: str) -> str:
    r = _PINYIN_CACHE.get(ch)
    if r is None:
        from pypinyin import lazy_pinyin
        r = _PINYIN_CACHE[ch] = lazy_pinyin(ch)[0]
    return r


def _homophones() -> dict[str, list[str]]:
    """Given-name and transliteration characters grouped by their toneless reading."""
    global _HOMOPHONES
    if _HOMOPHONES is None:
        pool = dict.fromkeys(_MALE_CHARS + _FEMALE_CHARS + "".join(_OLD_MALE + _OLD_FEMALE + _NEW_MALE + _NEW_FEMALE)
                             + "".join(_MINO_MALE + _MINO_FEMALE))
        groups: dict[str, list[str]] = {}
        for ch in pool:
            groups.setdefault(_py(ch), []).append(ch)
        _HOMOPHONES = {ch: [o for o in g if o != ch] for g in groups.values() if len(g) > 1 for ch in g}
    return _HOMOPHONES


# --------------------------------------------------------------------------------------
def build(persons: int, seed: int = 0, reference_date: str = "2025-06-30", pack: RulePack | None = None) -> World:
    """The true population, deterministic for a seed. Independent of error_scale."""
    if persons < 1:
        raise ValueError("persons must be at least 1")
    pack = pack or load_rulepack()
    ref = date.fromisoformat(reference_date)

    # ---- households and members ------------------------------------------------------
    rng = _rng(seed, 1)
    sizes = np.empty(0, dtype=np.int64)
    while sizes.sum() < persons:
        sizes = np.concatenate([sizes, rng.choice(np.arange(1, 7), size=max(16, persons // 2), p=_SIZE_SHARES)])
    cum = np.cumsum(sizes)
    last = int(np.searchsorted(cum, persons))
    sizes = sizes[: last + 1].copy()
    sizes[last] -= cum[last] - persons
    nh = len(sizes)

    tmpl = np.empty(nh, dtype=np.int64)
    u = rng.random(nh)
    for size in range(1, 7):
        ids = [i for i, t in enumerate(_TEMPLATES) if t[1] == size]
        p = np.array([_TEMPLATES[i][2] for i in ids])
        edges = np.cumsum(p / p.sum())
        sel = sizes == size
        tmpl[sel] = np.array(ids)[np.minimum(np.searchsorted(edges, u[sel], side="right"), len(ids) - 1)]
    role_mat = np.full((len(_TEMPLATES), 6), -1, dtype=np.int64)
    for i, t in enumerate(_TEMPLATES):
        role_mat[i, : len(t[3])] = [_ROLE_CODES[c] for c in t[3]]
    kinds = sorted(_HEAD)
    kind_of_tmpl = np.array([kinds.index(t[0]) for t in _TEMPLATES])
    has_spouse = np.array(["S" in t[3] for t in _TEMPLATES])[tmpl]

    hh = np.repeat(np.arange(nh), sizes)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    pos = np.arange(persons) - np.repeat(starts, sizes)
    role = role_mat[tmpl[hh], pos]

    head_age = np.empty(nh)
    head_male = np.empty(nh, dtype=bool)
    hk = kind_of_tmpl[tmpl]
    for ki, kind in enumerate(kinds):
        sel = np.flatnonzero(hk == ki)
        spec, pm = _HEAD[kind]
        head_age[sel] = _beta_range(rng, spec, len(sel))
        head_male[sel] = rng.random(len(sel)) < pm
    ha = np.floor(head_age[hh])
    age = np.zeros(persons)
    r = rng.random(persons)
    age[role == H] = ha[role == H]
    sp = role == S
    male_head = head_male[hh]
    age[sp] = ha[sp] + np.round(rng.normal(np.where(male_head[sp], -2.0, 2.0), 2.5))
    ch = role == C
    top = np.minimum(40.0, ha[ch])
    age[ch] = ha[ch] - (21 + r[ch] * np.maximum(top - 21, 0))
    gk = role == K
    age[gk] = np.floor(r[gk] * 17)
    gp = (role == G) | (role == GM) | (role == GF)
    age[gp] = np.minimum(ha[gp] + 22 + r[gp] * 14 + np.where(role[gp] == GM, 2, 0), 99)
    age = np.clip(np.floor(age), 0, 99).astype(np.int64)
    age[sp] = np.maximum(age[sp], 20)

    male = np.empty(persons, dtype=bool)
    male[role == H] = male_head[role == H]
    male[sp] = ~male_head[sp]
    r = rng.random(persons)
    male[ch] = r[ch] < 0.52
    male[gk] = r[gk] < 0.53
    male[role == G] = r[role == G] < 0.35
    male[role == GM] = True
    male[role == GF] = False

    # birth dates: uniform within the year of age
    ref64 = np.datetime64(reference_date, "D")
    days = np.floor((age + rng.random(persons)) * 365.2425).astype(np.int64)
    birth = ref64 - days
    birth = np.where(birth > ref64, ref64, birth)
    iso = np.datetime_as_string(birth, unit="D")
    ymd = np.char.replace(iso, "-", "")
    by = ymd.astype("U4").astype(np.int64)

    # ---- regions, minority, surnames -------------------------------------------------
    rng = _rng(seed, 2)
    reg = np.array([x[0] for x in _REGIONS])
    rw = np.array([x[5] for x in _REGIONS])
    hreg = rng.choice(len(_REGIONS), size=nh, p=rw / rw.sum())
    prov2 = np.array([x[0][:2] for x in _REGIONS])[hreg]
    urban_h = np.array([x[4] for x in _REGIONS], dtype=bool)[hreg]
    wage_r = np.array([x[6] for x in _REGIONS], dtype=float)[hreg]
    migrant_h = rng.random(nh) < np.array([x[7] for x in _REGIONS])[hreg]
    mino_share = np.array([_MINORITY_SHARE.get(p, _MINORITY_ELSEWHERE) for p in prov2])
    minority_h = rng.random(nh) < mino_share
    origin_h = np.array(_ORIGINS)[rng.integers(0, len(_ORIGINS), nh)]
    origin_h = np.where(minority_h & migrant_h, np.array(["653121", "653101", "650104"])[rng.integers(0, 3, nh)], origin_h)

    snames, stables = _surname_tables()
    hsur = np.empty(nh, dtype=np.int64)
    psur = np.empty(persons, dtype=np.int64)
    pprov = prov2[hh]
    for prov in np.unique(prov2):
        p = stables.get(prov, stables["*"])
        sel = prov2 == prov
        hsur[sel] = rng.choice(len(snames), size=int(sel.sum()), p=p)
        selp = pprov == prov
        psur[selp] = rng.choice(len(snames), size=int(selp.sum()), p=p)
    fam_idx = hsur[hh].copy()
    own = ((~male) & ((role == S) | ((role == H) & has_spouse[hh]))) | (role == GF) | ((role == G) & ~male) \
        | (((role == C) | (role == K)) & (rng.random(persons) < 0.07))
    fam_idx[own] = psur[own]
    fam = snames[fam_idx]

    # given names
    mchars, mw = _char_weights(_MALE_CHARS)
    fchars, fw = _char_weights(_FEMALE_CHARS)
    c1 = np.where(male, rng.choice(len(mchars), persons, p=mw), rng.choice(len(fchars), persons, p=fw))
    c2 = np.where(male, rng.choice(len(mchars), persons, p=mw), rng.choice(len(fchars), persons, p=fw))
    first = np.where(male, mchars[np.minimum(c1, len(mchars) - 1)], fchars[np.minimum(c1, len(fchars) - 1)])
    second = np.where(male, mchars[np.minimum(c2, len(mchars) - 1)], fchars[np.minimum(c2, len(fchars) - 1)])
    p_single = np.where((by >= 1975) & (by < 2000), 0.25, 0.10)
    r = rng.random(persons)
    giv = np.where(r < p_single, first, first + second).astype(object)
    r = rng.random(persons)
    old = (by < 1965) & (r < 0.45)
    new = (by >= 2008) & (r < 0.35)
    pick = rng.integers(0, 1 << 30, persons)
    om, of = np.array(_OLD_MALE, dtype=object), np.array(_OLD_FEMALE, dtype=object)
    nm, nf = np.array(_NEW_MALE, dtype=object), np.array(_NEW_FEMALE, dtype=object)
    giv[old & male] = om[pick[old & male] % len(om)]
    giv[old & ~male] = of[pick[old & ~male] % len(of)]
    giv[new & male] = nm[pick[new & male] % len(nm)]
    giv[new & ~male] = nf[pick[new & ~male] % len(nf)]
    fam = fam.astype(object)

    # minority households: own name + father's name; a child's second part is the father's first
    minority = minority_h[hh]
    mm, mf = np.array(_MINO_MALE, dtype=object), np.array(_MINO_FEMALE, dtype=object)
    midx = np.flatnonzero(minority)
    if len(midx):
        own_part = np.where(male[midx], mm[rng.integers(0, len(mm), len(midx))], mf[rng.integers(0, len(mf), len(midx))])
        giv[midx] = own_part
        fam[midx] = mm[rng.integers(0, len(mm), len(midx))]
        # the household's man (head or spouse) is the father of its children
        father = {}
        for i in midx[np.isin(role[midx], (H, S)) & male[midx]]:
            father.setdefault(hh[i], giv[i])
        for i in midx:
            if role[i] == C and hh[i] in father:
                fam[i] = father[hh[i]]
    name = np.where(minority, giv + "·" + fam, fam + giv).astype(object)

    # ---- resident IDs ------------------------------------------------------------------
    id_region = np.where(migrant_h[hh] & ~((age < 18) & (rng.random(persons) < 0.5)), origin_h[hh], reg[hreg][hh])
    def draw_seq(m):  # 001-999, odd for men, even for women
        return np.where(m, 2 * rng.integers(0, 500, len(m)) + 1, 2 * rng.integers(1, 500, len(m)))

    seq = draw_seq(male)
    for _ in range(50):
        key = pd.Series(id_region.astype(object) + ymd.astype(object) + seq.astype(str).astype(object))
        dup = key.duplicated().to_numpy()
        if not dup.any():
            break
        seq[dup] = draw_seq(male[dup])
    rid = _ids_vectorised(id_region, ymd, seq)

    # ---- phones ------------------------------------------------------------------------
    p_phone = np.select([age < 12, age < 18, age < 60, age < 75], [0.0, 0.3, 0.93, 0.7], 0.4)
    has_phone = rng.random(persons) < p_phone
    phone = np.full(persons, "", dtype=object)
    nphone = int(has_phone.sum())
    numbers = _PHONE_PREFIXES[rng.integers(0, len(_PHONE_PREFIXES), nphone)] + \
        _zfill(rng.integers(0, 10 ** 8, nphone), 8)
    phone[has_phone] = numbers

    # ---- addresses (one per household) ------------------------------------------------
    reg_meta = [(x[1], x[2], x[3], x[4]) for x in _REGIONS]
    nums = rng.integers(1, 400, nh)
    bld = rng.integers(1, 30, nh)
    unit = rng.integers(1, 7, nh)
    floor_ = rng.integers(1, 33, nh)
    room = rng.integers(1, 9, nh)
    st = rng.integers(0, len(_STREETS), nh)
    sx = rng.integers(0, len(_STREET_SUFFIX), nh)
    cm = rng.integers(0, len(_COMMUNITIES), nh)
    cs = rng.integers(0, len(_COMMUNITY_SUFFIX), nh)
    tw = rng.integers(0, len(_TOWNS), nh)
    vl = rng.integers(0, len(_VILLAGES), nh)
    grp = rng.integers(1, 13, nh)
    a_prov = np.empty(nh, dtype=object)
    a_city = np.empty(nh, dtype=object)
    a_dist = np.empty(nh, dtype=object)
    a_rest = np.empty(nh, dtype=object)
    for h in range(nh):
        pv, ct, ds, urb = reg_meta[hreg[h]]
        a_prov[h], a_city[h], a_dist[h] = pv, ct, ds
        street = _STREETS[st[h]] + _STREET_SUFFIX[sx[h]]
        comm = _COMMUNITIES[cm[h]] + _COMMUNITY_SUFFIX[cs[h]]
        p2 = prov2[h]
        if not urb:
            if p2 == "44":
                a_rest[h] = f"{_TOWNS[tw[h]]}镇{_VILLAGES[vl[h]]}村{nums[h] % 120 + 1}号"
            else:
                a_rest[h] = f"{_TOWNS[tw[h]]}镇{_VILLAGES[vl[h]]}村{grp[h]}组{nums[h] % 120 + 1}号"
        elif p2 == "31":
            a_rest[h] = f"{street}{nums[h]}弄{bld[h]}号{floor_[h]}{room[h]:02d}室"
        elif p2 == "11":
            a_rest[h] = f"{street}{nums[h]}号院{bld[h]}号楼{unit[h]}单元{floor_[h]}{room[h]:02d}"
        elif p2 == "44":
            a_rest[h] = f"{street}{nums[h]}号{comm}{bld[h]}栋{floor_[h]}{room[h]:02d}房"
        else:
            a_rest[h] = f"{street}{nums[h]}号{comm}{bld[h]}栋{unit[h]}单元{floor_[h]}{room[h]:02d}室"
    address_h = a_prov + a_city + a_dist + a_rest

    # ---- education ---------------------------------------------------------------------
    rng = _rng(seed, 3)
    urban = urban_h[hh]
    econ_h = rng.normal(0.0, 1.0, nh)           # household economic class
    econ = econ_h[hh]
    compulsory = (age >= 6) & (age <= 15)
    p_out = np.where(urban, 0.03, 0.055) * np.where(econ < -1.0, 2.0, 1.0)
    r = rng.random(persons)
    enrolled = np.zeros(persons, dtype=bool)
    on_roll = np.zeros(persons, dtype=bool)
    enrolled[compulsory] = r[compulsory] >= p_out[compulsory]
    r2 = rng.random(persons)
    on_roll[compulsory] = enrolled[compulsory] | (r2[compulsory] < 0.5)
    upper = (age >= 16) & (age <= 17)
    enrolled[upper] = r[upper] < 0.88
    on_roll[upper] = enrolled[upper] | (r2[upper] < 0.3)
    uni = (age >= 18) & (age <= 22)
    enrolled[uni] = r[uni] < np.where(urban[uni], 0.62, 0.40) * np.where(econ[uni] < -1, 0.7, 1.0)
    on_roll[uni] = enrolled[uni]
    level = np.full(persons, "", dtype=object)
    level[(age >= 6) & (age <= 11)] = "primary"
    level[(age >= 12) & (age <= 14)] = "junior"
    sv = np.where(rng.random(persons) < 0.58, "senior", "vocational").astype(object)
    level[(age >= 15) & (age <= 17)] = sv[(age >= 15) & (age <= 17)]
    a15 = (age == 15) & (rng.random(persons) < 0.5)
    level[a15] = "junior"
    level[uni] = "university"

    # ---- health --------------------------------------------------------------------------
    p_ill = np.select([age < 18, age < 40, age < 60, age < 75], [0.005, 0.015, 0.045, 0.09], 0.14)
    ill = rng.random(persons) < p_ill

    # ---- employment, wages, pensions ----------------------------------------------------
    retire_age = np.where(male, 60, 55)
    student = enrolled & (age >= 16)
    working_age = (age >= 18) & (age < retire_age) & ~student
    retired = age >= retire_age
    p_unemp = np.clip(0.045 * np.exp(-0.8 * econ), 0.01, 0.30)
    p_unemp = np.where(ill, 0.35, p_unemp)
    p_olf = np.where(sizes[hh] == 1, 0.02, np.where(male, 0.06, 0.14))
    p_flex = np.where(urban, 0.15, 0.35)
    r = rng.random(persons)
    status = np.full(persons, "", dtype=object)
    wa = working_age
    st_un = wa & (r < p_unemp)
    st_olf = wa & ~st_un & (r < p_unemp + p_olf)
    st_flex = wa & ~st_un & ~st_olf & (r < p_unemp + p_olf + p_flex)
    st_emp = wa & ~st_un & ~st_olf & ~st_flex
    status[st_un] = "unemployed"
    status[st_flex] = "flexible"
    status[st_emp] = "employed"
    w_r = wage_r[hh]
    eps = rng.normal(0, 1, persons)
    wage = np.zeros(persons)
    young = np.where(age < 23, 0.7, 1.0)
    wage[st_emp] = (w_r * np.exp(0.40 * econ + 0.35 * eps) * young)[st_emp]
    wage[st_flex] = (0.5 * w_r * np.exp(0.40 * econ + 0.5 * eps) * young)[st_flex]
    wage = np.where(ill, wage * 0.6, wage)
    wage = np.round(wage / 10) * 10
    months = np.zeros(persons, dtype=np.int64)
    months[st_un] = np.minimum(rng.geometric(0.16, int(st_un.sum())), 60)
    # old people living alone (mostly widowed women) less often have an employee pension
    emp_pension = retired & (rng.random(persons) < np.where(urban, 0.70, 0.15) * np.where(sizes[hh] == 1, 0.6, 1.0))
    pension = np.where(emp_pension, 0.45 * w_r * np.exp(0.3 * econ + 0.2 * eps), 0.0)
    pension = np.where(retired & ~emp_pension, np.where(urban, 0.12, 0.08) * w_r * np.exp(0.15 * eps), pension)
    benefit = np.where(st_un & (months <= 12) & (rng.random(persons) < 0.6), 0.25 * w_r, 0.0)

    # household income (true): wages + pensions + benefits + transfers + farm income
    inc = np.bincount(hh, weights=wage + pension + benefit, minlength=nh)
    earners = np.bincount(hh, weights=(wage > 0).astype(float), minlength=nh)
    rt = rng.random(nh)
    # support from children or parents living elsewhere, for households without an earner
    all_old = np.bincount(hh, weights=(~retired).astype(float), minlength=nh) == 0
    transfer = np.where((earners == 0) & (rt < 0.85), np.where(all_old, 0.10, 0.20) * wage_r
                        * np.exp(0.5 * rng.normal(0, 1, nh)), 0.0)
    # rural households: farm income, and remittances from members working in the cities
    # (always for grandparents raising a left-behind grandchild)
    left_behind = np.array([t[0] == "left_behind" for t in _TEMPLATES])[tmpl]
    farm = np.where(~urban_h, rng.uniform(300, 1500, nh), 0.0)
    remit = np.where(left_behind | (~urban_h & (rng.random(nh) < 0.4)),
                     1500 * np.exp(0.5 * rng.normal(0, 1, nh)), 0.0)
    inc_true = np.round((inc + transfer + farm + remit) / 10) * 10
    line_h = np.array([pack.line_for(x[0]) for x in _REGIONS])[hreg]
    pc_true = inc_true / sizes

    # ---- dibao, inclusion errors, exit transition -------------------------------------
    rng = _rng(seed, 4)
    below = pc_true < line_h
    dibao = below & (rng.random(nh) < 0.75)
    n_legit = int(dibao.sum())
    declared = inc_true.copy()
    # exit transition: income has recovered to just above the line, allowance not yet withdrawn
    cand = np.flatnonzero(~below & (pc_true < 1.5 * line_h))
    n_exit = min(len(cand), int(round(n_legit * 0.20)))
    exit_h = rng.choice(cand, n_exit, replace=False) if n_exit else np.empty(0, dtype=np.int64)
    dibao[exit_h] = True
    # inclusion errors: declared income understated; a member earns well above or owns several homes
    hh_max_wage = np.zeros(nh)
    np.maximum.at(hh_max_wage, hh, wage)
    taken = np.zeros(nh, dtype=bool)
    taken[exit_h] = True
    cand = np.flatnonzero(~below & ~taken & (pc_true < 3.0 * line_h) & (sizes >= 2))
    n_incl = min(len(cand), int(round(n_legit * 0.30)))
    incl_h = rng.choice(cand, n_incl, replace=False) if n_incl else np.empty(0, dtype=np.int64)
    dibao[incl_h] = True
    declared[incl_h] = np.round(line_h[incl_h] * rng.uniform(0.55, 0.95, len(incl_h)) * sizes[incl_h] / 10) * 10
    incl = np.zeros(nh, dtype=bool)
    incl[incl_h] = True
    high_wage_line = pack.national_floor * pack.param("wage_above_line_factor")
    incl_p = incl[hh]
    # in an inclusion household with no wage above the line, the head owns several properties
    incl_assets_h = (incl & (hh_max_wage <= high_wage_line)) | (incl & (rng.random(nh) < 0.3))
    pc_declared = declared / sizes

    # ---- civil affairs coverage ------------------------------------------------------------
    ca_h = dibao | (pc_declared < pack.param("near_line_factor") * line_h) | (rng.random(nh) < 0.15)
    low_income_h = pc_true < pack.param("near_line_factor") * line_h

    # ---- housing -----------------------------------------------------------------------
    adult = age >= 18
    p_house = np.select([age < 18, age < 30, age < 60], [0.0, 0.20, 0.50], 0.42) * np.clip(1 + 0.25 * econ, 0.4, 1.8)
    in_house = adult & (rng.random(persons) < p_house)
    extra = (rng.random(persons) < np.clip(0.12 + 0.08 * econ, 0.02, 0.5)).astype(np.int64) + \
        (rng.random(persons) < np.clip(0.03 + 0.03 * econ, 0.0, 0.3)).astype(np.int64)
    props = 1 + extra
    dib_p = dibao[hh]
    legit_dib_p = dib_p & ~incl_p
    props = np.where(legit_dib_p, 1, props)
    subsidy = np.zeros(persons, dtype=np.int64)
    sub = adult & low_income_h[hh] & (rng.random(persons) < 0.2)
    in_house |= sub
    props = np.where(sub, 0, props)
    subsidy[sub] = 1
    head_p = role == H
    assets = incl_assets_h[hh] & head_p
    in_house |= assets
    props = np.where(assets, rng.integers(2, 5, persons), props)
    # inclusion error by wage: that earner is on the HR register
    hr_force = incl_p & (wage > high_wage_line)

    # ---- medical -----------------------------------------------------------------------
    rng = _rng(seed, 5)
    any_spend = rng.random(persons) < 0.35 + 0.4 * (age >= 60)
    oop = np.where(any_spend, np.exp(np.log(300 + 15 * age) + 1.6 * rng.normal(0, 1, persons)), 0.0)
    oop = np.where(ill, np.exp(np.log(16000) + 0.9 * rng.normal(0, 1, persons)), oop)
    oop = np.minimum(oop, 800000)
    hosp = rng.random(persons) < 0.06 + 0.10 * (age >= 60)
    inpatient = np.where(hosp, 1 + rng.poisson(6, persons), 0)
    inpatient = np.where(ill, 5 + np.floor(rng.gamma(2.0, 8.0, persons)).astype(np.int64), inpatient)

    # ---- absences ----------------------------------------------------------------------
    poor_p = (pc_declared[hh] < line_h[hh]) | dib_p
    chronic = rng.random(persons) < np.where(poor_p, 0.22, 0.02)
    absence = np.where(chronic, rng.integers(20, 46, persons), rng.poisson(2.5, persons))

    # ---- coverage per department ----------------------------------------------------------
    r = rng.random((6, persons))
    cover = {
        "population": r[0] < 0.98,
        "civil_affairs": ca_h[hh],
        "medical_insurance": r[2] < 0.90,
        "human_resources": ((st_emp & (r[3] < 0.90)) | (st_flex & (r[3] < 0.75)) | (st_un & (r[3] < 0.80))
                            | (emp_pension & (r[3] < 0.90)) | hr_force),
        "education": on_roll,
        "housing": in_house,
    }
    status_hr = np.where(emp_pension & (status == ""), "retired", status).astype(object)

    # ---- household ids ------------------------------------------------------------------
    pop_seq = np.zeros(nh, dtype=np.int64)
    order = rng.permutation(nh)
    pop_seq[order] = np.arange(nh)
    pop_hid = np.array([f"{reg[hreg[h]]}{pop_seq[h] % 10**7:07d}" for h in range(nh)], dtype=object)
    order = rng.permutation(nh)
    ca_seq = np.zeros(nh, dtype=np.int64)
    ca_seq[order] = np.arange(nh)
    ca_hid = np.array([f"DB{ref.year}{s:07d}" for s in ca_seq], dtype=object)

    def s(a):
        return np.asarray(a).astype(np.int64).astype(str).astype(object)

    def money(a, cents=False):
        return np.array([f"{x:.2f}" for x in a], dtype=object) if cents else s(np.round(a))

    values = {}
    members = {}
    for dept in DEPARTMENTS:
        members[dept] = np.flatnonzero(cover[dept])
    m = members["population"]
    values["population"] = {"household_id": pop_hid[hh[m]], "household_size": s(sizes[hh[m]]),
                            "region_code": reg[hreg][hh[m]].astype(object)}
    m = members["civil_affairs"]
    values["civil_affairs"] = {"household_id": ca_hid[hh[m]], "household_size": s(sizes[hh[m]]),
                               "household_monthly_income": s(declared[hh[m]]), "dibao": s(dibao[hh[m]]),
                               "region_code": reg[hreg][hh[m]].astype(object)}
    m = members["medical_insurance"]
    values["medical_insurance"] = {"out_of_pocket_12m": money(oop[m], cents=True), "major_illness": s(ill[m]),
                                   "inpatient_days_12m": s(inpatient[m])}
    m = members["human_resources"]
    mo = s(months[m])
    mo[status_hr[m] != "unemployed"] = ""
    wg = s(wage[m])
    wg[~np.isin(status_hr[m], ["employed", "flexible"])] = ""
    values["human_resources"] = {"employment_status": status_hr[m], "months_since_job_loss": mo, "monthly_wage": wg}
    m = members["education"]
    ab = s(absence[m])
    ab[~enrolled[m]] = ""
    values["education"] = {"enrolled": s(enrolled[m]), "school_level": level[m], "absence_days_term": ab}
    m = members["housing"]
    values["housing"] = {"properties_owned": s(props[m]), "housing_subsidy": s(subsidy[m])}

    pid = np.array([f"P{i:07d}" for i in range(persons)], dtype=object)
    person_df = pd.DataFrame({
        "person_id": pid, "household": hh, "role": np.array(list("HSCKGMF"))[role], "name": name,
        "sex": np.where(male, "M", "F"), "birth_date": iso.astype(object), "resident_id": rid,
        "address": address_h[hh], "phone": phone, "region_code": reg[hreg][hh].astype(object),
        "id_region": id_region.astype(object), "age": age, "minority": minority, "urban": urban,
        "household_size": sizes[hh],
    })
    hh_df = pd.DataFrame({
        "household": np.arange(nh), "size": sizes, "template": np.array([t[0] for t in _TEMPLATES])[tmpl],
        "region_code": reg[hreg], "province": a_prov, "city": a_city, "district": a_dist, "rest": a_rest,
        "income": inc_true, "declared_income": declared, "line": line_h, "dibao": dibao, "inclusion_error": incl,
        "exit_transition": np.isin(np.arange(nh), exit_h), "migrant": migrant_h, "minority": minority_h,
    })
    return World(reference_date, person_df, hh_df, members, values, fam, giv)


def true_persons(persons: int, seed: int = 0, reference_date: str = "2025-06-30") -> pd.DataFrame:
    """The true person table behind write_scenario(out, persons, seed, ...): person_id, name, sex (M/F),
    birth_date (ISO), resident_id (18 characters), address, phone, region_code, and more."""
    return build(persons, seed, reference_date).persons


# --------------------------------------------------------------------------------------
# Needs on the true data
def true_needs(world: World, pack: RulePack | None = None) -> pd.DataFrame:
    """person_id,need for what the pack finds on the true values and true coverage."""
    from agents.indicators import derive

    pack = pack or load_rulepack()
    as_of = date.fromisoformat(world.reference_date)
    n = len(world.persons)
    births = world.persons["birth_date"].to_numpy()
    facts: dict[str, np.ndarray] = {}
    for dept in DEPARTMENTS:
        m = world.members[dept]
        present = np.zeros(n, dtype=bool)
        present[m] = True
        facts[f"present:{dept}"] = present
        frame = pd.DataFrame({c: world.values[dept][c] for c in DEPARTMENT_COLUMNS[dept]})
        ind = derive(dept, frame, pd.Series(births[m]), pack, as_of)
        for col in ind.columns:
            v = np.zeros(n, dtype=bool)
            v[m] = ind[col].to_numpy() != 0
            facts[f"{dept}.{col}"] = v
    # Household indicators apply to every member, as the coordinator applies them
    # to the households it forms from the departments' household numbers: here
    # with the true household of each person a household register holds.
    household = world.persons["household"].to_numpy()
    registers = [(m, household[m]) for m in (world.members[d] for d in HOUSEHOLD_DEPARTMENTS)]
    facts = apply_households(pack, facts, household_labels(n, registers))
    rows = []
    chunk = 20000  # evaluate() looks facts up per flagged person: keep the arrays short
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        sub = {k: v[lo:hi] for k, v in facts.items()}
        rows.extend((lo + f.person, f.need) for f in evaluate(pack, sub, hi - lo))
    pids = world.persons["person_id"].to_numpy()
    df = pd.DataFrame({"person_id": [pids[p] for p, _ in rows], "need": [nd for _, nd in rows]})
    return df.sort_values(["person_id", "need"], kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------------------
# Rendering records with errors
_FULLWIDTH = str.maketrans("0123456789", "０１２３４５６７８９")


def _rate(name: str, scale: float) -> float:
    return float(min(1.0, max(0.0, ERROR_RATES[name] * scale)))


def _pinyin_name(fam: str, giv: str, minority: bool, form: int) -> str:
    if minority:
        first, second = [_py(c) for c in giv if c != "·"], [_py(c) for c in fam]
    else:
        first = [_SURNAME_PINYIN.get(fam) or "".join(_py(c) for c in fam)]  # compound surnames: one word
        second = [_py(c) for c in giv]
    if form == 0:
        out = "".join(first).capitalize() + " " + "".join(second).capitalize()
    elif form == 1:
        out = " ".join(x.upper() for x in first + second)
    elif form == 2:
        out = ("".join(first) + " " + "".join(second)).lower()
    else:
        out = " ".join(x.capitalize() for x in first + second)
    return out.strip()


def _homophone_swap(text: str, rng: np.random.Generator) -> str:
    homo = _homophones()
    spots = [i for i, c in enumerate(text) if c in homo]
    if not spots:
        return text
    i = spots[int(rng.integers(len(spots)))]
    alts = homo[text[i]]
    return text[:i] + alts[int(rng.integers(len(alts)))] + text[i + 1:]


def _render_names(world: World, idx: np.ndarray, rng: np.random.Generator, scale: float) -> np.ndarray:
    n = len(idx)
    out = world.persons["name"].to_numpy()[idx].copy()
    mino = world.persons["minority"].to_numpy()[idx]
    homo = rng.random(n) < _rate("name_homophone", scale)
    drop = rng.random(n) < _rate("name_dropextra", scale)
    piny = rng.random(n) < _rate("name_pinyin", scale)
    dotv = mino & (rng.random(n) < _rate("name_dot_variant", scale)) & ~piny
    todo = np.flatnonzero(homo | drop | piny | dotv)
    u = rng.random((len(todo), 4))
    fchars = _FEMALE_CHARS + _MALE_CHARS
    for j, k in enumerate(todo):
        p = idx[k]
        f, g, mi = world.fam[p], world.giv[p], bool(mino[k])
        if homo[k]:
            if mi and u[j, 0] < 0.5:
                f = _homophone_swap(f, rng)
            else:
                g = _homophone_swap(g, rng)
        if drop[k]:
            if mi and u[j, 1] < 0.5:
                f = ""  # the father's part left out
            elif len(g) >= 2 and u[j, 1] < 0.75:
                i = int(rng.integers(len(g)))
                g = g[:i] + g[i + 1:]
            else:
                i = int(rng.integers(len(g) + 1))
                g = g[:i] + fchars[int(rng.integers(len(fchars)))] + g[i:]
        if piny[k]:
            out[k] = _pinyin_name(f, g, mi, int(u[j, 2] * 4))
        elif mi:
            dot = _DOT_VARIANTS[int(u[j, 3] * len(_DOT_VARIANTS))] if dotv[k] else "·"
            out[k] = g + (dot + f if f else "")
        else:
            out[k] = f + g
    return out


def _valid_ymd(s: str, ref: date) -> bool:
    try:
        d = date(int(s[:4]), int(s[4:6]), int(s[6:8]))
    except ValueError:
        return False
    return date(1900, 1, 1) <= d <= ref


def _render_dates(world: World, idx: np.ndarray, rng: np.random.Generator, scale: float, habit: str) -> np.ndarray:
    n = len(idx)
    ref = date.fromisoformat(world.reference_date)
    iso = world.persons["birth_date"].to_numpy()[idx].astype("U10")
    y = iso.astype("U4").astype(np.int64)
    mo = np.array([int(x[5:7]) for x in iso]) if n else np.zeros(0, dtype=np.int64)
    d = np.array([int(x[8:10]) for x in iso]) if n else np.zeros(0, dtype=np.int64)
    swap = (rng.random(n) < _rate("date_swap", scale)) & (d <= 12) & (d != mo)
    mo, d = np.where(swap, d, mo), np.where(swap, mo, d)
    digit = np.flatnonzero(rng.random(n) < _rate("date_digit", scale))
    for k in digit:
        s = f"{y[k]:04d}{mo[k]:02d}{d[k]:02d}"
        for _ in range(20):
            i = int(rng.integers(2, 8))
            c = str(int(rng.integers(10)))
            t = s[:i] + c + s[i + 1:]
            if t != s and _valid_ymd(t, ref):
                y[k], mo[k], d[k] = int(t[:4]), int(t[4:6]), int(t[6:8])
                break
    blank = rng.random(n) < _rate("date_blank", scale)
    forms = np.full(n, _DATE_FORMS.index(habit))
    mix = rng.random(n) < _FORMAT_MIX
    forms[mix] = rng.integers(0, len(_DATE_FORMS), int(mix.sum()))
    ys = y.astype(str).astype(object)
    m1, d1 = mo.astype(str).astype(object), d.astype(str).astype(object)
    m2 = _zfill(mo, 2)
    d2 = _zfill(d, 2)
    out = np.select([forms == 0, forms == 1, forms == 2],
                    [ys + "-" + m2 + "-" + d2, ys + "/" + m1 + "/" + d1, ys + m2 + d2],
                    ys + "年" + m1 + "月" + d1 + "日") if n else np.zeros(0, dtype=object)
    out = out.astype(object)
    out[blank] = ""
    return out


def _render_ids(world: World, idx: np.ndarray, rng: np.random.Generator, scale: float) -> np.ndarray:
    n = len(idx)
    out = world.persons["resident_id"].to_numpy()[idx].copy()
    born = world.persons["birth_date"].to_numpy()[idx]
    u = rng.random(n)
    r_blank, r_legacy = _rate("id_blank", scale), _rate("id_legacy15", scale)
    r_mis, r_tr = _rate("id_mistype", scale), _rate("id_transpose", scale)
    edges = np.cumsum([r_blank, r_legacy, r_mis, r_tr])
    kind = np.searchsorted(edges, u, side="right")  # 0 blank, 1 legacy, 2 mistype, 3 transpose, 4 none
    for k in np.flatnonzero(kind < 4):
        v = out[k]
        if kind[k] == 0:
            out[k] = ""
        elif kind[k] == 1:
            if born[k] < "2000":
                out[k] = v[:6] + v[8:14] + v[14:17]
        elif kind[k] == 2:
            i = int(rng.integers(17))
            c = str((int(v[i]) + int(rng.integers(1, 10))) % 10)
            out[k] = v[:i] + c + v[i + 1:]
        else:
            spots = [i for i in range(17) if v[i] != v[i + 1]]
            i = spots[int(rng.integers(len(spots)))]
            out[k] = v[:i] + v[i + 1] + v[i] + v[i + 2:]
    lower = rng.random(n) < _rate("id_lower_x", scale)
    for k in np.flatnonzero(lower):
        if out[k].endswith("X"):
            out[k] = out[k][:-1] + "x"
    return out


def _render_addresses(world: World, idx: np.ndarray, rng: np.random.Generator, scale: float) -> np.ndarray:
    n = len(idx)
    hhs = world.households
    h = world.persons["household"].to_numpy()[idx].copy()
    moved = rng.random(n) < _rate("addr_moved", scale)
    h[moved] = rng.integers(0, len(hhs), int(moved.sum()))
    prov = hhs["province"].to_numpy()[h]
    city = hhs["city"].to_numpy()[h]
    dist = hhs["district"].to_numpy()[h]
    rest = hhs["rest"].to_numpy()[h]
    u = rng.random(n)
    r2, r1 = _rate("addr_no_province_city", scale), _rate("addr_no_province", scale)
    no_pc = u < r2
    no_p = ~no_pc & (u < min(1.0, r1 + r2))
    prov = np.where(no_p | no_pc, "", prov)
    city = np.where(no_pc, "", city)
    dist = np.where(rng.random(n) < _rate("addr_no_district", scale), "", dist)
    spaces = rng.random(n) < _rate("addr_spaces", scale)
    out = (prov + city + dist + rest).astype(object)
    for k in np.flatnonzero(spaces):
        out[k] = " ".join(x for x in (prov[k], city[k], dist[k], rest[k]) if x)
    for k in np.flatnonzero(rng.random(n) < _rate("addr_fullwidth", scale)):
        out[k] = out[k].translate(_FULLWIDTH)
    return out


def _render_phones(world: World, idx: np.ndarray, rng: np.random.Generator, scale: float, share: float,
                   dept: str) -> np.ndarray:
    n = len(idx)
    p = world.persons
    phone = p["phone"].to_numpy()
    out = phone[idx].copy()
    if dept == "education":
        # the school roll lists a guardian's phone for a child without one
        parents = p[p["role"].isin(["H", "S"]) & (p["phone"] != "")].drop_duplicates("household")
        guard = dict(zip(parents["household"].to_numpy(), parents["phone"].to_numpy()))
        hh = p["household"].to_numpy()[idx]
        none = out == ""
        out[none] = np.array([guard.get(x, "") for x in hh[none]], dtype=object)
    keep = rng.random(n) < share
    out[~keep] = ""
    u = rng.random(n)
    blank = u < _rate("phone_blank", scale)
    changed = ~blank & (u < _rate("phone_blank", scale) + _rate("phone_changed", scale)) & (out != "")
    out[blank] = ""
    nc = int(changed.sum())
    out[changed] = _PHONE_PREFIXES[rng.integers(0, len(_PHONE_PREFIXES), nc)] + \
        _zfill(rng.integers(0, 10 ** 8, nc), 8)
    return out


def _render_sex(world: World, idx: np.ndarray, rng: np.random.Generator, scale: float, habit: str) -> np.ndarray:
    n = len(idx)
    male = world.persons["sex"].to_numpy()[idx] == "M"
    cn = (habit == "cn") != (rng.random(n) < _SEX_MIX)
    out = np.where(cn, np.where(male, "男", "女"), np.where(male, "M", "F")).astype(object)
    out[rng.random(n) < _rate("sex_blank", scale)] = ""
    return out


def render_department(world: World, dept: str, seed: int, error_scale: float = 1.0) -> tuple[pd.DataFrame, np.ndarray]:
    """A department's extract (rows in file order) and the person index behind each row."""
    sex_habit, date_habit, phone_share, prefix = _HABITS[dept]
    rng = _rng(seed, 100, _DEPT_SEED[dept])
    order = rng.permutation(len(world.members[dept]))
    idx = world.members[dept][order]
    start = int(rng.integers(10 ** 6, 10 ** 7))
    rid = prefix + _zfill(start + np.arange(len(idx)), 8)
    cols = {
        "record_id": rid,
        "name": _render_names(world, idx, _rng(seed, 101, _DEPT_SEED[dept]), error_scale),
        "sex": _render_sex(world, idx, _rng(seed, 102, _DEPT_SEED[dept]), error_scale, sex_habit),
        "birth_date": _render_dates(world, idx, _rng(seed, 103, _DEPT_SEED[dept]), error_scale, date_habit),
        "resident_id": _render_ids(world, idx, _rng(seed, 104, _DEPT_SEED[dept]), error_scale),
        "address": _render_addresses(world, idx, _rng(seed, 105, _DEPT_SEED[dept]), error_scale),
        "phone": _render_phones(world, idx, _rng(seed, 106, _DEPT_SEED[dept]), error_scale, phone_share, dept),
    }
    for c in DEPARTMENT_COLUMNS[dept]:
        cols[c] = world.values[dept][c][order]
    return pd.DataFrame(cols, columns=list(IDENTITY_COLUMNS) + list(DEPARTMENT_COLUMNS[dept])), idx


# --------------------------------------------------------------------------------------
def write_scenario(out: Path, persons: int, seed: int = 0, error_scale: float = 1.0,
                   reference_date: str = "2025-06-30") -> dict:
    """Write a scenario folder (DATA_FORMAT.md) for `persons` synthetic persons; return a summary."""
    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pack = load_rulepack()
    world = build(persons, seed, reference_date, pack)
    t_build = time.perf_counter() - t0
    pids = world.persons["person_id"].to_numpy()
    truth = []
    records = {}
    for dept in DEPARTMENTS:
        frame, idx = render_department(world, dept, seed, error_scale)
        frame.to_csv(out / f"{dept}.csv", index=False, encoding="utf-8")
        truth.append(pd.DataFrame({"department": dept, "record_id": frame["record_id"].to_numpy(),
                                   "person_id": pids[idx]}))
        records[dept] = len(frame)
    pd.concat(truth, ignore_index=True).to_csv(out / "truth.csv", index=False, encoding="utf-8")
    t_render = time.perf_counter() - t0 - t_build
    needs = true_needs(world, pack)
    needs.to_csv(out / "needs.csv", index=False, encoding="utf-8")
    (out / "scenario.toml").write_text(
        f"# synthetic scenario: bench.synth persons={persons} seed={seed} error_scale={error_scale}\n"
        f"[project]\nreference_date = \"{reference_date}\"\n", encoding="utf-8")
    counts = needs["need"].value_counts()
    return {
        "persons": persons, "households": len(world.households), "seed": seed, "error_scale": error_scale,
        "reference_date": reference_date, "records": records,
        "needs": {nd: int(counts.get(nd, 0)) for nd in pack.needs},
        "seconds": {"build": round(t_build, 2), "render_write": round(t_render, 2),
                    "needs": round(time.perf_counter() - t0 - t_build - t_render, 2),
                    "total": round(time.perf_counter() - t0, 2)},
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.synth", description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--persons", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--error-scale", type=float, default=1.0)
    ap.add_argument("--reference-date", default="2025-06-30")
    a = ap.parse_args(argv)
    summary = write_scenario(a.out, a.persons, a.seed, a.error_scale, a.reference_date)
    print(json.dumps(summary, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
