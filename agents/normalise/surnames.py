"""Surnames, and a married woman's name with her husband's surname in front (冠夫姓).

Some registers write a married woman under her husband's surname followed by her
own full name: 陈王秀英 for 王秀英 (married to a 陈), the custom of women married
before the 1950s and of Hong Kong and Macau, while other registers hold her as
王秀英. `own_name` takes the husband's surname off, so both come out 王秀英: the
prefix is a register's habit, not part of her identity, and left on it costs the
pair a quarter of its name characters and most of its pinyin bigrams.

A name is read as married only where nothing else fits as well: a common single
surname, then the woman's own surname (single or compound) and a given name of two
characters. Anything shorter stays as written (陈王丽 may be a 陈 whose given name is
王丽), and so does a name whose first two characters are a compound surname
(欧阳秀英, 夏侯素珍, 诸葛明华) or whose first character is not a common surname
(the transliterated minority names: 艾合买提, 卓玛央金, 祖丽菲亚). Two different
women stay two: 陈王秀英 and 陈李秀英 come out 王秀英 and 李秀英.
"""
from __future__ import annotations

# Single-character surnames, the commonest first: the top 100 of the Ministry of
# Public Security's household-register name report for 2020 (《二〇二〇年全国姓名报告》,
# about 85 % of people), the next common ones of the national rankings (to about
# 95 %), and the Cantonese surnames common in Hong Kong and Macau, all in simplified
# script (normalise_name converts before reading). A husband's surname outside the
# list leaves the name as written: no gain, and no harm.
COMMON_SURNAMES = frozenset(
    # top 100, 2020
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林高罗郑梁谢宋唐许韩邓冯曹彭曾肖田董潘袁蔡蒋余于杜叶程魏苏吕丁"
    "任卢姚沈钟姜崔谭陆范汪廖石金韦贾夏付方邹熊白孟秦邱侯江尹薛闫段雷龙黎史陶贺毛郝顾龚邵万覃武钱戴"
    "严莫孔向常"
    # the next common ones
    "汤康易乔赖文施洪辛柴牛樊安齐伍庞颜倪温俞章鲁葛耿殷申聂焦季祝关左包涂纪翟岳凌成甘卜柳舒阎游兰邢"
    "褚边童苗尚宁穆符尤靳祁艾项霍桂房傅巩时卓屈管吉蓝杭冉阮沙盛窦毕卫裴鲍晏池车宫鞠裘单解仇区查楼简"
    "饶路景宗臧商娄佟奚明郁滕梅骆阳鄂麦容占湛敖詹幸冀达柯苟农连谷胥麻栾卞鲜蔺全封"
    # Cantonese ones of Hong Kong and Macau not above
    "邝岑冼甄欧翁巫戚利"
)

# Compound surnames (复姓): their two characters are one surname, never a husband's
# and a wife's. Several are two common single surnames side by side (欧 阳, 夏 侯,
# 诸 葛, 司 马), which is why the list is needed.
COMPOUND_SURNAMES = frozenset("""
欧阳 司马 诸葛 上官 东方 皇甫 尉迟 公孙 慕容 长孙 令狐 宇文 司徒 夏侯 轩辕 澹台 万俟 单于 钟离 端木
西门 南宫 独孤 呼延 申屠 太史 闻人 赫连 濮阳 公冶 拓跋 百里 东郭 左丘 梁丘 宗政 仲孙 叔孙 闾丘 亓官
司空 子车 颛孙 羊舌 微生 第五 乐正 鲜于 段干 谷梁 公羊 公良 漆雕 巫马 南门 东门 西门 壤驷 乐正 司寇
""".split())

_GIVEN_LENGTH = 2  # a given name the rule trusts: two characters (one would be ambiguous, above)


def _surname_at(name: str, i: int) -> int:
    """The length of the surname that starts name[i] (2 compound, 1 single), 0 if none."""
    if name[i:i + 2] in COMPOUND_SURNAMES:
        return 2
    return 1 if name[i:i + 1] in COMMON_SURNAMES else 0


def own_name(name: str) -> str:
    """`name` (simplified Han characters, nothing else) without a husband's surname in
    front: 陈王秀英 -> 王秀英, 陈欧阳秀英 -> 欧阳秀英, 欧阳王秀英 -> 王秀英; any other name
    as it is."""
    if not 4 <= len(name) <= 6:
        return name
    husband = _surname_at(name, 0)
    if husband == 0:
        return name
    own = _surname_at(name, husband)
    if own == 0 or len(name) != husband + own + _GIVEN_LENGTH:
        return name
    return name[husband:]
