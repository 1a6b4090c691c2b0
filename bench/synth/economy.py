"""Stream 3 of a population: schooling, health, work, wages, pensions and household
income, bottom up from a household's latent economic class."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.synth.households import Households
from bench.synth.identities import Identities
from bench.synth.tables import REGIONS, TEMPLATES
from fedlink.rules import RulePack


@dataclass(frozen=True)
class Livelihoods:
    """Per person: urban, econ (the household's class), enrolled, on_roll (on a school roll),
    level, ill, st_emp / st_flex / st_un and status (employment), wage, months (since the
    job loss), emp_pension; per household: inc_true (true income), line_h (local subsistence
    line), pc_true (per capita)."""

    urban: np.ndarray
    econ: np.ndarray
    enrolled: np.ndarray
    on_roll: np.ndarray
    level: np.ndarray
    ill: np.ndarray
    st_emp: np.ndarray
    st_flex: np.ndarray
    st_un: np.ndarray
    status: np.ndarray
    wage: np.ndarray
    months: np.ndarray
    emp_pension: np.ndarray
    inc_true: np.ndarray
    line_h: np.ndarray
    pc_true: np.ndarray


def draw_livelihoods(rng: np.random.Generator, h: Households, who: Identities, pack: RulePack) -> Livelihoods:
    hh, age, persons = h.hh, h.age, len(h.hh)
    urban = who.urban_h[hh]
    econ_h = rng.normal(0.0, 1.0, h.count)           # household economic class
    econ = econ_h[hh]
    enrolled, on_roll, level = _schooling(rng, age, urban, econ)
    # health
    p_ill = np.select([age < 18, age < 40, age < 60, age < 75], [0.005, 0.015, 0.045, 0.09], 0.14)
    ill = rng.random(persons) < p_ill

    work = _work(rng, h, who, urban, econ, ill, enrolled)
    inc_true = _household_income(rng, h, who, work)
    line_h = np.array([pack.line_for(x[0]) for x in REGIONS])[who.hreg]
    return Livelihoods(urban, econ, enrolled, on_roll, level, ill, work["st_emp"], work["st_flex"], work["st_un"],
                       work["status"], work["wage"], work["months"], work["emp_pension"], inc_true, line_h,
                       inc_true / h.sizes)


def _schooling(rng: np.random.Generator, age: np.ndarray, urban: np.ndarray, econ: np.ndarray):
    """Enrolled, on a school roll (a child out of school may still be listed), school level."""
    persons = len(age)
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
    return enrolled, on_roll, level


def _work(rng: np.random.Generator, h: Households, who: Identities, urban: np.ndarray, econ: np.ndarray,
          ill: np.ndarray, enrolled: np.ndarray) -> dict[str, np.ndarray]:
    """Employment status, wage, months since a job loss, pensions and benefits, per person."""
    hh, age, male, sizes, persons = h.hh, h.age, h.male, h.sizes, len(h.hh)
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
    w_r = who.wage_r[hh]
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
    return {"st_emp": st_emp, "st_flex": st_flex, "st_un": st_un, "status": status, "wage": wage, "months": months,
            "emp_pension": emp_pension, "pension": pension, "benefit": benefit, "retired": retired}


def _household_income(rng: np.random.Generator, h: Households, who: Identities,
                      work: dict[str, np.ndarray]) -> np.ndarray:
    """True household income: members' wages, pensions and benefits, transfers, farm income, remittances."""
    hh, nh, wage_r, urban_h, tmpl = h.hh, h.count, who.wage_r, who.urban_h, h.tmpl
    wage, pension, benefit, retired = work["wage"], work["pension"], work["benefit"], work["retired"]
    inc = np.bincount(hh, weights=wage + pension + benefit, minlength=nh)
    earners = np.bincount(hh, weights=(wage > 0).astype(float), minlength=nh)
    rt = rng.random(nh)
    # support from children or parents living elsewhere, for households without an earner
    all_old = np.bincount(hh, weights=(~retired).astype(float), minlength=nh) == 0
    transfer = np.where((earners == 0) & (rt < 0.85), np.where(all_old, 0.10, 0.20) * wage_r
                        * np.exp(0.5 * rng.normal(0, 1, nh)), 0.0)
    # rural households: farm income, and remittances from members working in the cities
    # (always for grandparents raising a left-behind grandchild)
    left_behind = np.array([t[0] == "left_behind" for t in TEMPLATES])[tmpl]
    farm = np.where(~urban_h, rng.uniform(300, 1500, nh), 0.0)
    remit = np.where(left_behind | (~urban_h & (rng.random(nh) < 0.4)),
                     1500 * np.exp(0.5 * rng.normal(0, 1, nh)), 0.0)
    inc_true = np.round((inc + transfer + farm + remit) / 10) * 10
    return inc_true
