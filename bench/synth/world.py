"""The true population of a scenario (``build``): persons, households, and what each
department's register holds about them. Five random streams, in order: households,
identities, livelihoods, welfare, registers."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import numpy as np
import pandas as pd

from bench.synth.economy import Livelihoods, draw_livelihoods
from bench.synth.households import Households, draw_households
from bench.synth.identities import Identities, draw_identities
from bench.synth.registers import draw_registers
from bench.synth.streams import stream
from bench.synth.tables import REGION_CODES, TEMPLATES
from bench.synth.welfare import Welfare, draw_welfare
from fedlink.rules import RulePack, load_rulepack


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


def build(persons: int, seed: int = 0, reference_date: str = "2025-06-30", pack: RulePack | None = None) -> World:
    """The true population, deterministic for a seed. Independent of error_scale."""
    if persons < 1:
        raise ValueError("persons must be at least 1")
    pack = pack or load_rulepack()
    h = draw_households(stream(seed, 1), persons, reference_date)
    who = draw_identities(stream(seed, 2), h)
    life = draw_livelihoods(stream(seed, 3), h, who, pack)
    aid = draw_welfare(stream(seed, 4), h, life, pack)
    members, values = draw_registers(stream(seed, 5), h, who, life, aid, date.fromisoformat(reference_date).year)
    return World(reference_date, _person_frame(h, who, life), _household_frame(h, who, life, aid), members, values,
                 who.fam, who.giv)


def _person_frame(h: Households, who: Identities, life: Livelihoods) -> pd.DataFrame:
    persons, hh, sizes, role, male, iso, age = len(h.hh), h.hh, h.sizes, h.role, h.male, h.iso, h.age
    hreg, reg = who.hreg, REGION_CODES
    name, rid, phone, id_region, minority = who.name, who.rid, who.phone, who.id_region, who.minority
    address_h, urban = who.address_h, life.urban
    pid = np.array([f"P{i:07d}" for i in range(persons)], dtype=object)
    return pd.DataFrame({
        "person_id": pid, "household": hh, "role": np.array(list("HSCKGMF"))[role], "name": name,
        "sex": np.where(male, "M", "F"), "birth_date": iso.astype(object), "resident_id": rid,
        "address": address_h[hh], "phone": phone, "region_code": reg[hreg][hh].astype(object),
        "id_region": id_region.astype(object), "age": age, "minority": minority, "urban": urban,
        "household_size": sizes[hh],
    })


def _household_frame(h: Households, who: Identities, life: Livelihoods, aid: Welfare) -> pd.DataFrame:
    nh, sizes, tmpl, hreg, reg = h.count, h.sizes, h.tmpl, who.hreg, REGION_CODES
    a_prov, a_city, a_dist, a_rest = who.a_prov, who.a_city, who.a_dist, who.a_rest
    inc_true, line_h, migrant_h, minority_h = life.inc_true, life.line_h, who.migrant_h, who.minority_h
    declared, dibao, incl, exit_h = aid.declared, aid.dibao, aid.incl, aid.exit_h
    return pd.DataFrame({
        "household": np.arange(nh), "size": sizes, "template": np.array([t[0] for t in TEMPLATES])[tmpl],
        "region_code": reg[hreg], "province": a_prov, "city": a_city, "district": a_dist, "rest": a_rest,
        "income": inc_true, "declared_income": declared, "line": line_h, "dibao": dibao, "inclusion_error": incl,
        "exit_transition": np.isin(np.arange(nh), exit_h), "migrant": migrant_h, "minority": minority_h,
    })


def true_persons(persons: int, seed: int = 0, reference_date: str = "2025-06-30") -> pd.DataFrame:
    """The true person table behind write_scenario(out, persons, seed, ...): person_id, name, sex (M/F),
    birth_date (ISO), resident_id (18 characters), address, phone, region_code, and more."""
    return build(persons, seed, reference_date).persons
