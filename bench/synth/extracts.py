"""Department extracts as the registers hold them: every record rendered from the true
person with the errors and format habits of real registers (ERROR_RATES), never the truth."""
from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from bench.synth.ids import phone_numbers, zfill
from bench.synth.streams import DEPARTMENT_STREAM, stream
from bench.synth.tables import DOT_VARIANTS, FEMALE_CHARS, MALE_CHARS, SURNAME_PINYIN, homophones, pinyin_of
from bench.synth.world import World
from fedlink.schema import DEPARTMENT_COLUMNS, IDENTITY_COLUMNS

# Error rates per department record, at error_scale = 1 (each multiplied by the scale,
# clipped to [0, 1]).
ERROR_RATES = {
    "name_homophone": 0.04,   # one character replaced by a homophone (慧 -> 惠)
    "name_pinyin": 0.04,      # name written in pinyin (Wang Xiaohui, WANG XIAO HUI, ...)
    "name_dropextra": 0.01,   # a character dropped or an extra one added
    "name_dot_variant": 0.20,  # minority names only: the middle dot written as • . ・ space or left out
    "sex_blank": 0.03,
    "date_swap": 0.015,       # day and month swapped (only where day <= 12 and day != month)
    "date_digit": 0.01,       # one digit of the date off (still a valid date)
    "date_blank": 0.02,
    "id_mistype": 0.02,       # one digit of the first 17 mistyped
    "id_transpose": 0.01,     # two adjacent, different characters transposed
    "id_legacy15": 0.03,      # legacy 15-digit form; only for persons born before 2000
    "id_blank": 0.03,
    "id_lower_x": 0.30,       # of the IDs ending in X: written with a lower-case x
    "addr_no_province": 0.30,
    "addr_no_province_city": 0.15,
    "addr_no_district": 0.03,
    "addr_fullwidth": 0.05,   # digits written full width (１２号)
    "addr_spaces": 0.05,      # spaces between the parts
    "addr_moved": 0.02,       # a stale address: another household's
    "phone_blank": 0.12,      # of records that would carry a phone: left blank
    "phone_changed": 0.08,    # of records that would carry a phone: another number
}

# Department habits: sex form, date form, share of a phone recorded, record id prefix.
_HABITS = {
    "population": ("cn", "iso", 0.55, "PR"),
    "civil_affairs": ("cn", "cn", 0.90, "CA"),
    "medical_insurance": ("mf", "compact", 0.80, "MI"),
    "human_resources": ("cn", "slash", 0.90, "HR"),
    "education": ("cn", "iso", 0.90, "ED"),
    "housing": ("mf", "slash", 0.70, "HS"),
}
_FORMAT_MIX = 0.10  # share of records whose date is in another department's form
_SEX_MIX = 0.05     # share of records whose sex is in the other form
_DATE_FORMS = ("iso", "slash", "compact", "cn")

_FULLWIDTH = str.maketrans("0123456789", "０１２３４５６７８９")


def _rate(name: str, scale: float) -> float:
    return float(min(1.0, max(0.0, ERROR_RATES[name] * scale)))


def _pinyin_name(fam: str, giv: str, minority: bool, form: int) -> str:
    if minority:
        first, second = [pinyin_of(c) for c in giv if c != "·"], [pinyin_of(c) for c in fam]
    else:
        first = [SURNAME_PINYIN.get(fam) or "".join(pinyin_of(c) for c in fam)]  # compound surnames: one word
        second = [pinyin_of(c) for c in giv]
    if form == 0:
        out = "".join(first).capitalize() + " " + "".join(second).capitalize()
    elif form == 1:
        out = " ".join(x.upper() for x in first + second)
    elif form == 2:
        out = ("".join(first) + " " + "".join(second)).lower()
    else:
        out = " ".join(x.capitalize() for x in first + second)
    return out.strip()


def _homophone_swap(text: str, rng: np.random.Generator) -> str:
    homo = homophones()
    spots = [i for i, c in enumerate(text) if c in homo]
    if not spots:
        return text
    i = spots[int(rng.integers(len(spots)))]
    alts = homo[text[i]]
    return text[:i] + alts[int(rng.integers(len(alts)))] + text[i + 1:]


def _render_names(world: World, idx: np.ndarray, rng: np.random.Generator, scale: float) -> np.ndarray:
    n = len(idx)
    out = world.persons["name"].to_numpy()[idx].copy()
    mino = world.persons["minority"].to_numpy()[idx]
    homo = rng.random(n) < _rate("name_homophone", scale)
    drop = rng.random(n) < _rate("name_dropextra", scale)
    piny = rng.random(n) < _rate("name_pinyin", scale)
    dotv = mino & (rng.random(n) < _rate("name_dot_variant", scale)) & ~piny
    todo = np.flatnonzero(homo | drop | piny | dotv)
    u = rng.random((len(todo), 4))
    fchars = FEMALE_CHARS + MALE_CHARS
    for j, k in enumerate(todo):
        p = idx[k]
        f, g, mi = world.fam[p], world.giv[p], bool(mino[k])
        if homo[k]:
            if mi and u[j, 0] < 0.5:
                f = _homophone_swap(f, rng)
            else:
                g = _homophone_swap(g, rng)
        if drop[k]:
            if mi and u[j, 1] < 0.5:
                f = ""  # the father's part left out
            elif len(g) >= 2 and u[j, 1] < 0.75:
                i = int(rng.integers(len(g)))
                g = g[:i] + g[i + 1:]
            else:
                i = int(rng.integers(len(g) + 1))
                g = g[:i] + fchars[int(rng.integers(len(fchars)))] + g[i:]
        if piny[k]:
            out[k] = _pinyin_name(f, g, mi, int(u[j, 2] * 4))
        elif mi:
            dot = DOT_VARIANTS[int(u[j, 3] * len(DOT_VARIANTS))] if dotv[k] else "·"
            out[k] = g + (dot + f if f else "")
        else:
            out[k] = f + g
    return out


def _valid_ymd(s: str, ref: date) -> bool:
    try:
        d = date(int(s[:4]), int(s[4:6]), int(s[6:8]))
    except ValueError:
        return False
    return date(1900, 1, 1) <= d <= ref


def _render_dates(world: World, idx: np.ndarray, rng: np.random.Generator, scale: float, habit: str) -> np.ndarray:
    iso = world.persons["birth_date"].to_numpy()[idx]
    return date_strings(iso, date.fromisoformat(world.reference_date), rng, scale, habit)


def date_strings(iso: np.ndarray, ref: date, rng: np.random.Generator, scale: float, habit: str,
                 blanks: bool = True) -> np.ndarray:
    """ISO birth dates as a register writes them: with the date errors (blanks among them
    unless ``blanks`` is False), in the department's form."""
    iso = np.asarray(iso).astype("U10")
    n = len(iso)
    y = iso.astype("U4").astype(np.int64)
    mo = np.array([int(x[5:7]) for x in iso]) if n else np.zeros(0, dtype=np.int64)
    d = np.array([int(x[8:10]) for x in iso]) if n else np.zeros(0, dtype=np.int64)
    swap = (rng.random(n) < _rate("date_swap", scale)) & (d <= 12) & (d != mo)
    mo, d = np.where(swap, d, mo), np.where(swap, mo, d)
    digit = np.flatnonzero(rng.random(n) < _rate("date_digit", scale))
    for k in digit:
        s = f"{y[k]:04d}{mo[k]:02d}{d[k]:02d}"
        for _ in range(20):
            i = int(rng.integers(2, 8))
            c = str(int(rng.integers(10)))
            t = s[:i] + c + s[i + 1:]
            if t != s and _valid_ymd(t, ref):
                y[k], mo[k], d[k] = int(t[:4]), int(t[4:6]), int(t[6:8])
                break
    blank = rng.random(n) < _rate("date_blank", scale)
    forms = np.full(n, _DATE_FORMS.index(habit))
    mix = rng.random(n) < _FORMAT_MIX
    forms[mix] = rng.integers(0, len(_DATE_FORMS), int(mix.sum()))
    ys = y.astype(str).astype(object)
    m1, d1 = mo.astype(str).astype(object), d.astype(str).astype(object)
    m2 = zfill(mo, 2)
    d2 = zfill(d, 2)
    out = np.select([forms == 0, forms == 1, forms == 2],
                    [ys + "-" + m2 + "-" + d2, ys + "/" + m1 + "/" + d1, ys + m2 + d2],
                    ys + "年" + m1 + "月" + d1 + "日") if n else np.zeros(0, dtype=object)
    out = out.astype(object)
    if blanks:
        out[blank] = ""
    return out


def _render_ids(world: World, idx: np.ndarray, rng: np.random.Generator, scale: float) -> np.ndarray:
    born = world.persons["birth_date"].to_numpy()[idx]
    return id_strings(world.persons["resident_id"].to_numpy()[idx], born, rng, scale)


def id_strings(ids: np.ndarray, born: np.ndarray, rng: np.random.Generator, scale: float,
               editable: np.ndarray | None = None, blanks: bool = True) -> np.ndarray:
    """Resident IDs as a register holds them, with the ID errors (blanks among them unless
    ``blanks`` is False). Where ``editable`` is False (a permit number) only blanking applies."""
    out = np.asarray(ids, dtype=object).copy()
    n = len(out)
    u = rng.random(n)
    r_blank, r_legacy = _rate("id_blank", scale), _rate("id_legacy15", scale)
    r_mis, r_tr = _rate("id_mistype", scale), _rate("id_transpose", scale)
    edges = np.cumsum([r_blank, r_legacy, r_mis, r_tr])
    kind = np.searchsorted(edges, u, side="right")  # 0 blank, 1 legacy, 2 mistype, 3 transpose, 4 none
    for k in np.flatnonzero(kind < 4):
        v = out[k]
        if editable is not None and not editable[k] and kind[k] != 0:
            continue
        if kind[k] == 0:
            out[k] = "" if blanks else v
        elif kind[k] == 1:
            if born[k] < "2000":
                out[k] = v[:6] + v[8:14] + v[14:17]
        elif kind[k] == 2:
            i = int(rng.integers(17))
            c = str((int(v[i]) + int(rng.integers(1, 10))) % 10)
            out[k] = v[:i] + c + v[i + 1:]
        else:
            spots = [i for i in range(17) if v[i] != v[i + 1]]
            i = spots[int(rng.integers(len(spots)))]
            out[k] = v[:i] + v[i + 1] + v[i] + v[i + 2:]
    lower = rng.random(n) < _rate("id_lower_x", scale)
    for k in np.flatnonzero(lower):
        if out[k].endswith("X"):
            out[k] = out[k][:-1] + "x"
    return out


def _render_addresses(world: World, idx: np.ndarray, rng: np.random.Generator, scale: float) -> np.ndarray:
    n = len(idx)
    hhs = world.households
    h = world.persons["household"].to_numpy()[idx].copy()
    moved = rng.random(n) < _rate("addr_moved", scale)
    h[moved] = rng.integers(0, len(hhs), int(moved.sum()))
    prov = hhs["province"].to_numpy()[h]
    city = hhs["city"].to_numpy()[h]
    dist = hhs["district"].to_numpy()[h]
    rest = hhs["rest"].to_numpy()[h]
    return address_strings(prov, city, dist, rest, rng, scale)


def address_strings(prov, city, dist, rest, rng: np.random.Generator, scale: float) -> np.ndarray:
    """Addresses from their four parts as registers write them: parts left out, spaces, full-width digits."""
    n = len(rest)
    u = rng.random(n)
    r2, r1 = _rate("addr_no_province_city", scale), _rate("addr_no_province", scale)
    no_pc = u < r2
    no_p = ~no_pc & (u < min(1.0, r1 + r2))
    prov = np.where(no_p | no_pc, "", prov)
    city = np.where(no_pc, "", city)
    dist = np.where(rng.random(n) < _rate("addr_no_district", scale), "", dist)
    spaces = rng.random(n) < _rate("addr_spaces", scale)
    out = (prov + city + dist + rest).astype(object)
    for k in np.flatnonzero(spaces):
        out[k] = " ".join(x for x in (prov[k], city[k], dist[k], rest[k]) if x)
    for k in np.flatnonzero(rng.random(n) < _rate("addr_fullwidth", scale)):
        out[k] = out[k].translate(_FULLWIDTH)
    return out


def _render_phones(world: World, idx: np.ndarray, rng: np.random.Generator, scale: float, share: float,
                   dept: str) -> np.ndarray:
    n = len(idx)
    p = world.persons
    phone = p["phone"].to_numpy()
    out = phone[idx].copy()
    if dept == "education":
        # the school roll lists a guardian's phone for a child without one
        parents = p[p["role"].isin(["H", "S"]) & (p["phone"] != "")].drop_duplicates("household")
        guard = dict(zip(parents["household"].to_numpy(), parents["phone"].to_numpy()))
        hh = p["household"].to_numpy()[idx]
        none = out == ""
        out[none] = np.array([guard.get(x, "") for x in hh[none]], dtype=object)
    keep = rng.random(n) < share
    out[~keep] = ""
    u = rng.random(n)
    blank = u < _rate("phone_blank", scale)
    changed = ~blank & (u < _rate("phone_blank", scale) + _rate("phone_changed", scale)) & (out != "")
    out[blank] = ""
    nc = int(changed.sum())
    out[changed] = phone_numbers(rng, nc)
    return out


def _render_sex(world: World, idx: np.ndarray, rng: np.random.Generator, scale: float, habit: str) -> np.ndarray:
    n = len(idx)
    male = world.persons["sex"].to_numpy()[idx] == "M"
    cn = (habit == "cn") != (rng.random(n) < _SEX_MIX)
    out = np.where(cn, np.where(male, "男", "女"), np.where(male, "M", "F")).astype(object)
    out[rng.random(n) < _rate("sex_blank", scale)] = ""
    return out


def render_department(world: World, dept: str, seed: int, error_scale: float = 1.0) -> tuple[pd.DataFrame, np.ndarray]:
    """A department's extract (rows in file order) and the person index behind each row."""
    sex_habit, date_habit, phone_share, prefix = _HABITS[dept]
    rng = stream(seed, 100, DEPARTMENT_STREAM[dept])
    order = rng.permutation(len(world.members[dept]))
    idx = world.members[dept][order]
    start = int(rng.integers(10 ** 6, 10 ** 7))
    rid = prefix + zfill(start + np.arange(len(idx)), 8)
    cols = {
        "record_id": rid,
        "name": _render_names(world, idx, stream(seed, 101, DEPARTMENT_STREAM[dept]), error_scale),
        "sex": _render_sex(world, idx, stream(seed, 102, DEPARTMENT_STREAM[dept]), error_scale, sex_habit),
        "birth_date": _render_dates(world, idx, stream(seed, 103, DEPARTMENT_STREAM[dept]), error_scale, date_habit),
        "resident_id": _render_ids(world, idx, stream(seed, 104, DEPARTMENT_STREAM[dept]), error_scale),
        "address": _render_addresses(world, idx, stream(seed, 105, DEPARTMENT_STREAM[dept]), error_scale),
        "phone": _render_phones(world, idx, stream(seed, 106, DEPARTMENT_STREAM[dept]), error_scale, phone_share, dept),
    }
    for c in DEPARTMENT_COLUMNS[dept]:
        cols[c] = world.values[dept][c][order]
    return pd.DataFrame(cols, columns=list(IDENTITY_COLUMNS) + list(DEPARTMENT_COLUMNS[dept])), idx
