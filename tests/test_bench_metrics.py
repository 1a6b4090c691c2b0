"""The bench's quality figures against a brute-force count over every record pair."""
from __future__ import annotations

import itertools
from datetime import date

import numpy as np
import pandas as pd

from bench.metrics import missed_links_by_group, pair_quality, pairwise_quality

DEPARTMENTS = ["civil_affairs", "education", "housing", "population"]


def _scenario(seed: int, n: int = 300):
    rng = np.random.default_rng(seed)
    truth = pd.DataFrame({"department": rng.choice(DEPARTMENTS, n), "record_id": [f"r{i}" for i in range(n)],
                          "person_id": [f"p{k}" for k in rng.integers(0, n // 3, n)]})
    # Clusters: mostly the person, some records split off, some persons merged.
    cluster = pd.factorize(truth["person_id"])[0]
    cluster = np.where(rng.random(n) < 0.1, 10_000 + np.arange(n), cluster)
    cluster = np.where(rng.random(n) < 0.05, 7, cluster)
    links = truth[["department", "record_id"]].assign(cluster_id=cluster)
    return links, truth


def _brute_pairs(links: pd.DataFrame, truth: pd.DataFrame):
    rows = links.merge(truth, on=["department", "record_id"]).to_dict("records")
    for x, y in itertools.combinations(rows, 2):
        yield x, y, x["cluster_id"] == y["cluster_id"], x["person_id"] == y["person_id"]


def test_pair_quality_counts_every_cross_department_pair():
    for seed in (1, 2, 3):
        links, truth = _scenario(seed)
        got = pair_quality(links, truth)
        want: dict = {}
        for x, y, linked, same in _brute_pairs(links, truth):
            if x["department"] == y["department"]:
                continue
            c = want.setdefault("~".join(sorted([x["department"], y["department"]])), [0, 0, 0])
            c[0] += linked
            c[1] += same
            c[2] += linked and same
        assert set(got) == set(want)
        for key, (predicted, actual, tp) in want.items():
            assert (got[key]["predicted_pairs"], got[key]["true_pairs"], got[key]["true_positive_pairs"]) == \
                (predicted, actual, tp), key
        all_pairs = list(_brute_pairs(links, truth))
        overall = pairwise_quality(links, truth)
        assert overall["predicted_pairs"] == sum(p[2] for p in all_pairs)
        assert overall["true_positive_pairs"] == sum(p[2] and p[3] for p in all_pairs)


def test_a_persons_age_band_and_sex_are_what_most_records_give_the_smallest_on_a_tie():
    truth = pd.DataFrame({"department": ["population", "education", "housing", "civil_affairs", "population"],
                          "record_id": ["a", "b", "c", "d", "e"], "person_id": ["p", "p", "p", "p", "q"]})
    links = truth[["department", "record_id"]].assign(cluster_id=[1, 1, 2, 2, 3])
    # p: two births given once each, two blank: the tie goes to the smaller value (Series.mode's
    # order), 1950-01-01, 75 on the reference date;
    # sex "2" twice against "1" once. q: nothing known.
    groups = pd.DataFrame({"department": truth["department"], "record_id": truth["record_id"],
                           "birth": ["2015-01-01", "", "1950-01-01", "", ""],
                           "sex": ["1", "2", "2", "", ""], "minority": False, "pinyin_only": False})
    groups.attrs.update(as_of=date(2025, 6, 30), has_birth=True, has_sex=True, has_name=True)
    got = missed_links_by_group(links, truth, groups)
    assert got["all"] == {"true_pairs": 6, "missed": 4, "missed_rate": round(4 / 6, 5)}
    assert set(got["age_band"]) == {"60-79"} and got["age_band"]["60-79"]["true_pairs"] == 6
    assert set(got["sex"]) == {"2"}
