"""Monthly runs that redo only what changed (server/pipeline/increments.py), against real coordinators
and real agents: two months of uploads, the second with records removed, added and changed, linked by a
coordinator that keeps the first run's pairs and by one started with full runs only. The second run's
links (as persons over the departments' references), thresholds and flags are the same on both, on the
exact and on the LSH-blocked engine; where max_bucket could skip a bucket the pairs are compared in full."""
from __future__ import annotations

import csv
import json
from collections import defaultdict
from dataclasses import replace

import numpy as np
import pytest

from dbutil import new_database, query

from agents.client import Agent
from agents.config import load_config
from fedlink.audit import vkey_path
from fedlink.operator import Operator
from fedlink.pki import credentials_for
from fedlink.schema import Project

DEPARTMENTS = ("population", "civil_affairs", "medical_insurance")
REMOVED, CHANGED, ADDED = 3, 5, 4  # rows per department in month two


def _rows(path):
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


@pytest.fixture(scope="module")
def month_two(scenario, tmp_path_factory):
    """Each department's second extract: rows removed, rows whose address changed (the person moved, so
    the filter changed), and new persons' rows (from another scenario, held by several departments)."""
    from bench.synth import write_scenario

    newcomers = tmp_path_factory.mktemp("newcomers")
    write_scenario(newcomers, 40, seed=12, reference_date="2025-06-30")
    out = tmp_path_factory.mktemp("month-two")
    for d in DEPARTMENTS:
        columns, rows = _rows(scenario / f"{d}.csv")
        rows = rows[REMOVED:]
        elsewhere = [r["address"] for r in rows[len(rows) // 2:]]
        for i in range(CHANGED):  # moved to the address of another household further down the register
            rows[i]["address"] = next(a for a in elsewhere if a and a != rows[i]["address"])
        _, extra = _rows(newcomers / f"{d}.csv")
        for i, row in enumerate(extra[:ADDED]):
            rows.append({**row, "record_id": f"NEW{i:04d}{row['record_id']}"})
        with open(out / f"{d}.csv", "w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
    return out


def two_months(address: str, pki, configs: dict, scenario, month_two, log_key) -> tuple[list[str], dict]:
    """Upload every department, run, upload month two, run. Returns the runs and month two's flags
    (need, tier, status, since, ref) per department."""
    def agent(department: str, extract) -> Agent:
        config = replace(configs[department], coordinator=address, audit_key=log_key, extract=extract,
                         state_dir=configs[department].state_dir.with_name(f"state-{department}-{address}"))
        return Agent(config, show_progress=False)

    runs, flags = [], {}
    with Operator.connect(address, pki) as op:
        for month, folder in enumerate((scenario, month_two)):
            for d in DEPARTMENTS:
                with agent(d, folder / f"{d}.csv") as a:
                    a.upload()
            runs.append(op.start_run("pilot", f"2025-0{6 + month}-28"))
            assert op.watch(runs[-1]) == "done"
        for d in DEPARTMENTS:
            with agent(d, month_two / f"{d}.csv") as a:
                flags[d] = sorted((f.need, f.tier, f.status, f.since, f.ref) for f in a.pull_flags(runs[-1]))
    return runs, flags


def persons(database, run_id: str) -> set[frozenset]:
    """The run's persons, each as the set of (department, encrypted reference) of its records."""
    groups = defaultdict(set)
    for department, ref, person in query(
            database, "select u.department, r.ref, l.person from links l join records r on r.id = l.record_id "
                      "join uploads u on u.upload_id = r.upload_id where l.run_id = :run", run=run_id):
        groups[person].add((department, bytes(ref)))
    return {frozenset(g) for g in groups.values()}


def stored_report(database, run_id: str) -> dict:
    (report,), = query(database, "select report from runs where run_id = :run", run=run_id)
    return report if isinstance(report, dict) else json.loads(report)


@pytest.mark.parametrize("engine, kept", [
    ("local", 3),       # exact at this size
    ("local+lsh", 3),   # always blocked: the new pairs are cut to the LSH candidates
    # Buckets over 5 records are skipped, and more records than that changed: the pairs are compared in full.
    ("local+lsh?bands=200&rows=8&max_bucket=5", 0),
])
def test_an_incremental_run_links_and_flags_as_a_full_run(engine, kept, scenario, month_two, agent_config, pki,
                                                         tmp_path):
    from server.serve import start

    configs = {d: load_config(agent_config(d)) for d in DEPARTMENTS}
    results = {}
    for name, full_runs in (("incremental", False), ("full", True)):
        key = tmp_path / f"{name}-log" / "audit-signing.key"
        database = new_database(tmp_path, name)
        running = start("127.0.0.1:0", database, credentials=credentials_for(pki, "coordinator"), engine=engine,
                        audit_key=key, witnesses=pki / "coordinator" / "witnesses.toml", full_runs=full_runs)
        try:
            address = f"127.0.0.1:{running.port}"
            with Operator.connect(address, pki) as op:
                op.create_project(Project.default("pilot", reference_date="2025-06-30"))
                runs, flags = two_months(address, pki, configs, scenario, month_two, vkey_path(key))
            report = stored_report(database, runs[-1])
            results[name] = (persons(database, runs[-1]), report["threshold_per_department_pair"], flags, report,
                             runs)
        finally:
            running.stop(grace=1)

    mine, theirs = results["incremental"], results["full"]
    summary = mine[3]["incremental"]
    assert summary["from_run"] == mine[4][0] and summary["department_pairs_kept"] == kept
    assert summary["records_new_or_changed"] == len(DEPARTMENTS) * (CHANGED + ADDED)
    assert theirs[3]["incremental"]["from_run"] is None and theirs[3]["incremental"]["department_pairs_kept"] == 0
    assert mine[0] == theirs[0] and len(mine[0]) > 0            # the same persons
    assert mine[1] == theirs[1] and len(mine[1]) == 3            # the same thresholds
    blank = "blank_id_threshold_per_department_pair"             # and those of the pairs with a blank ID
    assert mine[3][blank] == theirs[3][blank] and len(mine[3][blank]) == 3
    assert mine[2] == theirs[2] and any(mine[2].values())        # the same flags, statuses and dates
    # The same sampled profile: the score histograms of the report agree.
    assert mine[3]["score_histogram_per_department_pair"] == theirs[3]["score_histogram_per_department_pair"]


def test_the_kept_profile_and_pairs_are_a_full_runs_where_the_sample_moves():
    """In process, departments over the threshold's sample (2,000 records): records leave, change and
    come in, so the sample by reference loses and gains records; the thresholds, the sampled best and
    second scores, the pairs and the persons of the incremental link are a full link's."""
    from bench.incremental import FLOOR, identical, month_one, month_two
    from server.engine import engine_from_url
    from server.pipeline.increments import Previous, pair_carries
    from server.pipeline.link import link

    def quiet(*_):
        pass

    engine = engine_from_url("local+lsh")
    before = month_one(2600, seed=5)
    assert min(len(d.ids) for d in before) > 2000
    first = link(before, FLOOR, engine, quiet, auto=True)
    after, unchanged = month_two(before, 2600, changed=0.05, removed=0.02, seed=5)
    previous = Previous("month-1", FLOOR, first.carried.bucket_bound, pair_carries(before, first.carried), unchanged)
    full = link(after, FLOOR, engine, quiet, auto=True)
    incremental = link(after, FLOOR, engine, quiet, auto=True, previous=previous)
    assert incremental.carried.summary["department_pairs_kept"] == 15
    assert identical(full, incremental)
    # Some sampled records were kept from month one and some re-scored: both paths ran.
    kept = [np.isin(p[0].ids, after[a].ids[previous.unchanged[after[a].department][0]]).mean()
            for (a, b), p in incremental.carried.profiles.items()]
    assert 0 < min(kept) and max(kept) < 1
    # ... and unchanged records came into the sample (records with lower hashes left).
    rows, earlier = previous.unchanged[after[0].department]
    sampled_now = earlier[np.isin(after[0].ids[rows], incremental.carried.profiles[(0, 1)][0].ids)]
    assert not np.isin(sampled_now, first.carried.profiles[(0, 1)][0].ids).all()



def test_a_kept_level_above_what_this_run_needs_is_not_reused():
    """A previous run kept a department pair's pairs from higher than this run needs (its threshold
    fell): they miss pairs this run needs, so that pair is compared in full and the links, thresholds
    and profiles are still a full run's."""
    from dataclasses import replace as replaced

    from bench.incremental import FLOOR, identical, month_one, month_two
    from server.engine import engine_from_url
    from server.pipeline.increments import Previous, pair_carries
    from server.pipeline.link import link

    def quiet(*_):
        pass

    engine = engine_from_url("local")
    before = month_one(1200, seed=11)
    first = link(before, FLOOR, engine, quiet, auto=True)
    after, unchanged = month_two(before, 1200, changed=0.05, removed=0.02, seed=11)
    carries = pair_carries(before, first.carried)
    first_pair = next(iter(carries))
    carries[first_pair] = replaced(carries[first_pair], level=0.99)  # as if kept above every threshold
    full = link(after, FLOOR, engine, quiet, auto=True)
    incremental = link(after, FLOOR, engine, quiet, auto=True,
                       previous=Previous("month-1", FLOOR, first.carried.bucket_bound, carries, unchanged))
    assert incremental.carried.summary["department_pairs_kept"] == len(carries) - 1
    assert identical(full, incremental)


@pytest.mark.parametrize("engine_url", ["local", "local+lsh"])
def test_blank_ids_that_change_between_months_link_as_in_a_full_run(engine_url):
    """In process, with an ID segment (server/pipeline/presence.py): a sixth of the records have a
    blank ID. In month two blank-ID records change (some gain an ID, some stay blank with another
    rest), records with an ID lose it, newcomers come in blank: each class is kept from month one
    at its own level and the thresholds of both classes, the pairs (of both classes, each with its
    own score), the kept pairs, the profiles and the persons are a full run's."""
    from bench.incremental import FLOOR, identical, month_one, month_two
    from server.engine import engine_from_url
    from server.pipeline.increments import Previous, pair_carries
    from server.pipeline.link import link
    from server.pipeline.presence import blank_ids

    def quiet(*_):
        pass

    schema = Project.default("pilot").schema
    words = schema.id_segment_words()
    assert words == 4
    rng = np.random.default_rng(21)

    def blank_some(departments, share):
        for d in departments:
            d.filters[rng.random(len(d.ids)) < share, -words:] = 0

    engine = engine_from_url(engine_url)
    before = month_one(1500, seed=21)
    blank_some(before, 1 / 6)
    first = link(before, FLOOR, engine, quiet, auto=True, schema=schema)
    after, unchanged = month_two(before, 1500, changed=0.06, removed=0.02, seed=21)
    gained = lost = stayed = 0
    for d in after:
        rows, earlier = unchanged[d.department]
        same = np.zeros(len(d.ids), bool)
        same[rows] = True
        changed = np.flatnonzero(~same)
        # month_two flipped bits across the whole filter of a changed record, so a blank ID gained
        # one; a third of the changed records get a blank ID (another rest, no ID).
        now_blank = blank_ids(d.filters, words)
        keep_blank = changed[rng.random(len(changed)) < 0.3]
        d.filters[keep_blank, -words:] = 0
        stayed += int(len(keep_blank))
        # Unchanged records that lose their ID this month: no longer unchanged.
        losing = rows[rng.random(len(rows)) < 0.01]
        losing = losing[~now_blank[losing]]
        d.filters[losing, -words:] = 0
        lost += len(losing)
        keep = ~np.isin(rows, losing)
        unchanged[d.department] = (rows[keep], earlier[keep])
        gained += int((~blank_ids(d.filters, words)[changed]).sum())
    assert lost > 10 and stayed > 10 and gained > 10
    previous = Previous("month-1", FLOOR, first.carried.bucket_bound, pair_carries(before, first.carried), unchanged)
    full = link(after, FLOOR, engine, quiet, auto=True, schema=schema)
    incremental = link(after, FLOOR, engine, quiet, auto=True, schema=schema, previous=previous)
    summary = incremental.carried.summary
    assert summary["department_pairs_kept"] == summary["blank_classes_kept"] == 15
    assert identical(full, incremental)
    assert full.blank_thresholds == incremental.blank_thresholds
    for pair, p in full.carried.pairs.items():
        for c in ("left", "right", "score"):
            assert np.array_equal(getattr(p, c), getattr(incremental.carried.pairs[pair], c))
    # Both classes were linked: pairs with a blank ID among the links.
    links = full.pairs[(0, 1)]
    assert (blank_ids(after[0].filters, words)[links.left] | blank_ids(after[1].filters, words)[links.right]).sum() > 20
