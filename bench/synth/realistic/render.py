"""Department extracts of a realistic scenario: each record drawn from the true person
through the register's habits (rates.py), then the typing errors and formats of
bench.synth.extracts; and per record the group labels fairness is measured by."""
from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from bench.synth.extracts import (_HABITS, _homophone_swap, _rate, _render_phones, _render_sex, address_strings,
                                  date_strings, id_strings)
from bench.synth.ids import zfill
from bench.synth.realistic.people import PARTS, CnWorld
from bench.synth.realistic.rates import PINYIN_STYLES, UMLAUT_FORMS, address_rate, rate
from bench.synth.realistic.script import lunar_as_solar, pinyin_name, to_traditional
from bench.synth.realistic.tables_cn import TIBETAN_LHASA_AMDO, UYGHUR_SEPARATORS, UYGHUR_VARIANTS
from bench.synth.streams import DEPARTMENT_STREAM, stream
from bench.synth.tables import FEMALE_CHARS, MALE_CHARS
from fedlink.schema import DEPARTMENT_COLUMNS, IDENTITY_COLUMNS

GROUPS = ("blank_id", "minority", "traditional", "pinyin_only", "migrant", "permit", "placeholder_date",
          "lunar_date", "blank_date", "married_name", "former_name", "address_apart", "namesake", "twin")


def _choice(options, u: np.ndarray) -> np.ndarray:
    names, shares = zip(*options)
    return np.array(names, dtype=object)[np.minimum(np.searchsorted(np.cumsum(shares), u), len(names) - 1)]


def render_department_cn(cw: CnWorld, dept: str, seed: int, error_scale: float = 1.0):
    """(extract, person index per row, group labels per row) of one department."""
    world, facts = cw.world, cw.facts
    sex_habit, date_habit, phone_share, prefix = _HABITS[dept]
    rng = stream(seed, 100, DEPARTMENT_STREAM[dept])
    order = rng.permutation(len(world.members[dept]))
    idx = world.members[dept][order]
    start = int(rng.integers(10 ** 6, 10 ** 7))
    sub = facts.iloc[idx].reset_index(drop=True)
    persons = world.persons.iloc[idx].reset_index(drop=True)

    def s(k):
        return stream(seed, 300 + k, DEPARTMENT_STREAM[dept])

    g = pd.DataFrame({"department": dept, "record_id": prefix + zfill(start + np.arange(len(idx)), 8)})
    names = _names(cw, dept, idx, sub, persons, s(1), error_scale, g)
    dates = _dates(cw, dept, persons, s(2), error_scale, date_habit, g)
    ids = _ids(cw, dept, sub, persons, s(3), error_scale, g)
    addresses = _addresses(cw, dept, sub, persons, s(4), error_scale)
    _traditional(cw, dept, sub, persons, s(5), error_scale, names, addresses, g)
    g["minority"] = sub["kind"].to_numpy() != "han"
    g["migrant"] = sub["migrant"].to_numpy()
    g["permit"] = sub["permit"].to_numpy() != ""
    g["address_apart"] = _apart(sub, persons)
    counts = world.persons["name"].value_counts()
    g["namesake"] = persons["name"].map(counts).to_numpy() > 1
    births = world.persons.assign(n=1).groupby(["household", "birth_date"])["n"].transform("size")
    g["twin"] = (births.to_numpy() > 1)[idx] & np.isin(persons["role"].to_numpy(), ["C", "K"])
    cols = {
        "record_id": g["record_id"].to_numpy(), "name": names,
        "sex": _render_sex(world, idx, stream(seed, 102, DEPARTMENT_STREAM[dept]), error_scale, sex_habit),
        "birth_date": dates, "resident_id": ids, "address": addresses,
        "phone": _render_phones(world, idx, stream(seed, 106, DEPARTMENT_STREAM[dept]), error_scale, phone_share,
                                dept),
    }
    for c in DEPARTMENT_COLUMNS[dept]:
        cols[c] = world.values[dept][c][order]
    frame = pd.DataFrame(cols, columns=list(IDENTITY_COLUMNS) + list(DEPARTMENT_COLUMNS[dept]))
    return frame, idx, g[["department", "record_id", *GROUPS]]


def _on(cw: CnWorld, reality: str) -> bool:
    return reality not in cw.without


def _typos(given: str, u: np.ndarray, rng: np.random.Generator, scale: float) -> str:
    """The typing errors of bench.synth.ERROR_RATES on a given name: a homophone, a
    character dropped or one added."""
    if u[0] < _rate("name_homophone", scale):
        given = _homophone_swap(given, rng)
    if u[1] < _rate("name_dropextra", scale):
        if len(given) >= 2 and u[2] < 0.6:
            i = int(rng.integers(len(given)))
            given = given[:i] + given[i + 1:]
        else:
            chars = FEMALE_CHARS + MALE_CHARS
            i = int(rng.integers(len(given) + 1))
            given = given[:i] + chars[int(rng.integers(len(chars)))] + given[i:]
    return given


def _variant(part: str, u: float, p: float, table: dict) -> str:
    alts = table.get(part)
    return alts[int(u * 1e6) % len(alts)] if alts and u < p else part


def _names(cw: CnWorld, dept: str, idx, sub, persons, rng, scale, g) -> np.ndarray:
    n = len(idx)
    fam, giv = cw.world.fam[idx], cw.world.giv[idx]
    u = rng.random((12, n))
    born = persons["birth_date"].to_numpy().astype("U4").astype(np.int64)
    kind, former, husband, permit = (sub[c].to_numpy() for c in ("kind", "former_given", "husband_surname", "permit"))
    use_former = _on(cw, "former_names") & (former != "") & (u[0] < rate("former_name", dept, scale))
    prefix = _on(cw, "married_names") & (husband != "") & (husband != fam) & (
        ((born < 1950) & (u[1] < rate("married_prefix", dept, scale)))
        | (np.isin(permit, ["HK", "MO"]) & (u[1] < rate("married_prefix_hk", dept, scale))))
    piny = _on(cw, "pinyin") & (u[2] < rate("pinyin", dept, scale))
    styles, umlauts = _choice(PINYIN_STYLES, u[3]), _choice(UMLAUT_FORMS, u[4])
    mv = _on(cw, "minority_variants")
    out = np.empty(n, dtype=object)
    for k in range(n):
        f, gv = fam[k], (former[k] if use_former[k] else giv[k])
        if kind[k] == "uyghur":
            p = rate("uyghur_translit", dept, scale) if mv else 0.0
            own = _typos(_variant(gv, u[5, k], p, UYGHUR_VARIANTS), u[6:9, k], rng, scale)
            dad = "" if mv and u[9, k] < rate("uyghur_no_father", dept, scale) else _variant(f, u[10, k], p, UYGHUR_VARIANTS)
            sep = UYGHUR_SEPARATORS[1 + int(u[11, k] * 1e6) % (len(UYGHUR_SEPARATORS) - 1)] if (
                mv and u[11, k] < rate("uyghur_separator", dept, scale)) else "·"
            out[k] = pinyin_name(own, dad, styles[k], umlauts[k]) if piny[k] else own + (sep + dad if dad else "")
        elif kind[k] == "tibetan":
            amdo = bool(sub["amdo"].iat[k])
            p = rate("tibetan_spelling", dept, scale) if mv else 0.0
            # the person's own spelling, or the other dialect's (gv holds the Lhasa spelling)
            parts = [TIBETAN_LHASA_AMDO.get(x, x) if amdo != (u[5 + j % 4, k] < p) else x
                     for j, x in enumerate(gv.split())]
            out[k] = pinyin_name("", " ".join(parts), styles[k], umlauts[k]) if piny[k] else "".join(parts)
        else:
            gv = _typos(gv, u[6:9, k], rng, scale)
            f = (husband[k] + f) if prefix[k] else f
            out[k] = pinyin_name(f, gv, styles[k], umlauts[k]) if piny[k] else f + gv
    g["pinyin_only"], g["married_name"], g["former_name"] = piny, prefix & (kind == "han"), use_former
    return out


def _dates(cw: CnWorld, dept: str, persons, rng, scale, habit, g) -> np.ndarray:
    iso = persons["birth_date"].to_numpy().astype(object)
    n = len(iso)
    u = rng.random((4, n))
    year = iso.astype("U4").astype(np.int64) if n else np.zeros(0, dtype=np.int64)
    place = _on(cw, "placeholder_dates") & (year < 1960) & (u[0] < rate("date_placeholder", dept, scale))
    lunar = _on(cw, "lunar_dates") & ~place & (year < 1970) & (u[1] < rate("date_lunar", dept, scale))
    recorded = iso.copy()
    recorded[place] = [f"{y}-{'01' if x < 0.6 else '07'}-01" for y, x in zip(year[place], u[2][place])]
    recorded[lunar] = [lunar_as_solar(x) for x in iso[lunar]]
    # blanks at the department's own rate below, in place of the uniform date_blank error
    out = date_strings(recorded, date.fromisoformat(cw.world.reference_date), rng, scale, habit, blanks=False)
    blank = _on(cw, "blank_dates") & (u[3] < rate("date_blank", dept, scale))
    out[blank] = ""
    g["placeholder_date"], g["lunar_date"] = place & ~blank, lunar & (recorded != iso) & ~blank
    g["blank_date"] = out == ""
    return out


def _ids(cw: CnWorld, dept: str, sub, persons, rng, scale, g) -> np.ndarray:
    rid = persons["resident_id"].to_numpy().astype(object)
    travel, permit = sub["travel_permit"].to_numpy(), sub["permit"].to_numpy()
    u = rng.random((2, len(rid)))
    # a holder of a residence permit is registered under the travel permit in some registers
    recorded = np.where((permit != "") & (u[0] < 0.35), travel, rid).astype(object)
    editable = permit == ""
    out = id_strings(recorded, persons["birth_date"].to_numpy(), rng, scale, editable, blanks=False)
    out[_on(cw, "blank_ids") & (u[1] < rate("id_blank", dept, scale))] = ""
    g["blank_id"] = out == ""
    return out


def _addresses(cw: CnWorld, dept: str, sub, persons, rng, scale) -> np.ndarray:
    n = len(sub)
    hh = cw.world.households
    h = persons["household"].to_numpy()
    here = [hh[c].to_numpy()[h] for c in PARTS[:3]] + [hh["rest"].to_numpy()[h]]
    u = rng.random((3, n))
    hukou = u[0] < address_rate("hukou", dept)
    stale = ~hukou & (u[1] < address_rate("stale", dept))
    second = ~hukou & ~stale & (sub["properties"].to_numpy() >= 2) & (u[2] < address_rate("second_home", dept))
    use = np.select([hukou, stale, second], ["hukou", "previous", "second"], "here").astype(object)
    if not _on(cw, "addresses"):
        use[:] = "here"
    parts = []
    for i, p in enumerate(PARTS):
        col = here[i].astype(object).copy()
        for kind in ("hukou", "previous", "second"):
            sel = use == kind
            col[sel] = sub[f"{kind}_{p}"].to_numpy()[sel]
        parts.append(col)
    return address_strings(*parts, rng, scale)


def _apart(sub, persons) -> np.ndarray:
    """Whether the person lives apart from their hukou address or moved recently."""
    def whole(kind):
        return sum((sub[f"{kind}_{p}"].to_numpy() for p in PARTS[1:]), sub[f"{kind}_{PARTS[0]}"].to_numpy())

    here = persons["address"].to_numpy()
    return (whole("hukou") != here) | (whole("previous") != here)


def _traditional(cw: CnWorld, dept: str, sub, persons, rng, scale, names, addresses, g) -> None:
    permit = sub["permit"].to_numpy()
    u = rng.random(len(permit))
    guangdong = persons["region_code"].to_numpy().astype("U2") == "44"
    p = np.where(permit != "", rate("traditional_permit", dept, scale),
                 np.where(guangdong, rate("traditional", dept, scale), 0.0))
    trad = _on(cw, "traditional") & (u < p)
    for k in np.flatnonzero(trad):
        names[k] = to_traditional(names[k], permit[k])
        addresses[k] = to_traditional(addresses[k], permit[k])
    g["traditional"] = trad & ~g["pinyin_only"].to_numpy()
