"""The realistic generator (bench/synth/realistic): its realities at their documented
rates, namesakes at city scale, determinism, and each reality switched off on its own."""
from __future__ import annotations

import filecmp
import re

import numpy as np
import pandas as pd
import pytest

from bench.synth import write_scenario
from bench.synth.realistic import GROUPS, REALITIES, build_cn
from bench.synth.realistic.rates import RECORD_RATES, rate
from bench.synth.realistic.tables_cn import TIBETAN_LHASA_AMDO, UYGHUR_VARIANTS
from fedlink.schema import DEPARTMENTS

PERSONS = 4000
SEED = 3


def _read(path):
    return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")


def _write(tmp_path_factory, name, **kw):
    d = tmp_path_factory.mktemp(name)
    write_scenario(d, kw.pop("persons", PERSONS), seed=kw.pop("seed", SEED), realism="cn", **kw)
    return d


@pytest.fixture(scope="module")
def scen(tmp_path_factory):
    return _write(tmp_path_factory, "cn")


@pytest.fixture(scope="module")
def records(scen):
    """Every record with its group labels and its true person."""
    truth, groups = _read(scen / "truth.csv"), _read(scen / "groups.csv")
    frames = [_read(scen / f"{d}.csv").iloc[:, :7].assign(department=d) for d in DEPARTMENTS]
    rows = pd.concat(frames, ignore_index=True).merge(truth, on=["department", "record_id"])
    rows = rows.merge(groups, on=["department", "record_id"])
    for g in GROUPS:
        rows[g] = rows[g].astype(int).astype(bool)
    return rows


def _within(observed: int, n: int, p: float) -> bool:
    """observed ~ Binomial(n, p) within 4 standard deviations (and 1 record)."""
    return abs(observed - n * p) <= 4 * np.sqrt(n * p * (1 - p)) + 1


def test_layout_and_labels(scen, records):
    names = {p.name for p in scen.iterdir()}
    assert {f"{d}.csv" for d in DEPARTMENTS} | {"truth.csv", "needs.csv", "scenario.toml", "groups.csv"} <= names
    assert len(_read(scen / "groups.csv")) == len(_read(scen / "truth.csv"))
    assert "realism=cn" in (scen / "scenario.toml").read_text(encoding="utf-8")
    # labels say what the record holds
    assert (records["blank_id"] == (records["resident_id"] == "")).all()
    assert (records["blank_date"] == (records["birth_date"] == "")).all()
    ascii_name = records["name"].map(lambda s: bool(s) and s.isascii())
    assert (records["pinyin_only"] == ascii_name).all()


def test_blank_ids_at_department_rates(records):
    for dept in DEPARTMENTS:
        part = records[records.department == dept]
        assert _within(int(part["blank_id"].sum()), len(part), rate("id_blank", dept)), dept
    assert RECORD_RATES["id_blank"][DEPARTMENTS.index("housing")] > 10 * RECORD_RATES["id_blank"][0]


def test_pinyin_styles_and_umlaut(records):
    for dept in DEPARTMENTS:
        part = records[records.department == dept]
        assert _within(int(part["pinyin_only"].sum()), len(part), rate("pinyin", dept)), dept
    pinyin = records.loc[records["pinyin_only"], "name"]
    assert pinyin.str.fullmatch(r"[A-Z]+( [A-Z]+)+").any()          # capitals
    assert pinyin.str.fullmatch(r"[A-Z]{6,}").any()                 # no spaces
    assert pinyin.str.fullmatch(r"[A-Z][a-z]+( [A-Z][a-z]*){2,}").any()  # syllables split


def test_placeholder_and_lunar_dates_for_the_old(records):
    persons = build_cn(PERSONS, SEED).world.persons.set_index("person_id")
    born = records["person_id"].map(persons["birth_date"])
    old = born.str[:4].astype(int) < 1960
    assert not records.loc[~(born.str[:4].astype(int) < 1970), "lunar_date"].any()
    assert not records.loc[~old, "placeholder_date"].any()
    for dept in ("civil_affairs", "housing"):
        sel = old & (records.department == dept)
        assert _within(int(records.loc[sel, "placeholder_date"].sum()), int(sel.sum()), rate("date_placeholder", dept))
    place = records[records["placeholder_date"]]
    assert place["birth_date"].map(lambda s: bool(re.search(r"(0?1|0?7)[-/月]?0?1日?$", s))).all()


def test_traditional_in_guangdong_and_permit_holders(records):
    trad = records[records["traditional"]]
    assert len(trad) > 0
    persons = build_cn(PERSONS, SEED).world.persons.set_index("person_id")
    region = trad["person_id"].map(persons["region_code"])
    assert ((region.str[:2] == "44") | trad["permit"]).all()
    import opencc
    back = opencc.OpenCC("t2s")
    changed = trad["name"] != trad["person_id"].map(persons["name"])
    assert changed.mean() > 0.5 and trad.loc[changed, "name"].map(back.convert).ne(trad.loc[changed, "name"]).all()


def test_permit_holders_and_migrants_have_no_population_record(scen, records):
    population = set(records.loc[records.department == "population", "person_id"])
    permit = records[records["permit"]]
    migrant = records[records["migrant"]]
    assert len(permit) and len(migrant)
    assert not (set(permit["person_id"]) | set(migrant["person_id"])) & population
    ids = permit.loc[permit["resident_id"] != "", "resident_id"]
    assert ids.str.fullmatch(r"8[123]0000\d{11}[\dX]|[HM]\d{8}|\d{8}").all()
    # a migrant's hukou address is in the home county: some register holds one
    assert migrant["address"].str.contains("周口市|邵阳市|永州市|赣州市|贵港市|南充市|梁平县|定西市|阜阳市|毕节市").any()


def test_minority_names_and_variants(records):
    uy = records[records["minority"] & records["name"].str.contains("·|•|．|・") ]
    assert len(uy)
    seps = set(re.findall(r"[·•．・.]", "".join(records.loc[records["minority"], "name"])))
    assert {"·", "•"} <= seps
    variants = {v for vs in UYGHUR_VARIANTS.values() for v in vs}
    parts = {p for n in records.loc[records["minority"], "name"] for p in re.split(r"[·•．・. ]", n)}
    assert parts & variants and parts & set(UYGHUR_VARIANTS)


def test_tibetan_spellings_both_appear():
    cw = build_cn(40000, SEED)
    tib = cw.facts["kind"].to_numpy() == "tibetan"
    assert tib.sum() > 20
    from bench.synth.realistic.render import render_department_cn
    names = pd.concat([render_department_cn(cw, d, SEED)[0]["name"] for d in ("medical_insurance", "housing")])
    text = "".join(names)
    assert any(l in text for l in TIBETAN_LHASA_AMDO if TIBETAN_LHASA_AMDO[l] != l)
    assert any(a in text for l, a in TIBETAN_LHASA_AMDO.items() if a != l)


def test_surnames_and_namesakes_at_city_scale():
    persons = build_cn(50000, 1).world.persons
    han = build_cn(50000, 1).facts["kind"].to_numpy() == "han"
    surname = persons["name"][han].str[0]
    top5 = surname.isin(list("王李张刘陈")).mean()
    assert 0.27 < top5 < 0.34
    shared = persons["name"].map(persons["name"].value_counts()) > 1
    assert 0.28 < shared.mean() < 0.40  # about a third share their full name with someone
    assert persons["name"].value_counts().index[0] in {"王伟", "李伟", "张伟", "王丽", "李丽", "陈伟", "张丽", "陈丽",
                                                        "李静", "王静", "王芳", "李娜", "张敏"}


def test_namesakes_switched_off_makes_names_nearly_unique():
    persons = build_cn(20000, 1, without=["namesakes"]).world.persons
    assert (persons["name"].map(persons["name"].value_counts()) > 1).mean() < 0.05


def test_twins_share_a_birthday_and_often_a_generation_character():
    cw = build_cn(20000, 2)
    p = cw.world.persons
    kids = p[p["role"].isin(["C", "K"])]
    twins = kids[kids.duplicated(["household", "birth_date"], keep=False)]
    assert 0.005 < len(twins) / len(kids) < 0.03
    first = twins.groupby("household")["name"].agg(lambda s: len({n[1] for n in s if len(n) > 2}))
    assert (first == 1).mean() > 0.5


def test_determinism(tmp_path_factory, scen):
    again = _write(tmp_path_factory, "again")
    for f in [f"{d}.csv" for d in DEPARTMENTS] + ["truth.csv", "groups.csv", "needs.csv"]:
        assert filecmp.cmp(scen / f, again / f, shallow=False), f
    other = _write(tmp_path_factory, "other", seed=SEED + 1)
    assert not filecmp.cmp(scen / "housing.csv", other / "housing.csv", shallow=False)


@pytest.mark.parametrize("reality,column,group", [
    ("blank_ids", "resident_id", "blank_id"), ("pinyin", "name", "pinyin_only"),
    ("placeholder_dates", "birth_date", "placeholder_date"), ("traditional", None, "traditional")])
def test_a_reality_switched_off_changes_only_itself(tmp_path_factory, scen, reality, column, group):
    off = _write(tmp_path_factory, f"no-{reality}", without=[reality])
    assert not _read(off / "groups.csv")[group].astype(int).any()
    for d in DEPARTMENTS:
        a, b = _read(scen / f"{d}.csv"), _read(off / f"{d}.csv")
        assert list(a["record_id"]) == list(b["record_id"])
        for c in a.columns:
            if c != column and not (reality == "traditional" and c in ("name", "address")):
                assert a[c].equals(b[c]), (reality, d, c)
    assert filecmp.cmp(scen / "truth.csv", off / "truth.csv", shallow=False)


def test_unknown_reality_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="unknown realities nope; known: blank_ids"):
        write_scenario(tmp_path, 100, realism="cn", without=["nope"])
    assert set(REALITIES) >= {"blank_ids", "permits", "migrants", "traditional", "pinyin", "minority_variants"}


def test_fairness_counts_misses_and_false_links_per_group():
    from bench.metrics import fairness_by_group

    truth = pd.DataFrame({"department": ["a", "b", "a", "b", "c"], "record_id": ["1", "2", "3", "4", "5"],
                          "person_id": ["P", "P", "Q", "Q", "R"]})
    # P's pair missed (record 2 has a blank ID); Q's linked; R wrongly joined to Q
    links = truth.assign(cluster_id=["x", "y", "z", "z", "z"])[["department", "record_id", "cluster_id"]]
    groups = pd.DataFrame({"department": truth["department"], "record_id": truth["record_id"],
                           "blank_id": ["0", "1", "0", "0", "0"], "permit": ["0", "0", "0", "0", "1"]})
    f = fairness_by_group(links, truth, groups)
    assert f["all"] == {"true_pairs": 2, "recall": 0.5, "linked_pairs": 3, "false_links": 2,
                        "false_link_rate": round(2 / 3, 5)}
    assert f["blank_id"]["recall"] == 0.0 and f["blank_id"]["true_pairs"] == 1
    assert f["permit"]["true_pairs"] == 0 and f["permit"]["false_links"] == 2 and f["permit"]["linked_pairs"] == 2


def test_bench_reports_recall_per_group_on_a_realistic_scenario(tmp_path_factory):
    import json

    from bench.harness import run_bench
    from dbutil import new_database

    scenario = _write(tmp_path_factory, "small", persons=300)
    out = tmp_path_factory.mktemp("bench-cn")
    metrics = run_bench(scenario, out, database=new_database(out))
    saved = json.loads((out / "metrics.json").read_text())
    assert set(saved["fairness"]) == {"all", *GROUPS}
    assert saved["fairness"]["all"]["true_pairs"] == metrics["links"]["true_pairs"]
    assert saved["fairness"]["blank_id"]["true_pairs"] > 0
