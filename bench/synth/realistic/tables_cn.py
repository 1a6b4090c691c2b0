"""The public tables a realistic population is drawn from: surnames at their national
shares, given names by birth cohort and sex, minority names with their variant spellings,
migrants' home counties, permit-number prefixes. Sources in docs/quality.md."""
from __future__ import annotations

# Top 100 surnames in the ranking of the Ministry of Public Security's household-register
# name report for 2020 (《二〇二〇年全国姓名报告》), shares of the whole population in %:
# the top five from the report's counts (王 李 张 刘 陈 together 30.5 %), the rest rounded
# from the published rankings; together the 100 cover about 85 % of people.
SURNAMES_TOP100 = """
王 7.12 李 7.05 张 6.70 刘 5.15 陈 4.50 杨 3.40 黄 2.35 赵 2.27 吴 2.05 周 1.97
徐 1.55 孙 1.50 马 1.35 朱 1.30 胡 1.28 郭 1.22 何 1.20 林 1.13 高 1.12 罗 1.06
郑 0.99 梁 0.95 谢 0.85 宋 0.80 唐 0.78 许 0.75 韩 0.73 邓 0.71 冯 0.70 曹 0.68
彭 0.66 曾 0.63 肖 0.62 田 0.61 董 0.58 潘 0.55 袁 0.54 蔡 0.53 蒋 0.52 余 0.51
于 0.50 杜 0.49 叶 0.48 程 0.47 魏 0.46 苏 0.45 吕 0.44 丁 0.43 任 0.42 卢 0.41
姚 0.40 沈 0.39 钟 0.38 姜 0.37 崔 0.36 谭 0.35 陆 0.34 范 0.33 汪 0.32 廖 0.31
石 0.31 金 0.30 韦 0.30 贾 0.29 夏 0.28 付 0.28 方 0.27 邹 0.27 熊 0.26 白 0.26
孟 0.25 秦 0.25 邱 0.24 侯 0.24 江 0.23 尹 0.23 薛 0.22 闫 0.22 段 0.21 雷 0.21
龙 0.20 黎 0.20 史 0.20 陶 0.19 贺 0.19 毛 0.18 郝 0.18 顾 0.18 龚 0.17 邵 0.17
万 0.16 覃 0.16 武 0.16 钱 0.15 戴 0.15 严 0.15 莫 0.14 孔 0.14 向 0.14 常 0.13
"""
# The rest (about 15 %): less common surnames, shares falling with rank (Zipf), and the
# compound surnames.
SURNAMES_TAIL = (
    "汤康易乔赖文施洪辛柴牛樊安齐伍庞颜倪温俞章鲁葛耿殷申聂焦季祝关左包涂纪翟岳蒙凌成甘卜柳舒阎游"
    "兰邢褚边童苗尚宁穆符尤靳祁艾项霍桂房傅巩时卓屈管吉蓝杭冉阮沙盛窦毕卫裴鲍晏池车宫鞠裘单解仇"
    "区查楼简饶路景宗臧商娄佟奚明郁滕梅骆阳鄂麦容占湛敖詹幸冀达柯苟农连谷胥麻栾卞鲜蔺全封"
)
SURNAMES_TAIL_SHARE = 14.3
SURNAMES_COMPOUND = {"欧阳": 0.05, "司徒": 0.02, "司马": 0.01, "上官": 0.01, "诸葛": 0.01, "东方": 0.005,
                     "皇甫": 0.005, "慕容": 0.004, "令狐": 0.004, "尉迟": 0.002}

# Given names by birth cohort and sex: the commonest, most frequent first (from the
# household-register name reports' tables of the commonest names of each decade), and the
# share of people of the cohort who carry one of them. The others are composed of one or
# two characters (bench.synth.tables MALE_CHARS / FEMALE_CHARS).
COHORTS = (1960, 1980, 1995, 2010)  # upper bounds (exclusive) of the first four cohorts
TOP_GIVEN = {
    ("M", 0): "建国 建华 国华 志明 建平 德明 国强 福生 建军 志刚 文华 明 伟 强 刚 平 军 华 林 永福 长林 玉林 "
              "德胜 国庆 建设 卫东 红兵 援朝 胜利 解放 树林 金生 宝山 富贵 振华 文斌 海 忠 荣",
    ("M", 1): "伟 勇 军 强 斌 刚 平 建军 建华 华 明 辉 林 峰 波 涛 建平 海 东 红 杰 建 文 兵 建国 志强 卫东 "
              "卫国 红军 小平 志刚 国平",
    ("M", 2): "伟 磊 勇 涛 强 军 杰 鹏 超 斌 浩 亮 刚 明 辉 波 飞 帅 健 建 宁 龙 俊 凯 华 峰 鑫 洋",
    ("M", 3): "浩 宇 杰 鑫 鹏 磊 俊杰 浩然 子豪 帅 博 文博 宇航 浩宇 晨 旭 俊 凯 家豪 嘉豪 子轩 一鸣 超",
    ("M", 4): "浩宇 浩然 宇轩 子轩 宇航 梓豪 子墨 奕辰 宇辰 亦辰 皓轩 一鸣 俊熙 沐阳 梓睿 铭泽 子豪 思远 博文 睿",
    ("F", 0): "秀英 桂英 秀兰 玉兰 桂兰 秀珍 凤英 玉珍 玉英 兰英 淑珍 秀云 玉梅 桂芳 翠兰 秀芳 素珍 淑英 凤兰 "
              "桂珍 美华 爱华 红梅 玉华 秀华 桂香",
    ("F", 1): "丽 艳 红 梅 燕 霞 芳 华 玲 敏 萍 红梅 英 娟 静 丽华 秀梅 红霞 丽萍 海燕 春梅 晓红 小红",
    ("F", 2): "静 丽 燕 艳 娟 敏 芳 婷 霞 丹 玲 倩 洁 颖 慧 莉 雪 晶 萍 琳 红 娜",
    ("F", 3): "婷 欣怡 雪 倩 佳怡 静 颖 丹 雨 婧 佳 欣 怡 梦 雨婷 思雨 宇 晨 璐 悦",
    ("F", 4): "一诺 梓涵 欣怡 子涵 依诺 语桐 可馨 欣妍 雨桐 梦瑶 梓萱 诗涵 紫涵 若汐 语嫣 佳怡 诗琪 雨涵 "
              "思涵 梓琪",
}
TOP_SHARE = (0.38, 0.38, 0.32, 0.24, 0.27)     # per cohort: share with a name of the top table
SINGLE_SHARE = (0.12, 0.30, 0.30, 0.14, 0.08)  # per cohort: share of composed names of one character
# Siblings sharing a generation character (字辈): share of families, by the eldest child's cohort.
GENERATION_SHARE = (0.55, 0.45, 0.30, 0.15, 0.10)
TWIN_SHARE = 0.012  # share of children born as a twin pair (China: about 1.2 % of births)

# Uyghur name parts: the usual transliteration first, then the variants registers also use.
UYGHUR_VARIANTS = {
    "买买提": ["麦麦提", "买买体"], "艾力": ["阿力", "艾立"], "吐尔逊": ["吐尔孙", "图尔逊"],
    "阿不都": ["阿卜杜", "阿布都"], "艾合买提": ["艾合麦提", "艾海买提"], "玉苏甫": ["玉素甫", "尤素甫"],
    "热合曼": ["热合满", "热依曼"], "努尔": ["奴尔"], "肉孜": ["如孜", "肉孜"], "伊力哈木": ["依力哈木"],
    "阿里木": ["阿力木"], "亚森": ["牙森"], "库尔班": ["库尔邦"], "艾山": ["艾散"], "吾买尔": ["乌买尔"],
    "阿迪力": ["阿迪里"], "依明": ["伊明"], "卡德尔": ["卡迪尔"], "艾尼瓦尔": ["艾尼娃尔"],
    "古丽": ["姑丽"], "阿依古丽": ["阿依姑丽", "阿伊古丽"], "热依拉": ["热依兰"], "帕提古丽": ["帕提姑丽"],
    "米热古丽": ["米日古丽"], "努尔古丽": ["努尔姑丽"], "阿依努尔": ["阿伊努尔"], "迪丽努尔": ["迪力努尔"],
    "古再丽": ["古再力"], "祖丽菲亚": ["祖力菲亚"], "麦尔哈巴": ["买尔哈巴"], "阿依夏木": ["阿依夏姆"],
    "玛依拉": ["玛伊拉"], "古丽娜": ["姑丽娜"],
}
UYGHUR_MALE = ("买买提 艾力 吐尔逊 阿不都 艾合买提 玉苏甫 热合曼 努尔 肉孜 伊力哈木 阿里木 亚森 库尔班 艾山 "
               "吾买尔 阿迪力 依明 卡德尔 艾尼瓦尔").split()
UYGHUR_FEMALE = ("古丽 阿依古丽 热依拉 帕提古丽 米热古丽 努尔古丽 阿依努尔 迪丽努尔 古再丽 祖丽菲亚 麦尔哈巴 "
                 "阿依夏木 玛依拉 古丽娜").split()
# The separator between own and father's name: the standard middle dot first.
UYGHUR_SEPARATORS = ["·", "•", "．", ".", "・", " ", ""]

# Tibetan names (no surname; one or two parts): Lhasa (Ü-Tsang) spelling -> Amdo spelling.
TIBETAN_LHASA_AMDO = {
    "次仁": "才让", "多吉": "多杰", "索朗": "索南", "拉姆": "拉毛", "次旦": "才旦", "丹增": "旦增",
    "贡布": "贡保", "嘉措": "加措", "罗布": "洛布", "平措": "彭措", "旺堆": "旺丹", "桑珠": "桑周",
    "扎西": "扎西", "尼玛": "尼玛", "达瓦": "达哇", "卓玛": "卓玛", "央金": "央金", "白玛": "华旦",
    "格桑": "格桑", "顿珠": "东主", "德吉": "德吉", "曲珍": "切吉", "普布": "普布", "巴桑": "巴桑",
}
TIBETAN_MALE = "次仁 多吉 索朗 次旦 丹增 贡布 嘉措 罗布 平措 旺堆 桑珠 扎西 尼玛 达瓦 格桑 顿珠 普布 巴桑".split()
TIBETAN_FEMALE = "卓玛 拉姆 央金 白玛 德吉 曲珍 次仁 达瓦 尼玛 格桑 扎西".split()
# Tibetan households, by province prefix of the district (Sichuan and Gansu have Amdo and
# Kham areas; elsewhere a few in the cities).
TIBETAN_SHARE = {"51": 0.03, "62": 0.03}
TIBETAN_ELSEWHERE = 0.001

# Migrants' home counties (bench.synth.tables ORIGINS): province, city, county, urban.
ORIGIN_PLACES = {
    "411621": ("河南省", "周口市", "扶沟县", 0), "411627": ("河南省", "周口市", "太康县", 0),
    "430524": ("湖南省", "邵阳市", "隆回县", 0), "431121": ("湖南省", "永州市", "祁阳县", 0),
    "360733": ("江西省", "赣州市", "会昌县", 0), "450821": ("广西壮族自治区", "贵港市", "平南县", 0),
    "511321": ("四川省", "南充市", "南部县", 0), "500228": ("重庆市", "", "梁平县", 0),
    "621121": ("甘肃省", "定西市", "通渭县", 0), "441823": ("广东省", "清远市", "阳山县", 0),
    "445281": ("广东省", "揭阳市", "普宁市", 0), "440881": ("广东省", "湛江市", "廉江市", 0),
    "420106": ("湖北省", "武汉市", "武昌区", 1), "341221": ("安徽省", "阜阳市", "临泉县", 0),
    "522422": ("贵州省", "毕节市", "大方县", 0), "653121": ("新疆维吾尔自治区", "喀什地区", "疏附县", 0),
    "653101": ("新疆维吾尔自治区", "喀什地区", "喀什市", 1), "650104": ("新疆维吾尔自治区", "乌鲁木齐市", "新市区", 1),
}

# Hong Kong, Macau and Taiwan residents living on the mainland: share of households by
# city (the district code's first four digits), and which of the three.
PERMIT_SHARE = {"4403": 0.020, "4401": 0.008, "4406": 0.006, "3101": 0.004, "1101": 0.002}
PERMIT_ELSEWHERE = 0.0005
PERMIT_ORIGIN = (("HK", 0.75), ("MO", 0.10), ("TW", 0.15))
# Residence permit numbers (港澳台居民居住证, since 2018) start with these six digits.
PERMIT_REGION = {"HK": "810000", "MO": "820000", "TW": "830000"}
PERMIT_RESIDENCE_SHARE = 0.6  # holders who have taken out a residence permit
