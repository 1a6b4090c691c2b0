"""Order-free pinyin syllables and a coarse phonetic key of a name.

Registers write one person's name as 王小慧, "WANG Xiaohui", "Xiaohui Wang",
"wang xiao hui" or "WANGXIAOHUI"; `name_syllables` gives all of them the same
value: the toneless syllables, sorted. Transliterated minority names are
written with different characters for one sound (艾力 / 阿力, 买买提 / 麦麦提,
次仁 / 才让, 多吉 / 多杰) and often without the father's part; `name_phonetic`
gives each part of the name a coarse consonant key, and the first part (the
person's own name) a token of its own, so those variants share tokens.
"""
from __future__ import annotations

from functools import lru_cache

from agents.normalise.names import name_parts, pinyin_pieces
from agents.normalise.unicode_forms import DEFAULT_SCRIPT

# The toneless syllables of Mandarin as pypinyin reads the URO block (ü as u,
# so lü and lüe are lu and lue), and the interjections it reads as m, n, hm.
SYLLABLES = frozenset("""
a ai an ang ao ba bai ban bang bao bei ben beng bi bian biao bie bin bing bo bu ca cai can cang cao ce cen
ceng cha chai chan chang chao che chen cheng chi chong chou chu chua chuai chuan chuang chui chun chuo ci
cong cou cu cuan cui cun cuo da dai dan dang dao de den deng di dian diao die ding diu dong dou du duan dui
dun duo e ei en eng er fa fan fang fei fen feng fiao fo fou fu ga gai gan gang gao ge gei gen geng gong gou
gu gua guai guan guang gui gun guo ha hai han hang hao he hei hen heng hm hong hou hu hua huai huan huang hui
hun huo ji jia jian jiang jiao jie jin jing jiong jiu ju juan jue jun ka kai kan kang kao ke ken keng kong
kou ku kua kuai kuan kuang kui kun kuo la lai lan lang lao le lei leng li lia lian liang liao lie lin ling
liu lo long lou lu luan lue lun luo m ma mai man mang mao me mei men meng mi mian miao mie min ming miu mo
mou mu n na nai nan nang nao ne nei nen neng ni nian niang niao nie nin ning niu nong nou nu nuan nue nun
nuo o ou pa pai pan pang pao pei pen peng pi pian piao pie pin ping po pou pu qi qia qian qiang qiao qie
qin qing qiong qiu qu quan que qun ran rang rao re ren reng ri rong rou ru rua ruan rui run ruo sa sai san
sang sao se sen seng sha shai shan shang shao she shen sheng shi shou shu shua shuai shuan shuang shui shun
shuo si song sou su suan sui sun suo ta tai tan tang tao te teng ti tian tiao tie ting tong tou tu tuan
tui tun tuo wa wai wan wang wei wen weng wo wu xi xia xian xiang xiao xie xin xing xiong xiu xu xuan xue
xun ya yan yang yao ye yi yin ying yo yong you yu yuan yue yun za zai zan zang zao ze zei zen zeng zha zhai
zhan zhang zhao zhe zhen zheng zhi zhong zhou zhu zhua zhuai zhuan zhuang zhui zhun zhuo zi zong zou zu
zuan zui zun zuo
""".split())
_LONGEST = max(map(len, SYLLABLES))


@lru_cache(maxsize=1 << 16)
def split_syllables(word: str) -> tuple[str, ...]:
    """A run-together pinyin word cut into the fewest syllables ("xiaohui" -> xiao, hui);
    the longer first syllable wins a tie, so "xian" stays one. A word that is not
    all pinyin (a foreign name, a typo) is kept whole."""
    n = len(word)
    best: list[tuple[str, ...] | None] = [None] * (n + 1)
    best[n] = ()
    for i in range(n - 1, -1, -1):
        for j in range(min(n, i + _LONGEST), i, -1):  # longest first: ties keep the longer
            rest = best[j]
            if rest is not None and word[i:j] in SYLLABLES and (best[i] is None or len(rest) + 1 < len(best[i])):
                best[i] = (word[i:j],) + rest
    return best[0] if best[0] is not None else (word,)


def _syllables(part: str) -> list[str]:
    out: list[str] = []
    for reading, from_characters in pinyin_pieces(part):
        # A compound surname's reading (moqi) is cut like a Latin word.
        out.extend(split_syllables(reading) if not from_characters or reading not in SYLLABLES else (reading,))
    return out


def name_syllables(raw: str, script: str = DEFAULT_SCRIPT) -> str:
    """The toneless pinyin syllables of a name, sorted, space-separated; "" if none.

    王小慧, "WANG Xiaohui", "Xiaohui Wang", "wang xiao-hui" and "WANGXIAOHUI" all
    give "hui wang xiao": word order, spacing, case and ü spellings do not matter.
    """
    if not raw:
        return ""
    return _name_syllables_cached(raw, script)


@lru_cache(maxsize=1 << 17)
def _name_syllables_cached(raw: str, script: str) -> str:
    return " ".join(sorted(s for part in name_parts(raw, script) for s in _syllables(part)))


# The coarse key: each syllable's initial in a group of sounds that
# transliterations and dialects confuse, plus N for a nasal final; vowels
# (where Lhasa and Amdo spellings, and 艾/阿, differ most) are dropped, and a
# part that starts with a vowel starts with A. Groups: b p -> B, d t -> D,
# g k h -> G, j q x -> J, z c s zh ch sh -> Z, n l -> N (n/l are one sound in
# much of the south), m f r w y as themselves.
_INITIALS = (("zh", "Z"), ("ch", "Z"), ("sh", "Z"), ("b", "B"), ("p", "B"), ("d", "D"), ("t", "D"),
             ("g", "G"), ("k", "G"), ("h", "G"), ("j", "J"), ("q", "J"), ("x", "J"), ("z", "Z"),
             ("c", "Z"), ("s", "Z"), ("n", "N"), ("l", "N"), ("m", "M"), ("f", "F"), ("r", "R"),
             ("w", "W"), ("y", "Y"))


def _syllable_key(syllable: str, first: bool) -> str:
    initial = next((code for prefix, code in _INITIALS if syllable.startswith(prefix)), "A" if first else "")
    nasal = "N" if syllable.endswith("n") or syllable.endswith("ng") else ""
    if len(syllable) == 1 and initial == "N":  # the syllable "n" itself
        nasal = ""
    return initial + nasal


def phonetic_key(part: str) -> str:
    """The coarse key of one part of a name: 次仁 / 才让 "ZRN", 多吉 / 多杰 "DJ", 艾力 / 阿力 "AN"."""
    return "".join(_syllable_key(s, i == 0) for i, s in enumerate(_syllables(part)))


def name_phonetic(raw: str, script: str = DEFAULT_SCRIPT) -> str:
    """Space-separated tokens: "p" + the key of each part of the name, and "f" + the key
    of its first part, the person's own name: 艾力·买买提 "pAN pMMD fAN", recorded as 阿力
    alone "pAN fAN". "" if the name has no pinyin."""
    if not raw:
        return ""
    return _name_phonetic_cached(raw, script)


@lru_cache(maxsize=1 << 17)
def _name_phonetic_cached(raw: str, script: str) -> str:
    keys = [k for k in map(phonetic_key, name_parts(raw, script)) if k]
    return " ".join([f"p{k}" for k in keys] + [f"f{keys[0]}"] if keys else [])
