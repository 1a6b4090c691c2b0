"""Stream 5 of a population: what each department's register holds: medical spending,
school absences, who is on which register, household numbers, and the department
columns of every record, as true values."""
from __future__ import annotations

import numpy as np

from bench.synth.economy import Livelihoods
from bench.synth.households import Households
from bench.synth.identities import Identities
from bench.synth.tables import REGION_CODES
from bench.synth.welfare import Welfare
from fedlink.schema import DEPARTMENTS


def draw_registers(rng: np.random.Generator, h: Households, who: Identities, life: Livelihoods, aid: Welfare,
                   year: int) -> tuple[dict, dict]:
    """(members, values): per department the person indices it holds, and its columns for them."""
    hh, age, persons, ill = h.hh, h.age, len(h.hh), life.ill
    any_spend = rng.random(persons) < 0.35 + 0.4 * (age >= 60)
    oop = np.where(any_spend, np.exp(np.log(300 + 15 * age) + 1.6 * rng.normal(0, 1, persons)), 0.0)
    oop = np.where(ill, np.exp(np.log(16000) + 0.9 * rng.normal(0, 1, persons)), oop)
    oop = np.minimum(oop, 800000)
    hosp = rng.random(persons) < 0.06 + 0.10 * (age >= 60)
    inpatient = np.where(hosp, 1 + rng.poisson(6, persons), 0)
    inpatient = np.where(ill, 5 + np.floor(rng.gamma(2.0, 8.0, persons)).astype(np.int64), inpatient)
    poor_p = (aid.pc_declared[hh] < life.line_h[hh]) | aid.dibao[hh]
    chronic = rng.random(persons) < np.where(poor_p, 0.22, 0.02)
    absence = np.where(chronic, rng.integers(20, 46, persons), rng.poisson(2.5, persons))
    members = _coverage(rng, h, life, aid)
    pop_hid, ca_hid = _household_ids(rng, who.hreg, year)
    status_hr = np.where(life.emp_pension & (life.status == ""), "retired", life.status).astype(object)
    values = _values(h, who, life, aid, members, oop, inpatient, absence, status_hr, pop_hid, ca_hid)
    return members, values


def _coverage(rng: np.random.Generator, h: Households, life: Livelihoods, aid: Welfare) -> dict[str, np.ndarray]:
    persons, hh = len(h.hh), h.hh
    st_emp, st_flex, st_un, emp_pension = life.st_emp, life.st_flex, life.st_un, life.emp_pension
    r = rng.random((6, persons))
    cover = {
        "population": r[0] < 0.98,
        "civil_affairs": aid.ca_h[hh],
        "medical_insurance": r[2] < 0.90,
        "human_resources": ((st_emp & (r[3] < 0.90)) | (st_flex & (r[3] < 0.75)) | (st_un & (r[3] < 0.80))
                            | (emp_pension & (r[3] < 0.90)) | aid.hr_force),
        "education": life.on_roll,
        "housing": aid.in_house,
    }
    return {dept: np.flatnonzero(cover[dept]) for dept in DEPARTMENTS}


def _household_ids(rng: np.random.Generator, hreg: np.ndarray, year: int) -> tuple[np.ndarray, np.ndarray]:
    """Household numbers of the population register (region + sequence) and of civil affairs."""
    nh = len(hreg)
    pop_seq = np.zeros(nh, dtype=np.int64)
    order = rng.permutation(nh)
    pop_seq[order] = np.arange(nh)
    pop_hid = np.array([f"{REGION_CODES[hreg[h]]}{pop_seq[h] % 10**7:07d}" for h in range(nh)], dtype=object)
    order = rng.permutation(nh)
    ca_seq = np.zeros(nh, dtype=np.int64)
    ca_seq[order] = np.arange(nh)
    ca_hid = np.array([f"DB{year}{s:07d}" for s in ca_seq], dtype=object)
    return pop_hid, ca_hid


def _digits(a):
    return np.asarray(a).astype(np.int64).astype(str).astype(object)


def _money(a, cents=False):
    return np.array([f"{x:.2f}" for x in a], dtype=object) if cents else _digits(np.round(a))


def _values(h: Households, who: Identities, life: Livelihoods, aid: Welfare, members: dict, oop, inpatient,
            absence, status_hr, pop_hid, ca_hid) -> dict[str, dict[str, np.ndarray]]:
    hh, sizes, region = h.hh, h.sizes, REGION_CODES[who.hreg]
    s, money = _digits, _money
    declared, dibao, props, subsidy = aid.declared, aid.dibao, aid.props, aid.subsidy
    ill, months, wage, enrolled, level = life.ill, life.months, life.wage, life.enrolled, life.level
    values = {}
    m = members["population"]
    values["population"] = {"household_id": pop_hid[hh[m]], "household_size": s(sizes[hh[m]]),
                            "region_code": region[hh[m]].astype(object)}
    m = members["civil_affairs"]
    values["civil_affairs"] = {"household_id": ca_hid[hh[m]], "household_size": s(sizes[hh[m]]),
                               "household_monthly_income": s(declared[hh[m]]), "dibao": s(dibao[hh[m]]),
                               "region_code": region[hh[m]].astype(object)}
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
    return values
