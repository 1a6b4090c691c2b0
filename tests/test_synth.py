"""The synthetic scenario generator (bench/synth.py): format, determinism, truth,
resident IDs, error rates as configured, needs, households."""
from __future__ import annotations

import filecmp
import re

import numpy as np
import pandas as pd
import pytest

from bench.synth import (
    ERROR_RATES,
    id_check_char,
    id_is_valid,
    resident_id,
    true_persons,
    write_scenario,
)
from fedlink.rules import load_rulepack
from fedlink.schema import DEPARTMENT_COLUMNS, DEPARTMENTS, IDENTITY_COLUMNS

PERSONS = 2000
REF = "2025-06-30"
FILES = [f"{d}.csv" for d in DEPARTMENTS] + ["truth.csv", "needs.csv", "scenario.toml"]


def _read(path):
    return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")


@pytest.fixture(scope="module")
def scenarios(tmp_path_factory):
    out = {}
    for scale in (1.0, 2.0):
        d = tmp_path_factory.mktemp(f"synth{scale:g}")
        summary = write_scenario(d, PERSONS, seed=0, error_scale=scale, reference_date=REF)
        out[scale] = (d, summary)
    return out


@pytest.fixture(scope="module")
def persons():
    return true_persons(PERSONS, seed=0, reference_date=REF)


@pytest.fixture(scope="module")
def joined(scenarios, persons):
    """Every department row at error_scale 1 and 2, next to the true attributes of its person."""
    out = {}
    truep = persons.set_index("person_id")
    for scale, (d, _) in scenarios.items():
        truth = _read(d / "truth.csv")
        frames = []
        for dept in DEPARTMENTS:
            rows = _read(d / f"{dept}.csv")[list(IDENTITY_COLUMNS)]
            t = truth[truth.department == dept].set_index("record_id")["person_id"]
            rows["person_id"] = rows["record_id"].map(t)
            rows["department"] = dept
            frames.append(rows)
        rows = pd.concat(frames, ignore_index=True)
        out[scale] = rows.join(truep, on="person_id", rsuffix="_true")
    return out


# --- format ---------------------------------------------------------------------------
def test_files_and_headers(scenarios):
    d, summary = scenarios[1.0]
    for name in FILES:
        assert (d / name).exists(), name
    for dept in DEPARTMENTS:
        rows = _read(d / f"{dept}.csv")
        assert list(rows.columns) == list(IDENTITY_COLUMNS) + list(DEPARTMENT_COLUMNS[dept])
        assert rows["record_id"].is_unique
        assert (rows["record_id"] != "").all()
        assert summary["records"][dept] == len(rows) > 0
    assert list(_read(d / "truth.csv").columns) == ["department", "record_id", "person_id"]
    assert list(_read(d / "needs.csv").columns) == ["person_id", "need"]
    assert f'reference_date = "{REF}"' in (d / "scenario.toml").read_text(encoding="utf-8")
    assert "[project]" in (d / "scenario.toml").read_text(encoding="utf-8")


def test_truth_covers_every_row_once(scenarios, persons):
    d, _ = scenarios[1.0]
    truth = _read(d / "truth.csv")
    assert set(truth["person_id"]) <= set(persons["person_id"])
    for dept in DEPARTMENTS:
        rows = _read(d / f"{dept}.csv")
        t = truth[truth.department == dept]
        assert set(t["record_id"]) == set(rows["record_id"]) and len(t) == len(rows)
        assert t["person_id"].is_unique, f"{dept}: a person appears twice"
    needs = _read(d / "needs.csv")
    assert set(needs["person_id"]) <= set(persons["person_id"])
    assert not needs.duplicated().any()


def test_department_values_are_well_formed(scenarios):
    d, _ = scenarios[1.0]
    ca = _read(d / "civil_affairs.csv")
    assert set(ca["dibao"]) <= {"0", "1"} and ca["household_monthly_income"].str.fullmatch(r"\d+").all()
    assert ca["region_code"].str.fullmatch(r"\d{6}").all()
    hr = _read(d / "human_resources.csv")
    assert set(hr["employment_status"]) <= {"employed", "unemployed", "flexible", "retired"}
    assert (hr.loc[hr.employment_status != "unemployed", "months_since_job_loss"] == "").all()
    ed = _read(d / "education.csv")
    assert set(ed["school_level"]) <= {"primary", "junior", "senior", "vocational", "university"}
    mi = _read(d / "medical_insurance.csv")
    assert (mi["out_of_pocket_12m"].astype(float) >= 0).all()
    for dept in DEPARTMENTS:
        rows = _read(d / f"{dept}.csv")
        assert set(rows["sex"]) <= {"M", "F", "男", "女", ""}
        dates = rows.loc[rows.birth_date != "", "birth_date"]
        assert dates.str.fullmatch(r"\d{4}-\d\d-\d\d|\d{4}/\d{1,2}/\d{1,2}|\d{8}|\d{4}年\d{1,2}月\d{1,2}日").all()


def test_deterministic_for_a_seed(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    sa = write_scenario(a, 300, seed=5, reference_date=REF)
    sb = write_scenario(b, 300, seed=5, reference_date=REF)
    write_scenario(c, 300, seed=6, reference_date=REF)
    assert sa["records"] == sb["records"] and sa["needs"] == sb["needs"]
    for name in FILES:
        assert filecmp.cmp(a / name, b / name, shallow=False), name
    assert not filecmp.cmp(a / "population.csv", c / "population.csv", shallow=False)
    # the true population does not depend on the error scale
    pd.testing.assert_frame_equal(true_persons(300, 5, REF), true_persons(300, 5, REF))


def test_error_scale_changes_records_not_truth(scenarios):
    (d1, s1), (d2, s2) = scenarios[1.0], scenarios[2.0]
    assert s1["records"] == s2["records"] and s1["needs"] == s2["needs"]
    assert filecmp.cmp(d1 / "needs.csv", d2 / "needs.csv", shallow=False)
    p1, p2 = _read(d1 / "population.csv"), _read(d2 / "population.csv")
    for c in DEPARTMENT_COLUMNS["population"]:
        assert (p1[c] == p2[c]).all()


# --- resident IDs ---------------------------------------------------------------------
def _mod11_2(body: str) -> str:
    # ISO 7064 MOD 11-2, written independently of the module: sum(d_i * 2^(17-i) mod 11)
    s = sum(int(ch) * (2 ** (17 - i) % 11) for i, ch in enumerate(body))
    return "0123456789X"[(12 - s % 11) % 11]


def test_id_check_character():
    # the worked examples of GB 11643-1999
    assert resident_id("110105", "19491231", 2) == "11010519491231002X"
    assert resident_id("440524", "1880-01-01", 1) == "440524188001010014"
    assert id_check_char("11010519491231002") == "X"
    assert id_is_valid("11010519491231002X") and not id_is_valid("11010519491231002x")
    assert not id_is_valid("110105194912310021")
    rng = np.random.default_rng(1)
    for _ in range(300):
        body = "".join(map(str, rng.integers(0, 10, 17)))
        assert id_check_char(body) == _mod11_2(body)


def test_true_ids_valid_and_consistent(persons):
    ids = persons["resident_id"]
    assert ids.is_unique
    assert ids.str.fullmatch(r"\d{17}[\dX]").all()
    assert all(v[17] == _mod11_2(v[:17]) for v in ids)
    assert (ids.str[6:14] == persons["birth_date"].str.replace("-", "")).all()
    male = ids.str[16].astype(int) % 2 == 1
    assert (male == (persons["sex"] == "M")).all()
    assert (ids.str[:6] == persons["id_region"]).all()


# --- error rates ------------------------------------------------------------------------
def _close(measured: float, expected: float, what: str):
    tol = max(0.35 * expected, 0.006)
    assert abs(measured - expected) <= tol, f"{what}: measured {measured:.4f}, expected {expected:.4f}"


_ASCII_NAME = re.compile(r"[A-Za-z ]+")
_FULLWIDTH = str.maketrans("０１２３４５６７８９", "0123456789")


def _rates(rows: pd.DataFrame) -> dict:
    han = ~rows["minority"].astype(bool)
    pinyin = rows["name"].str.fullmatch(_ASCII_NAME)
    rid = rows["resident_id"]
    born_before_2000 = rows["birth_date_true"] < "2000"
    eighteen = rid.str.len() == 18
    province = rows["address_true"].str.extract(r"^(.*?(?:省|市|自治区))", expand=False).fillna("@")
    norm = rows["address"].str.replace(" ", "").map(lambda a: a.translate(_FULLWIDTH))
    moved = pd.Series([not t.endswith(a[-8:]) for t, a in zip(rows["address_true"], norm)], index=rows.index)
    no_province = pd.Series([not a.startswith(p) for a, p in zip(norm, province)], index=rows.index)
    keep = ~moved
    return {
        "sex_blank": (rows["sex"] == "").mean(),
        "date_blank": (rows["birth_date"] == "").mean(),
        "id_blank": (rid == "").mean(),
        "name_pinyin": pinyin.mean(),
        "name_changed_han": ((rows["name"] != rows["name_true"]) & ~pinyin)[han].mean(),
        "id_wrong_18": (eighteen & (rid.str.upper() != rows["resident_id_true"])).mean(),
        "id_legacy15": (rid.str.len() == 15)[born_before_2000].mean(),
        "no_province": no_province[keep].mean(),
        "moved": moved.mean(),
    }


@pytest.mark.parametrize("scale", [1.0, 2.0])
def test_error_rates_as_configured(joined, scale):
    rows = joined[scale]
    assert len(rows) > 5000
    got = _rates(rows)

    def r(name):
        return min(1.0, ERROR_RATES[name] * scale)

    _close(got["sex_blank"], r("sex_blank"), "blank sex")
    _close(got["date_blank"], r("date_blank"), "blank birth date")
    _close(got["id_blank"], r("id_blank"), "blank resident id")
    _close(got["name_pinyin"], r("name_pinyin"), "name in pinyin")
    _close(got["id_legacy15"], r("id_legacy15"), "legacy 15-digit id (of persons born before 2000)")
    _close(got["id_wrong_18"], r("id_mistype") + r("id_transpose"), "mistyped or transposed id")
    # homophone or dropped/extra character, in names not turned into pinyin
    _close(got["name_changed_han"], 1 - (1 - r("name_homophone")) * (1 - r("name_dropextra")), "changed name")
    _close(got["no_province"], r("addr_no_province") + r("addr_no_province_city"), "address without province")
    _close(got["moved"], r("addr_moved"), "stale address")


def test_errors_scale_up(joined):
    one, two = _rates(joined[1.0]), _rates(joined[2.0])
    for k in ("sex_blank", "date_blank", "id_blank", "name_pinyin", "name_changed_han", "id_wrong_18"):
        assert two[k] > 1.4 * one[k], k


def test_dates_and_sex_follow_the_truth(joined):
    rows = joined[1.0]
    sex = rows["sex"].map({"男": "M", "M": "M", "女": "F", "F": "F", "": ""})
    assert ((sex == rows["sex_true"]) | (sex == "")).all()  # blank, never wrong
    iso = rows["birth_date"].map(_iso)
    ok = (iso == rows["birth_date_true"]) | (rows["birth_date"] == "")
    # what differs is a day/month swap or one digit off: about 1.5% * P(day <= 12) + 1%
    assert 0.005 < (~ok).mean() < 0.03


def _iso(s: str) -> str:
    if not s:
        return ""
    m = re.fullmatch(r"(\d{4})\D?(\d{1,2})\D?(\d{1,2})\D?", s) if not s.isdigit() else \
        re.fullmatch(r"(\d{4})(\d\d)(\d\d)", s)
    return f"{int(m[1]):04d}-{int(m[2]):02d}-{int(m[3]):02d}"


# --- needs ------------------------------------------------------------------------------
def test_needs_present(scenarios):
    d, summary = scenarios[1.0]
    needs = _read(d / "needs.csv")
    counts = needs["need"].value_counts()
    for need in load_rulepack().needs:
        assert counts.get(need, 0) >= 1, need
        assert summary["needs"][need] == counts.get(need, 0)
    # each of the default pack's needs is frequent enough to measure precision and recall on
    for need in ("medical_hardship", "income_shock", "school_dropout_risk", "elderly_alone", "eligibility_review"):
        assert counts.get(need, 0) >= 0.004 * PERSONS, (need, counts.get(need, 0))


# --- households and population ----------------------------------------------------------
def test_households_share_address_and_region(scenarios, persons, joined):
    # in the truth: exactly
    g = persons.groupby("household")
    assert (g["address"].nunique() == 1).all() and (g["region_code"].nunique() == 1).all()
    # most household members share the surname; family members have different birth dates
    han = persons[~persons.minority]
    fam_share = han.groupby("household")["name"].apply(lambda s: s.str[0].value_counts().iloc[0] / len(s))
    assert fam_share.mean() > 0.65  # wives keep their own surname
    multi = persons[persons.household_size > 1]
    assert multi.groupby("household")["birth_date"].nunique().mean() > 0.98 * multi.groupby("household").size().mean()
    # in population.csv: one household id per true household, one region code per household id,
    # addresses alike apart from the injected variants
    d, _ = scenarios[1.0]
    pop = _read(d / "population.csv")
    truth = _read(d / "truth.csv").query("department == 'population'").set_index("record_id")["person_id"]
    pop["household"] = pop["record_id"].map(truth).map(persons.set_index("person_id")["household"])
    assert (pop.groupby("household")["household_id"].nunique() == 1).all()
    assert (pop.groupby("household_id")["household"].nunique() == 1).all()
    assert (pop.groupby("household_id")["region_code"].nunique() == 1).all()
    tail = pop["address"].str.replace(" ", "").str[-6:]
    same = pop.assign(tail=tail).groupby("household_id")["tail"].agg(lambda s: s.value_counts().iloc[0] / len(s))
    assert same.mean() > 0.9
    # household_size is the true size
    sizes = persons.groupby("household").size()
    assert (pop["household_size"].astype(int) == pop["household"].map(sizes)).all()


def test_population_looks_like_china(persons):
    age = persons["age"]
    assert 0.14 < (age < 15).mean() < 0.24
    assert 0.15 < (age >= 60).mean() < 0.25
    assert 2.3 < persons.groupby("household").size().mean() < 2.9
    assert 0.015 < persons["minority"].mean() < 0.05
    mino = persons.loc[persons.minority, "name"]
    assert mino.str.contains("·").all()
    surnames = persons.loc[~persons.minority, "name"].str[0].value_counts(normalize=True)
    assert surnames.index[0] in "王李张陈" and surnames.size > 60
    assert persons["phone"].str.fullmatch(r"(1[3-9]\d{9})?").all()
