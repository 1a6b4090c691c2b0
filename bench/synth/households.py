"""Stream 1 of a population: households by size and type, their members' roles,
ages, sexes and birth dates."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.synth.tables import HEAD, ROLE_CODES, SIZE_SHARES, TEMPLATES, C, G, GF, GM, H, K, S


@dataclass(frozen=True)
class Households:
    """Who lives with whom. Per household: sizes, tmpl (index into TEMPLATES), has_spouse;
    per person: hh (household), role (H, S, ...), age, male, iso / ymd (birth date)."""

    sizes: np.ndarray
    tmpl: np.ndarray
    has_spouse: np.ndarray
    hh: np.ndarray
    role: np.ndarray
    age: np.ndarray
    male: np.ndarray
    iso: np.ndarray
    ymd: np.ndarray

    @property
    def count(self) -> int:
        return len(self.sizes)


def draw_households(rng: np.random.Generator, persons: int, reference_date: str) -> Households:
    sizes, tmpl = _sizes_and_types(rng, persons)
    nh = len(sizes)
    role_mat = np.full((len(TEMPLATES), 6), -1, dtype=np.int64)
    for i, t in enumerate(TEMPLATES):
        role_mat[i, : len(t[3])] = [ROLE_CODES[c] for c in t[3]]
    has_spouse = np.array(["S" in t[3] for t in TEMPLATES])[tmpl]
    hh = np.repeat(np.arange(nh), sizes)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    pos = np.arange(persons) - np.repeat(starts, sizes)
    role = role_mat[tmpl[hh], pos]
    age, male = _ages_and_sexes(rng, tmpl, hh, role)

    # birth dates: uniform within the year of age
    ref64 = np.datetime64(reference_date, "D")
    days = np.floor((age + rng.random(persons)) * 365.2425).astype(np.int64)
    birth = ref64 - days
    birth = np.where(birth > ref64, ref64, birth)
    iso = np.datetime_as_string(birth, unit="D")
    ymd = np.char.replace(iso, "-", "")
    return Households(sizes, tmpl, has_spouse, hh, role, age, male, iso, ymd)


def _sizes_and_types(rng: np.random.Generator, persons: int) -> tuple[np.ndarray, np.ndarray]:
    """Household sizes adding up to ``persons`` (the last one cut), and a template per household."""
    sizes = np.empty(0, dtype=np.int64)
    while sizes.sum() < persons:
        sizes = np.concatenate([sizes, rng.choice(np.arange(1, 7), size=max(16, persons // 2), p=SIZE_SHARES)])
    cum = np.cumsum(sizes)
    last = int(np.searchsorted(cum, persons))
    sizes = sizes[: last + 1].copy()
    sizes[last] -= cum[last] - persons
    nh = len(sizes)
    tmpl = np.empty(nh, dtype=np.int64)
    u = rng.random(nh)
    for size in range(1, 7):
        ids = [i for i, t in enumerate(TEMPLATES) if t[1] == size]
        p = np.array([TEMPLATES[i][2] for i in ids])
        edges = np.cumsum(p / p.sum())
        sel = sizes == size
        tmpl[sel] = np.array(ids)[np.minimum(np.searchsorted(edges, u[sel], side="right"), len(ids) - 1)]
    return sizes, tmpl


def _beta_range(rng, spec, n):
    lo, hi, a, b = spec
    return lo + (hi - lo) * rng.beta(a, b, n)


def _ages_and_sexes(rng: np.random.Generator, tmpl: np.ndarray, hh: np.ndarray,
                    role: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The head's age and sex by household type; everyone else's consistent with their role."""
    nh, persons = len(tmpl), len(hh)
    kinds = sorted(HEAD)
    kind_of_tmpl = np.array([kinds.index(t[0]) for t in TEMPLATES])
    head_age = np.empty(nh)
    head_male = np.empty(nh, dtype=bool)
    hk = kind_of_tmpl[tmpl]
    for ki, kind in enumerate(kinds):
        sel = np.flatnonzero(hk == ki)
        spec, pm = HEAD[kind]
        head_age[sel] = _beta_range(rng, spec, len(sel))
        head_male[sel] = rng.random(len(sel)) < pm
    ha = np.floor(head_age[hh])
    age = np.zeros(persons)
    r = rng.random(persons)
    age[role == H] = ha[role == H]
    sp = role == S
    male_head = head_male[hh]
    age[sp] = ha[sp] + np.round(rng.normal(np.where(male_head[sp], -2.0, 2.0), 2.5))
    ch = role == C
    top = np.minimum(40.0, ha[ch])
    age[ch] = ha[ch] - (21 + r[ch] * np.maximum(top - 21, 0))
    gk = role == K
    age[gk] = np.floor(r[gk] * 17)
    gp = (role == G) | (role == GM) | (role == GF)
    age[gp] = np.minimum(ha[gp] + 22 + r[gp] * 14 + np.where(role[gp] == GM, 2, 0), 99)
    age = np.clip(np.floor(age), 0, 99).astype(np.int64)
    age[sp] = np.maximum(age[sp], 20)

    male = np.empty(persons, dtype=bool)
    male[role == H] = male_head[role == H]
    male[sp] = ~male_head[sp]
    r = rng.random(persons)
    male[ch] = r[ch] < 0.52
    male[gk] = r[gk] < 0.53
    male[role == G] = r[role == G] < 0.35
    male[role == GM] = True
    male[role == GF] = False
    return age, male
