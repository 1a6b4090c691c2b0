"""Names of a realistic population: surnames at their national shares (with the regional
shifts of bench.synth.tables), given names concentrated by birth cohort and sex, siblings
sharing a generation character, twins, Uyghur and Tibetan names, former names."""
from __future__ import annotations

import numpy as np

from bench.synth.households import Households
from bench.synth.realistic.tables_cn import (
    COHORTS,
    GENERATION_SHARE,
    SINGLE_SHARE,
    SURNAMES_COMPOUND,
    SURNAMES_TAIL,
    SURNAMES_TAIL_SHARE,
    SURNAMES_TOP100,
    TIBETAN_FEMALE,
    TIBETAN_LHASA_AMDO,
    TIBETAN_MALE,
    TOP_GIVEN,
    TOP_SHARE,
    UYGHUR_FEMALE,
    UYGHUR_MALE,
)
from bench.synth.tables import FEMALE_CHARS, MALE_CHARS, SURNAME_BOOST, C, G, GF, H, K, S


def surname_table() -> tuple[np.ndarray, np.ndarray]:
    """(surnames, national shares summing to 1): the top 100, a Zipf tail, compound surnames."""
    toks = SURNAMES_TOP100.split()
    names, shares = toks[0::2], [float(x) for x in toks[1::2]]
    tail = [c for c in dict.fromkeys(SURNAMES_TAIL) if c not in names]
    w = 1.0 / (np.arange(len(tail)) + 10.0)
    names += tail + list(SURNAMES_COMPOUND)
    shares += list(SURNAMES_TAIL_SHARE * w / w.sum()) + list(SURNAMES_COMPOUND.values())
    p = np.array(shares)
    return np.array(names, dtype=object), p / p.sum()


def _regional(names: np.ndarray, p: np.ndarray, prov: str) -> np.ndarray:
    w = p.copy()
    for s, f in SURNAME_BOOST.get(prov, {}).items():
        w[np.flatnonzero(names == s)] *= f
    return w / w.sum()


def draw_surnames(rng: np.random.Generator, h: Households, prov2: np.ndarray) -> np.ndarray:
    """Per person: the household's surname, or their own (wives, the head's mother, 7 % of
    children who take their mother's)."""
    names, p = surname_table()
    hh, role, male, persons = h.hh, h.role, h.male, len(h.hh)
    u_h, u_p = rng.random(h.count), rng.random(persons)
    hsur = np.empty(h.count, dtype=object)
    psur = np.empty(persons, dtype=object)
    for prov in np.unique(prov2):
        edges = np.cumsum(_regional(names, p, prov))
        sel = prov2 == prov
        hsur[sel] = names[np.minimum(np.searchsorted(edges, u_h[sel]), len(names) - 1)]
        selp = prov2[hh] == prov
        psur[selp] = names[np.minimum(np.searchsorted(edges, u_p[selp]), len(names) - 1)]
    own = ((~male) & ((role == S) | ((role == H) & h.has_spouse[hh]))) | (role == GF) | ((role == G) & ~male) \
        | (((role == C) | (role == K)) & (rng.random(persons) < 0.07))
    return np.where(own, psur, hsur[hh]).astype(object)


def cohort_of(birth_year: np.ndarray) -> np.ndarray:
    return np.searchsorted(np.array(COHORTS), birth_year, side="right")


def _zipf(n: int, s: float = 1.0, offset: float = 3.0) -> np.ndarray:
    w = 1.0 / (np.arange(n) + offset) ** s
    return np.cumsum(w / w.sum())


def _pick(edges: np.ndarray, u: np.ndarray) -> np.ndarray:
    return np.minimum(np.searchsorted(edges, u), len(edges) - 1)


class GivenNames:
    """Draws given names for (cohort, sex): the cohort's commonest names, or composed ones."""

    def __init__(self):
        self.top = {k: np.array(v.split(), dtype=object) for k, v in TOP_GIVEN.items()}
        self.top_edges = {k: _zipf(len(v)) for k, v in self.top.items()}
        self.chars = {"M": np.array(list(dict.fromkeys(MALE_CHARS)), dtype=object),
                      "F": np.array(list(dict.fromkeys(FEMALE_CHARS)), dtype=object)}
        self.char_edges = {k: _zipf(len(v), 0.9, 8.0) for k, v in self.chars.items()}

    def char(self, sex: np.ndarray, u: np.ndarray) -> np.ndarray:
        out = np.empty(len(u), dtype=object)
        for s in ("M", "F"):
            sel = sex == s
            out[sel] = self.chars[s][_pick(self.char_edges[s], u[sel])]
        return out

    def draw(self, rng: np.random.Generator, cohort: np.ndarray, sex: np.ndarray,
             concentrated: bool = True) -> np.ndarray:
        """One given name per person. Not concentrated: two characters drawn uniformly."""
        n = len(cohort)
        u = rng.random((5, n))
        composed = self.char(sex, u[1]) + np.where(u[2] < np.array(SINGLE_SHARE)[cohort], "", self.char(sex, u[3]))
        out = composed.astype(object)
        for (s, c), names in self.top.items():
            sel = (sex == s) & (cohort == c) & (u[0] < TOP_SHARE[c])
            out[sel] = names[_pick(self.top_edges[(s, c)], u[4][sel])]
        if not concentrated:
            flat = {s: len(v) for s, v in self.chars.items()}
            a, b = rng.random(n), rng.random(n)
            out = np.array([self.chars[s][int(x * flat[s])] + self.chars[s][int(y * flat[s])]
                            for s, x, y in zip(sex, a, b)], dtype=object)
        else:
            rng.random(n), rng.random(n)  # the same draws either way
        return out


def sibling_names(rng: np.random.Generator, h: Households, giv: np.ndarray, sex: np.ndarray, cohort: np.ndarray,
                  twins: np.ndarray, names: GivenNames, on: bool) -> np.ndarray:
    """Children of a household (and twins always) sharing a generation character: the
    eldest's first character, each sibling's second character their own."""
    kids = np.flatnonzero((h.role == C) | (h.role == K))
    out = giv.copy()
    if not len(kids):
        return out
    u = rng.random(len(kids))
    second = names.char(sex[kids], rng.random(len(kids)))
    by_hh: dict[int, list[int]] = {}
    for j, i in enumerate(kids):
        by_hh.setdefault(int(h.hh[i]), []).append(j)
    for js in by_hh.values():
        if len(js) < 2:
            continue
        eldest = kids[js[0]]
        together = u[js[0]] < GENERATION_SHARE[cohort[eldest]] or twins[kids[js[1]]]
        if not (on and together):
            continue
        gen = giv[eldest][0]
        seen = set()
        for j in js:
            name = gen + (second[j] if second[j] != gen else "") 
            if name in seen or len(name) < 2:
                name = gen + names.chars["M" if sex[kids[j]] == "M" else "F"][len(seen) % 40]
            seen.add(name)
            out[kids[j]] = name
    return out


def uyghur_names(rng: np.random.Generator, h: Households, uyghur: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(own, father's) name parts; a household's children carry its man's own name second."""
    n = len(h.hh)
    mm, mf = np.array(UYGHUR_MALE, dtype=object), np.array(UYGHUR_FEMALE, dtype=object)
    a, b = rng.integers(0, 1 << 30, n), rng.integers(0, 1 << 30, n)
    own = np.where(h.male, mm[a % len(mm)], mf[a % len(mf)]).astype(object)
    father = mm[b % len(mm)].astype(object)
    men = {}
    for i in np.flatnonzero(uyghur & np.isin(h.role, (H, S)) & h.male):
        men.setdefault(int(h.hh[i]), own[i])
    for i in np.flatnonzero(uyghur & (h.role == C)):
        father[i] = men.get(int(h.hh[i]), father[i])
    return np.where(uyghur, own, ""), np.where(uyghur, father, "")


def tibetan_names(rng: np.random.Generator, h: Households, tibetan: np.ndarray, amdo: np.ndarray) -> np.ndarray:
    """Tibetan names as their Lhasa-spelling parts joined by spaces ("扎西 次仁"); the
    spelling a person's own papers use follows ``amdo``."""
    n = len(h.hh)
    tm, tf = np.array(TIBETAN_MALE, dtype=object), np.array(TIBETAN_FEMALE, dtype=object)
    a, b, u = rng.integers(0, 1 << 30, n), rng.integers(0, 1 << 30, n), rng.random(n)
    first = np.where(h.male, tm[a % len(tm)], tf[a % len(tf)])
    lead = np.where(h.male, tm[b % len(tm)], tf[b % len(tf)])
    parts = np.where(u < 0.25, first, lead + " " + first).astype(object)
    parts = np.array([p if len(set(p.split())) == len(p.split()) else p.split()[0] for p in parts], dtype=object)
    return np.where(tibetan, parts, "")


def tibetan_spelling(parts: str, amdo: bool) -> str:
    """The name in one dialect's spelling, from its Lhasa-spelling parts."""
    return "".join(TIBETAN_LHASA_AMDO.get(p, p) if amdo else p for p in parts.split())
