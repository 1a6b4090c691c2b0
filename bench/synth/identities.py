"""Stream 2 of a population: where each household lives and who its members are on
paper: region, names, resident IDs, phones, one address per household."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from bench.synth.households import Households
from bench.synth.ids import ids_vectorised, phone_numbers
from bench.synth.tables import (
    COMMUNITIES,
    COMMUNITY_SUFFIX,
    FEMALE_CHARS,
    MALE_CHARS,
    MINO_FEMALE,
    MINO_MALE,
    MINORITY_ELSEWHERE,
    MINORITY_SHARE,
    NEW_FEMALE,
    NEW_MALE,
    OLD_FEMALE,
    OLD_MALE,
    ORIGINS,
    REGION_CODES,
    REGIONS,
    STREET_SUFFIX,
    STREETS,
    SURNAME_BOOST,
    SURNAME_TEXT,
    TOWNS,
    VILLAGES,
    C,
    G,
    GF,
    H,
    K,
    S,
)


@dataclass(frozen=True)
class Identities:
    """Per household: hreg (index into REGIONS), urban_h, wage_r (median wage), migrant_h,
    minority_h and the address parts a_prov, a_city, a_dist, a_rest; per person: fam, giv
    (the two name parts), name, minority, id_region, rid (resident ID), phone."""

    hreg: np.ndarray
    urban_h: np.ndarray
    wage_r: np.ndarray
    migrant_h: np.ndarray
    minority_h: np.ndarray
    a_prov: np.ndarray
    a_city: np.ndarray
    a_dist: np.ndarray
    a_rest: np.ndarray
    fam: np.ndarray
    giv: np.ndarray
    name: np.ndarray
    minority: np.ndarray
    id_region: np.ndarray
    rid: np.ndarray
    phone: np.ndarray

    @property
    def address_h(self) -> np.ndarray:
        return self.a_prov + self.a_city + self.a_dist + self.a_rest


def draw_identities(rng: np.random.Generator, h: Households) -> Identities:
    nh, hh = h.count, h.hh
    rw = np.array([x[5] for x in REGIONS])
    hreg = rng.choice(len(REGIONS), size=nh, p=rw / rw.sum())
    prov2 = np.array([x[0][:2] for x in REGIONS])[hreg]
    urban_h = np.array([x[4] for x in REGIONS], dtype=bool)[hreg]
    wage_r = np.array([x[6] for x in REGIONS], dtype=float)[hreg]
    migrant_h = rng.random(nh) < np.array([x[7] for x in REGIONS])[hreg]
    mino_share = np.array([MINORITY_SHARE.get(p, MINORITY_ELSEWHERE) for p in prov2])
    minority_h = rng.random(nh) < mino_share
    origin_h = np.array(ORIGINS)[rng.integers(0, len(ORIGINS), nh)]
    origin_h = np.where(minority_h & migrant_h, np.array(["653121", "653101", "650104"])[rng.integers(0, 3, nh)], origin_h)

    fam, giv = _names(rng, h, prov2, minority_h)
    minority = minority_h[hh]
    name = _minority_names(rng, h, minority, fam, giv)
    id_region = np.where(migrant_h[hh] & ~((h.age < 18) & (rng.random(len(hh)) < 0.5)), origin_h[hh],
                         REGION_CODES[hreg][hh])
    rid = _resident_ids(rng, id_region, h.ymd, h.male)
    phone = _phones(rng, h.age)
    a_prov, a_city, a_dist, a_rest = _addresses(rng, hreg, prov2)
    return Identities(hreg, urban_h, wage_r, migrant_h, minority_h, a_prov, a_city, a_dist, a_rest,
                      fam, giv, name, minority, id_region, rid, phone)


def _surname_tables():
    toks = SURNAME_TEXT.split()
    names = np.array(toks[0::2], dtype=object)
    base = np.array([float(x) for x in toks[1::2]])
    tables = {}
    for prov in list(SURNAME_BOOST) + ["*"]:
        w = base.copy()
        for s, f in SURNAME_BOOST.get(prov, {}).items():
            w[list(names).index(s)] *= f
        tables[prov] = w / w.sum()
    return names, tables


def _char_weights(chars: str) -> tuple[np.ndarray, np.ndarray]:
    uniq = list(dict.fromkeys(chars))
    rank = np.arange(len(uniq))
    w = 1.0 / (rank + 8.0) ** 0.9
    return np.array(uniq, dtype=object), w / w.sum()


def _names(rng: np.random.Generator, h: Households, prov2: np.ndarray,
           minority_h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Han names: (surname, given name) per person; wives keep their own surname."""
    nh, persons = h.count, len(h.hh)
    hh, role, male, has_spouse = h.hh, h.role, h.male, h.has_spouse
    by = h.ymd.astype("U4").astype(np.int64)
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
    mchars, mw = _char_weights(MALE_CHARS)
    fchars, fw = _char_weights(FEMALE_CHARS)
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
    om, of = np.array(OLD_MALE, dtype=object), np.array(OLD_FEMALE, dtype=object)
    nm, nf = np.array(NEW_MALE, dtype=object), np.array(NEW_FEMALE, dtype=object)
    giv[old & male] = om[pick[old & male] % len(om)]
    giv[old & ~male] = of[pick[old & ~male] % len(of)]
    giv[new & male] = nm[pick[new & male] % len(nm)]
    giv[new & ~male] = nf[pick[new & ~male] % len(nf)]
    return fam.astype(object), giv


def _minority_names(rng: np.random.Generator, h: Households, minority: np.ndarray, fam: np.ndarray,
                    giv: np.ndarray) -> np.ndarray:
    """Own name + father's name in minority households (fam and giv changed in place); the full names."""
    hh, role, male = h.hh, h.role, h.male
    mm, mf = np.array(MINO_MALE, dtype=object), np.array(MINO_FEMALE, dtype=object)
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
    return np.where(minority, giv + "·" + fam, fam + giv).astype(object)


def _resident_ids(rng: np.random.Generator, id_region: np.ndarray, ymd: np.ndarray, male: np.ndarray) -> np.ndarray:
    """Unique resident IDs: the sequence drawn again where region + birth date + sequence repeat."""
    def draw_seq(m):  # 001-999, odd for men, even for women
        return np.where(m, 2 * rng.integers(0, 500, len(m)) + 1, 2 * rng.integers(1, 500, len(m)))

    seq = draw_seq(male)
    for _ in range(50):
        key = pd.Series(id_region.astype(object) + ymd.astype(object) + seq.astype(str).astype(object))
        dup = key.duplicated().to_numpy()
        if not dup.any():
            break
        seq[dup] = draw_seq(male[dup])
    return ids_vectorised(id_region, ymd, seq)


def _phones(rng: np.random.Generator, age: np.ndarray) -> np.ndarray:
    persons = len(age)
    p_phone = np.select([age < 12, age < 18, age < 60, age < 75], [0.0, 0.3, 0.93, 0.7], 0.4)
    has_phone = rng.random(persons) < p_phone
    phone = np.full(persons, "", dtype=object)
    nphone = int(has_phone.sum())
    phone[has_phone] = phone_numbers(rng, nphone)
    return phone


def _addresses(rng: np.random.Generator, hreg: np.ndarray, prov2: np.ndarray):
    """(province, city, district, rest) per household, in the local form of its region."""
    nh = len(hreg)
    reg_meta = [(x[1], x[2], x[3], x[4]) for x in REGIONS]
    nums = rng.integers(1, 400, nh)
    bld = rng.integers(1, 30, nh)
    unit = rng.integers(1, 7, nh)
    floor_ = rng.integers(1, 33, nh)
    room = rng.integers(1, 9, nh)
    st = rng.integers(0, len(STREETS), nh)
    sx = rng.integers(0, len(STREET_SUFFIX), nh)
    cm = rng.integers(0, len(COMMUNITIES), nh)
    cs = rng.integers(0, len(COMMUNITY_SUFFIX), nh)
    tw = rng.integers(0, len(TOWNS), nh)
    vl = rng.integers(0, len(VILLAGES), nh)
    grp = rng.integers(1, 13, nh)
    a_prov = np.empty(nh, dtype=object)
    a_city = np.empty(nh, dtype=object)
    a_dist = np.empty(nh, dtype=object)
    a_rest = np.empty(nh, dtype=object)
    for h in range(nh):
        pv, ct, ds, urb = reg_meta[hreg[h]]
        a_prov[h], a_city[h], a_dist[h] = pv, ct, ds
        street = STREETS[st[h]] + STREET_SUFFIX[sx[h]]
        comm = COMMUNITIES[cm[h]] + COMMUNITY_SUFFIX[cs[h]]
        p2 = prov2[h]
        if not urb:
            if p2 == "44":
                a_rest[h] = f"{TOWNS[tw[h]]}镇{VILLAGES[vl[h]]}村{nums[h] % 120 + 1}号"
            else:
                a_rest[h] = f"{TOWNS[tw[h]]}镇{VILLAGES[vl[h]]}村{grp[h]}组{nums[h] % 120 + 1}号"
        elif p2 == "31":
            a_rest[h] = f"{street}{nums[h]}弄{bld[h]}号{floor_[h]}{room[h]:02d}室"
        elif p2 == "11":
            a_rest[h] = f"{street}{nums[h]}号院{bld[h]}号楼{unit[h]}单元{floor_[h]}{room[h]:02d}"
        elif p2 == "44":
            a_rest[h] = f"{street}{nums[h]}号{comm}{bld[h]}栋{floor_[h]}{room[h]:02d}房"
        else:
            a_rest[h] = f"{street}{nums[h]}号{comm}{bld[h]}栋{unit[h]}单元{floor_[h]}{room[h]:02d}室"
    return a_prov, a_city, a_dist, a_rest
