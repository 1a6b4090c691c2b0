"""Stream 4 of a population: dibao (with inclusion errors and households in the exit
transition), civil affairs coverage, and housing."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.synth.economy import Livelihoods
from bench.synth.households import Households
from bench.synth.tables import H
from fedlink.rules import RulePack


@dataclass(frozen=True)
class Welfare:
    """Per household: dibao, declared (income), incl (inclusion error), exit_h (households in
    the exit transition), pc_declared, ca_h (on the civil affairs register); per person:
    in_house (on the housing register), props, subsidy, hr_force (must be on the HR register)."""

    dibao: np.ndarray
    declared: np.ndarray
    incl: np.ndarray
    exit_h: np.ndarray
    pc_declared: np.ndarray
    ca_h: np.ndarray
    in_house: np.ndarray
    props: np.ndarray
    subsidy: np.ndarray
    hr_force: np.ndarray


def draw_welfare(rng: np.random.Generator, h: Households, life: Livelihoods, pack: RulePack) -> Welfare:
    hh, nh, sizes, wage = h.hh, h.count, h.sizes, life.wage
    pc_true, line_h, inc_true = life.pc_true, life.line_h, life.inc_true
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
    # in an inclusion household with no wage above the line, the head owns several properties
    incl_assets_h = (incl & (hh_max_wage <= high_wage_line)) | (incl & (rng.random(nh) < 0.3))
    pc_declared = declared / sizes

    # civil affairs coverage
    ca_h = dibao | (pc_declared < pack.param("near_line_factor") * line_h) | (rng.random(nh) < 0.15)
    low_income_h = pc_true < pack.param("near_line_factor") * line_h

    in_house, props, subsidy = _housing(rng, h, life.econ, dibao[hh], incl[hh], low_income_h, incl_assets_h)
    # inclusion error by wage: that earner is on the HR register
    hr_force = incl[hh] & (wage > high_wage_line)
    return Welfare(dibao, declared, incl, exit_h, pc_declared, ca_h, in_house, props, subsidy, hr_force)


def _housing(rng: np.random.Generator, h: Households, econ: np.ndarray, dib_p: np.ndarray, incl_p: np.ndarray,
             low_income_h: np.ndarray, incl_assets_h: np.ndarray):
    """Who is on the housing register, properties owned, housing subsidy."""
    hh, age, role, persons = h.hh, h.age, h.role, len(h.hh)
    adult = age >= 18
    p_house = np.select([age < 18, age < 30, age < 60], [0.0, 0.20, 0.50], 0.42) * np.clip(1 + 0.25 * econ, 0.4, 1.8)
    in_house = adult & (rng.random(persons) < p_house)
    extra = (rng.random(persons) < np.clip(0.12 + 0.08 * econ, 0.02, 0.5)).astype(np.int64) + \
        (rng.random(persons) < np.clip(0.03 + 0.03 * econ, 0.0, 0.3)).astype(np.int64)
    props = 1 + extra
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
    return in_house, props, subsidy
