"""The true population of a realistic scenario (``build_cn``): the households, economy,
welfare and registers of bench.synth.world, with the people of a Chinese city on paper:
names at national frequencies, twins, Uyghur and Tibetan names, migrants whose hukou is
in their home county, Hong Kong, Macau and Taiwan residents holding permits, hukou
addresses apart from where people live, former names. Stream ids 200+."""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date

import numpy as np
import pandas as pd

from bench.synth.economy import draw_livelihoods
from bench.synth.households import Households, draw_households
from bench.synth.identities import _addresses, draw_identities
from bench.synth.ids import ids_vectorised, zfill
from bench.synth.realistic.names import (GivenNames, cohort_of, draw_surnames, sibling_names, tibetan_names,
                                         tibetan_spelling, uyghur_names)
from bench.synth.realistic.rates import PERSON_RATES, check_without
from bench.synth.realistic.tables_cn import (ORIGIN_PLACES, PERMIT_ELSEWHERE, PERMIT_ORIGIN, PERMIT_REGION,
                                             PERMIT_RESIDENCE_SHARE, PERMIT_SHARE, TIBETAN_ELSEWHERE,
                                             TIBETAN_SHARE, TWIN_SHARE)
from bench.synth.registers import draw_registers
from bench.synth.streams import stream
from bench.synth.tables import REGIONS, TOWNS, VILLAGES, C, H, K, S
from bench.synth.welfare import draw_welfare
from bench.synth.world import World, _household_frame, _person_frame
from fedlink.rules import RulePack, load_rulepack

ADDRESS_KINDS = ("hukou", "previous", "second")
PARTS = ("province", "city", "district", "rest")


@dataclass
class CnWorld:
    """A World plus, per person, what a realistic scenario's registers draw on (``facts``)."""

    world: World
    facts: pd.DataFrame
    without: frozenset


def build_cn(persons: int, seed: int = 0, reference_date: str = "2025-06-30", pack: RulePack | None = None,
             without=()) -> CnWorld:
    without = check_without(without)
    pack = pack or load_rulepack()
    h = _with_twins(stream(seed, 200), draw_households(stream(seed, 1), persons, reference_date))
    who = draw_identities(stream(seed, 2), h)
    prov2 = np.array([x[0][:2] for x in REGIONS])[who.hreg]
    kind = _kinds(stream(seed, 201), h, who, prov2)
    if "permits" in without:
        kind["permit"][:] = ""
    fam, giv, name, former = _names(stream(seed, 202), h, who, prov2, kind, without)
    rid, travel = _permit_ids(stream(seed, 203), h, kind["permit"], who.rid)
    who = replace(who, fam=fam, giv=giv, name=name, minority=kind["uyghur"] | kind["tibetan"], rid=rid)
    life = draw_livelihoods(stream(seed, 3), h, who, pack)
    aid = draw_welfare(stream(seed, 4), h, life, pack)
    members, values = draw_registers(stream(seed, 5), h, who, life, aid, date.fromisoformat(reference_date).year)
    hukou_local = _hukou_local(stream(seed, 204), h, who, kind["permit"], "migrants" in without)
    keep = hukou_local[members["population"]]
    members["population"] = members["population"][keep]
    values["population"] = {c: v[keep] for c, v in values["population"].items()}
    world = World(reference_date, _person_frame(h, who, life), _household_frame(h, who, life, aid), members,
                  values, who.fam, who.giv)
    facts = pd.DataFrame({
        "kind": np.select([kind["uyghur"], kind["tibetan"]], ["uyghur", "tibetan"], "han"),
        "amdo": kind["amdo"], "permit": kind["permit"], "travel_permit": travel, "former_given": former,
        "hukou_local": hukou_local, "migrant": ~hukou_local & (kind["permit"] == ""),
        "properties": _properties(h, members, values),
    })
    addresses = _address_facts(stream(seed, 205), h, who, prov2, hukou_local)
    for k, parts in addresses.items():
        for p, arr in zip(PARTS, parts):
            facts[f"{k}_{p}"] = arr
    facts["husband_surname"] = _husband_surnames(h, fam)
    return CnWorld(world, facts, without)


def _with_twins(rng: np.random.Generator, h: Households) -> Households:
    """The first two children of some households born the same day (TWIN_SHARE of children)."""
    kids = np.flatnonzero((h.role == C) | (h.role == K))
    first: dict[int, int] = {}
    pairs = []
    for i in kids:
        j = first.setdefault(int(h.hh[i]), int(i))
        if j != i and len(pairs) < len(kids) and (not pairs or pairs[-1][0] != j):
            pairs.append((j, int(i)))
    pairs = [p for p in dict.fromkeys(pairs)]
    u = rng.random(len(pairs))
    p = min(1.0, TWIN_SHARE * len(kids) / (2 * max(1, len(pairs))))
    age, iso, ymd = h.age.copy(), h.iso.copy(), h.ymd.copy()
    for (a, b), x in zip(pairs, u):
        if x < p:
            age[b], iso[b], ymd[b] = age[a], iso[a], ymd[a]
    return replace(h, age=age, iso=iso, ymd=ymd)


def _kinds(rng: np.random.Generator, h: Households, who, prov2: np.ndarray) -> dict[str, np.ndarray]:
    """Per person: Uyghur, Tibetan (and whether of an Amdo area), permit (HK, MO, TW or "")."""
    nh, hh = h.count, h.hh
    u = rng.random((4, nh))
    tib_share = np.array([TIBETAN_SHARE.get(p, TIBETAN_ELSEWHERE) for p in prov2])
    tibetan_h = ~who.minority_h & (u[0] < tib_share)
    amdo_h = u[1] < np.where(prov2 == "62", 0.8, 0.5)
    city4 = np.array([x[0][:4] for x in REGIONS])[who.hreg]
    permit_share = np.array([PERMIT_SHARE.get(c, PERMIT_ELSEWHERE) for c in city4])
    permit_h = ~who.minority_h & ~tibetan_h & (u[2] < permit_share)
    origins, shares = zip(*PERMIT_ORIGIN)
    origin = np.array(origins, dtype=object)[np.minimum(np.searchsorted(np.cumsum(shares), u[3]), len(origins) - 1)]
    return {"uyghur": who.minority_h[hh], "tibetan": tibetan_h[hh], "amdo": (tibetan_h & amdo_h)[hh],
            "permit": np.where(permit_h, origin, "").astype(object)[hh]}


def _names(rng: np.random.Generator, h: Households, who, prov2: np.ndarray, kind: dict, without: frozenset):
    """(fam, giv, full name, former given name) per person. Uyghur: fam is the father's
    part, giv the own; Tibetan: fam "", giv the parts in Lhasa spelling joined by spaces."""
    sex = np.where(h.male, "M", "F")
    cohort = cohort_of(h.ymd.astype("U4").astype(np.int64))
    permit_h = np.zeros(h.count, dtype=bool)
    permit_h[h.hh[kind["permit"] != ""]] = True
    fam = draw_surnames(rng, h, np.where(permit_h, "44", prov2))  # Hong Kong surnames are Cantonese ones
    gn = GivenNames()
    giv = gn.draw(rng, cohort, sex, concentrated="namesakes" not in without)
    twins = np.zeros(len(h.hh), dtype=bool)
    twins[1:] = (h.ymd[1:] == h.ymd[:-1]) & (h.hh[1:] == h.hh[:-1])
    giv = sibling_names(rng, h, giv, sex, cohort, twins, gn, "families" not in without)
    former = gn.draw(rng, cohort, sex)
    has_former = (rng.random(len(h.hh)) < PERSON_RATES["former_name"]) & (former != giv)
    own, father = uyghur_names(rng, h, kind["uyghur"])
    tib = tibetan_names(rng, h, kind["tibetan"], kind["amdo"])
    uy, tb = kind["uyghur"], kind["tibetan"]
    fam = np.where(uy, father, np.where(tb, "", fam)).astype(object)
    giv = np.where(uy, own, np.where(tb, tib, giv)).astype(object)
    han = ~uy & ~tb
    name = np.where(uy, giv + "·" + fam, fam + giv).astype(object)
    name[tb] = [tibetan_spelling(p, a) for p, a in zip(giv[tb], kind["amdo"][tb])]
    return fam, giv, name, np.where(has_former & han, former, "").astype(object)


def _permit_ids(rng: np.random.Generator, h: Households, permit: np.ndarray, rid: np.ndarray):
    """(ID of record per person, travel permit number): permit holders carry a residence
    permit number (81/82/83 0000 + birth date + sequence + check) if they took one out,
    else their travel permit's (H/M + 8 digits, Taiwan: 8 digits)."""
    n = len(rid)
    seq = np.where(h.male, 2 * rng.integers(0, 500, n) + 1, 2 * rng.integers(1, 500, n))
    region = np.array([PERMIT_REGION.get(p, "000000") for p in permit])
    residence = ids_vectorised(region, h.ymd, seq)
    digits = zfill(rng.integers(0, 10 ** 8, n), 8)
    prefix = np.select([permit == "HK", permit == "MO"], ["H", "M"], "")
    travel = np.where(permit != "", prefix + digits, "").astype(object)
    took = rng.random(n) < PERMIT_RESIDENCE_SHARE
    out = np.where(permit == "", rid, np.where(took, residence, travel)).astype(object)
    return out, travel


def _hukou_local(rng: np.random.Generator, h: Households, who, permit: np.ndarray, no_migrants: bool) -> np.ndarray:
    """Whether a person's hukou is here: not for migrant households that have not settled,
    never for permit holders."""
    settled = rng.random(h.count) < PERSON_RATES["settled"]
    away = who.migrant_h & ~settled & (not no_migrants)
    return ~away[h.hh] & (permit == "")


def _properties(h: Households, members: dict, values: dict) -> np.ndarray:
    out = np.zeros(len(h.hh), dtype=np.int64)
    out[members["housing"]] = values["housing"]["properties_owned"].astype(np.int64)
    return out


def _address_facts(rng: np.random.Generator, h: Households, who, prov2: np.ndarray, hukou_local: np.ndarray):
    """Per person, per address kind, the four address parts. Where they live is the
    household's address (World.persons address); the hukou address is another in the same
    city for the households living apart from it, the home county's for migrants."""
    hh = h.hh
    here = (who.a_prov, who.a_city, who.a_dist, who.a_rest)
    other = _addresses(rng, who.hreg, prov2)
    previous = _addresses(rng, who.hreg, prov2)
    second = _addresses(rng, who.hreg, prov2)
    u = rng.random((2, h.count))
    separated = u[0] < PERSON_RATES["separated"]
    moved = u[1] < PERSON_RATES["moved"]
    origin = _origin_addresses(rng, h, who)
    hukou = tuple(np.where(separated, o, x) for o, x in zip(other, here))
    out = {"hukou": [np.where(hukou_local, part[hh], org) for part, org in zip(hukou, origin)],
           "previous": [np.where(moved, p, x)[hh] for p, x in zip(previous, here)],
           "second": [s[hh] for s in second]}
    return out


def _origin_addresses(rng: np.random.Generator, h: Households, who):
    """Per person, the hukou address in the home county of a migrant household (its head's
    ID region); elsewhere blank."""
    n = len(h.hh)
    head = np.zeros(h.count, dtype=np.int64)
    head[h.hh[h.role == H]] = np.flatnonzero(h.role == H)
    home = who.id_region[head][h.hh] if n else np.zeros(0, dtype=object)
    town, village = rng.integers(0, len(TOWNS), h.count), rng.integers(0, len(VILLAGES), h.count)
    grp, num = rng.integers(1, 13, h.count), rng.integers(1, 120, h.count)
    parts = [np.full(n, "", dtype=object) for _ in PARTS]
    for i in range(n):
        place = ORIGIN_PLACES.get(home[i])
        if place is None:
            continue
        x = h.hh[i]
        parts[0][i], parts[1][i], parts[2][i] = place[:3]
        parts[3][i] = (f"{TOWNS[town[x]]}街道{VILLAGES[village[x]]}社区{num[x]}号" if place[3] else
                       f"{TOWNS[town[x]]}镇{VILLAGES[village[x]]}村{grp[x]}组{num[x]}号")
    return parts


def _husband_surnames(h: Households, fam: np.ndarray) -> np.ndarray:
    """A married woman's husband's surname: the male head's or spouse's of her household;
    for the head's mother, the head's (he took his father's)."""
    n = len(h.hh)
    man = {}
    for i in np.flatnonzero(np.isin(h.role, (H, S)) & h.male):
        man.setdefault(int(h.hh[i]), fam[i])
    head = {int(h.hh[i]): fam[i] for i in np.flatnonzero(h.role == H)}
    out = np.full(n, "", dtype=object)
    for i in np.flatnonzero(~h.male):
        x = int(h.hh[i])
        if h.role[i] in (H, S) and h.has_spouse[x]:
            out[i] = man.get(x, "")
        elif h.role[i] not in (H, S, C, K) and h.age[i] >= 50:
            out[i] = head.get(x, "")
    return out
