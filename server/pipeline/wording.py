"""The caseworker's explanation of a flag, in English and Chinese: plain
sentences naming each fact that made the rule fire, the departments the
person was linked across and how strong this record's links are. Built here,
once, for both languages; the agent writes the one its TOML asks for."""
from __future__ import annotations

from fedlink.rules import NEUTRAL

LANGUAGES = ("en", "zh")

DEPARTMENT_NAMES = {
    "en": {"population": "population register", "civil_affairs": "civil affairs", "medical_insurance":
           "medical insurance", "human_resources": "human resources", "education": "education",
           "housing": "housing"},
    "zh": {"population": "户籍", "civil_affairs": "民政", "medical_insurance": "医保", "human_resources": "人社",
           "education": "教育", "housing": "住建"},
}

INDICATOR_NAMES_ZH = {
    "compulsory_school_age": "义务教育适龄", "elderly": "60岁及以上", "lives_alone": "独居",
    "dibao": "领取低保", "below_subsistence_line": "家庭人均收入低于当地低保标准",
    "near_subsistence_line": "家庭人均收入接近低保标准", "catastrophic_medical_expense": "近12个月自付医疗费用过高",
    "major_illness": "患重大疾病", "unemployed": "失业", "recent_job_loss": "近期失业",
    "wage_above_line": "月工资远高于低保标准", "enrolled": "在学籍", "chronic_absence": "本学期缺勤较多",
    "multiple_properties": "拥有多套房产",
}

NEED_NAMES_ZH = {
    "medical_hardship": "因病致困", "income_shock": "收入骤降", "school_dropout_risk": "辍学风险",
    "elderly_alone": "独居老人困难", "gradual_exit": "低保渐退", "eligibility_review": "低保资格复核",
}


def dept(name: str, lang: str) -> str:
    return DEPARTMENT_NAMES[lang].get(name, name.replace("_", " "))


def fact(term: str, lang: str, from_household: bool = False) -> str:
    """One fact a rule read, in words: 'below subsistence line (civil affairs)', '教育部门无记录'."""
    if term == NEUTRAL:  # evidence the disclosure policy does not show this recipient
        return "另一部门的登记佐证此项" if lang == "zh" else NEUTRAL
    if term.startswith(("absent:", "present:")):
        kind, _, where = term.partition(":")
        if lang == "zh":
            return f"{dept(where, lang)}{'无' if kind == 'absent' else '有'}记录"
        return f"{'no' if kind == 'absent' else 'a'} record in {dept(where, lang)}"
    negated = term.startswith("not ")
    where, _, indicator = term.removeprefix("not ").partition(".")
    if lang == "zh":
        words = INDICATOR_NAMES_ZH.get(indicator, indicator)
        source = dept(where, lang) + ("，据同户成员的记录" if from_household else "")
        return f"{'非' if negated else ''}{words}（{source}）"
    source = dept(where, lang) + (", from a household member's record" if from_household else "")
    return f"{'not ' if negated else ''}{indicator.replace('_', ' ')} ({source})"


def explanation(lead: str, tier: int, reasons, departments: list[str], scores: list[float],
                household_terms=frozenset(), lang: str = "en") -> str:
    """`lead`: what the rule looks for (the pack's `explain` or `explain_zh`);
    `reasons`: (rule, terms shown) of each rule that fired; `departments`: the
    departments the person was linked across, empty where the disclosure policy
    does not show them."""
    facts = [fact(t, lang, t in household_terms) for _, terms in reasons for t in terms]
    facts = list(dict.fromkeys(facts))
    names = [dept(d, lang) for d in departments]
    strength = _strength(scores, lang) if scores else ""
    if lang == "zh":
        if not departments:
            linked = f"{strength}。" if strength else ""
        else:
            linked = (f"仅见于{names[0]}（未与其他部门关联）。" if len(departments) < 2 else
                      f"跨{len(departments)}个部门关联（{'、'.join(names)}）" + (f"；{strength}。" if strength else "。"))
        return f"{lead}（紧急程度{tier}级）。依据：{'；'.join(facts)}。{linked}"
    if not departments:
        linked = f"{strength[:1].upper()}{strength[1:]}." if strength else ""
    else:
        linked = (f"Found in {names[0]} only (no link to another department)." if len(departments) < 2 else
                  f"Linked across {len(departments)} departments ({', '.join(names)})"
                  + (f"; {strength}." if strength else "."))
    return f"{lead[:1].upper()}{lead[1:]} (tier {tier}). Found: {'; '.join(facts)}. {linked}".rstrip()


def _strength(scores: list[float], lang: str) -> str:
    low = min(scores)
    level = 0 if low >= 0.9 else 1 if low >= 0.8 else 2
    if lang == "zh":
        return f"匹配强度{('强', '良好', '一般')[level]}（本记录关联的最低分 {low:.2f}）"
    return f"match strength {('strong', 'good', 'moderate')[level]} (lowest score of this record's links {low:.2f})"


def follow_up(gone: bool, transition_until: str | None, lang: str) -> str:
    """What the explanation of a flag no longer found begins with."""
    if lang == "zh":
        if gone:
            return "该记录已不在本部门的数据中：已解除。"
        return (f"本次未再发现；帮扶持续至{transition_until}（渐退）。" if transition_until
                else "本次未再发现：已解除。")
    if gone:
        return "The record is no longer in this department's extract: resolved. "
    return (f"No longer found in this run; support continues until {transition_until} (gradual exit). "
            if transition_until else "No longer found in this run: resolved. ")
