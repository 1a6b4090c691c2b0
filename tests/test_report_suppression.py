"""Reports that cannot be subtracted: a real run's report over gRPC, attacked
the way a reader would: every sum the report's tables are tied by, alone and
two at a time, solved for each withheld cell, and the "all ones" bound. The
same attacks recover cells when only the small ones are withheld (the
finding), so they bite."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.client import Agent
from agents.config import load_config
from fedlink.rules import default_text
from fedlink.schema import DEPARTMENTS

K = 40  # high enough that a 400-person run has small cells in most tables


def _relations(report: dict) -> list[dict]:
    """The sums a reader of the report knows, as {(table, key): coefficient} == 0."""
    cells = lambda t: [c["key"] for c in report.get(t, [])]  # noqa: E731
    n = len(cells("records_per_department"))
    rel = [{("persons", "persons"): 1, **{("persons_by_department_count", c): -1
                                          for c in cells("persons_by_department_count")}},
           {**{("records_per_department", d): 1 for d in cells("records_per_department")},
            **{("persons_by_department_count", f"{c} departments"): -c for c in range(1, n + 1)}},
           {**{("flags_per_need", x): 1 for x in cells("flags_per_need")},
            **{("flags_per_status", s): -1 for s in ("new", "continuing") if s in cells("flags_per_status")}},
           # A need's tiers add up to the need.
           *({("flags_per_need", x): 1, **{("flags_per_need_tier", k): -1 for k in cells("flags_per_need_tier")
                                          if k.rpartition("/")[0] == x}} for x in cells("flags_per_need"))]
    # Each table's own total, as if a reader had it from elsewhere (the tables whose true values the test
    # can recompute from the store; test_random_tables covers the rest of the rule).
    for table in ("records_per_department", "persons_by_department_count", "flags_per_need", "flags_per_status",
                  "flags_per_need_tier", "t"):
        if len(report.get(table, [])) > 1:
            rel.append({**{(table, c): 1 for c in cells(table)}, (table, "total"): -1})
    return rel


def derived(report: dict, truth: dict[tuple[str, str], int]) -> list[tuple[str, str]]:
    """The withheld cells some subtraction gives back exactly. `truth` holds every cell's real value (the
    attacker does not know the withheld ones; a table's 'total' is assumed known)."""
    hidden = {(t, c["key"]) for t in truth_tables(report) for c in report[t] if c.get("suppressed")}
    if int(report.get("persons", 0)) == 0 and truth.get(("persons", "persons")):
        hidden.add(("persons", "persons"))
    known = {cell: v for cell, v in truth.items() if cell not in hidden}
    found = set()
    relations = [r for r in _relations(report) if all(c in truth for c in r)]
    for combo in itertools.chain(itertools.combinations(relations, 1), itertools.combinations(relations, 2)):
        unknown = sorted({c for r in combo for c in r if c in hidden})
        if not unknown or len(unknown) > len(combo):
            # More unknowns than equations: only the "every unknown is 1" bound can pin them.
            for r in combo:
                u = [c for c in r if c in hidden]
                rest = -sum(a * known[c] for c, a in r.items() if c not in hidden)
                if u and all(abs(r[c]) == 1 for c in u) and len({r[c] for c in u}) == 1 and rest * r[u[0]] == len(u):
                    found.update(u)
            continue
        a = np.array([[r.get(c, 0) for c in unknown] for r in combo], dtype=float)
        b = np.array([-sum(x * known[c] for c, x in r.items() if c not in hidden) for r in combo], dtype=float)
        if np.linalg.matrix_rank(a) == len(unknown):
            found.update(unknown)
    return sorted(found)


def truth_tables(report: dict) -> list[str]:
    return [t for t in ("records_per_department", "persons_by_department_count", "flags_per_need",
                        "flags_per_status", "flags_per_need_tier", "t") if t in report]


@pytest.fixture
def real_report(scenario, agent_config, coordinator, operator, project):
    from server import queries as q

    with coordinator.coordinator.context.store.write() as conn:
        q.set_rules(conn, "pilot", default_text().replace("suppression_k = 5", f"suppression_k = {K}"))
    for d in DEPARTMENTS:
        with Agent(load_config(agent_config(d)), show_progress=False) as agent:
            agent.upload()
    run_id = operator.start_run("pilot", "2025-06-30")
    assert operator.watch(run_id) == "done"
    with coordinator.coordinator.context.store.read() as conn:
        stored = q.run(conn, run_id)
    return operator.report(run_id), run_id, coordinator, stored


def _truth(coordinator, run_id: str) -> dict:
    """Every cell's real value, recomputed from the run's stored links and flags (the attacker's target)."""
    from sqlalchemy import func, select

    from server import store as t

    with coordinator.coordinator.context.store.read() as conn:
        sizes = conn.execute(select(t.links.c.person, func.count()).where(t.links.c.run_id == run_id)
                             .group_by(t.links.c.person)).all()
        per_dept = conn.execute(select(t.uploads.c.department, func.count()).select_from(t.links).join(
            t.records, t.records.c.id == t.links.c.record_id).join(
            t.uploads, t.uploads.c.upload_id == t.records.c.upload_id).where(t.links.c.run_id == run_id)
            .group_by(t.uploads.c.department)).all()
        flags = conn.execute(select(t.flags.c.need, t.flags.c.status, t.flags.c.person, t.flags.c.tier).where(
            t.flags.c.run_id == run_id)).all()
    truth = {("persons", "persons"): len(sizes)}
    for c in range(1, len(DEPARTMENTS) + 1):
        truth[("persons_by_department_count", f"{c} departments")] = sum(1 for _, n in sizes if n == c)
    truth.update({("records_per_department", d): n for d, n in per_dept})
    tiers: dict[tuple[str, int], int] = {}  # (need, person) -> the most urgent tier
    for f in flags:
        if f.status == "held":
            continue
        truth[("flags_per_status", f.status)] = truth.get(("flags_per_status", f.status), 0) + 1
        if f.person >= 0:
            truth[("flags_per_need", f.need)] = truth.get(("flags_per_need", f.need), 0) + 1
            tiers[(f.need, f.person)] = min(tiers.get((f.need, f.person), f.tier), f.tier)
    for (need, _), tier in tiers.items():
        key = ("flags_per_need_tier", f"{need}/{tier}")
        truth[key] = truth.get(key, 0) + 1
    return truth


def test_no_withheld_cell_of_a_real_report_can_be_subtracted_out(real_report):
    report, run_id, coordinator, stored = real_report
    truth = _truth(coordinator, run_id)
    for table in truth_tables(report):
        cells = [(table, c["key"]) for c in report[table]]
        truth[(table, "total")] = sum(truth.get(c, 0) for c in cells)
        for c in report[table]:  # shown cells are what they say
            if not c["suppressed"] and (table, c["key"]) in truth:
                assert truth[(table, c["key"])] == int(c.get("count", 0))
    small = [(t, c["key"]) for t in truth_tables(report) for c in report[t]
             if 0 < truth.get((t, c["key"]), 0) < K]
    assert small, "the run should have small cells, or the test would not bite"
    assert derived(report, truth) == []

    # The finding: withholding only the small cells lets the same subtractions give them back.
    naive = {**report, "persons": int(report["persons"]) or truth[("persons", "persons")]}
    for table in truth_tables(report):
        naive[table] = [{**c, "suppressed": 0 < truth.get((table, c["key"]), 0) < K} for c in report[table]]
    assert derived(naive, truth), "only-the-small-cells suppression should be attackable"


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(0, 30), min_size=1, max_size=7), st.integers(3, 10))
def test_random_tables_keep_every_small_cell_within_1_to_k_minus_1(counts, k):
    """`suppress` on any one table whose total a reader knows: no small cell comes back, by subtraction or by
    the 'all ones' bound, and every withheld cell could be anything from 1 to k-1."""
    from server.pipeline.report import suppress

    cells = suppress({f"c{i}": c for i, c in enumerate(counts)}, k)
    report = {"t": cells}
    truth = {("t", f"c{i}"): c for i, c in enumerate(counts)}
    truth[("t", "total")] = sum(counts)
    hidden = [c for c in cells if c["suppressed"]]
    assert all(c["suppressed"] for c, n in zip(cells, counts) if 0 < n < k)
    nonzero = [n for n in counts if n]
    # Protectable: at least two nonzero cells (a lone one is the total itself) whose withheld sum leaves
    # each of them a range of k-1 values (hypothesis found counts=[0, 2], k=3 against the old bound alone).
    protectable = len(nonzero) >= 2 and sum(nonzero) - len(nonzero) + 1 >= k - 1
    if any(0 < n < k for n in counts):
        residual = sum(counts) - sum(c["count"] for c in cells)
        if protectable:
            # m withheld cells of at least 1 each summing to `residual`: each lies in [1, residual - m + 1].
            assert residual - len(hidden) + 1 >= k - 1, (counts, cells)
        else:  # nothing can protect a table of small counts whose total is known: all of it is withheld
            assert len(hidden) == len(nonzero), (counts, cells)
    assert derived(report, truth) == [] or not protectable


def test_fifty_wrong_person_outcomes_on_one_flag_count_once_and_the_last_outcome_holds(
        scenario, agent_config, coordinator, operator, project, tmp_path):
    import pandas as pd

    configs = {d: agent_config(d) for d in DEPARTMENTS}
    for d in DEPARTMENTS:
        with Agent(load_config(configs[d]), show_progress=False) as agent:
            agent.upload()
    run_id = operator.start_run("pilot", "2025-06-30")
    assert operator.watch(run_id) == "done"
    with Agent(load_config(configs["civil_affairs"]), show_progress=False) as agent:
        agent.write_worklist(tmp_path / "ca.csv")
        flags = pd.read_csv(tmp_path / "ca.csv", dtype=str, keep_default_na=False)
        first, second = flags.iloc[0], flags.iloc[1]
        for _ in range(50):
            agent.record_outcome(first["record_id"], first["need"], "wrong_person", run_id)
        agent.record_outcome(second["record_id"], second["need"], "not_in_need", run_id)
        agent.record_outcome(second["record_id"], second["need"], "confirmed", run_id)  # supersedes
    counts = {}
    for c in operator.report(run_id)["outcomes_per_rule"]:
        counts[c["key"]] = c
    with coordinator.coordinator.context.store.read() as conn:
        from server import queries as q
        raw = q.outcome_counts(conn, "pilot")
        latest = q.latest_outcomes(conn, "pilot")
    rule = lambda row: row["reasons"].split(":")[0]  # noqa: E731
    assert raw[f"{rule(first)}/wrong_person"] == 1  # flags, not calls
    assert raw.get(f"{rule(second)}/not_in_need", 0) == 0 and raw[f"{rule(second)}/confirmed"] >= 1
    assert [o.outcome for o in latest if o.outcome == "not_in_need"] == []  # its suppression ended too
    assert set(counts) >= {f"{rule(first)}/wrong_person"}
    # Both steps of the superseded review stay in the audit log.
    with coordinator.coordinator.context.store.read() as conn:
        bodies = q.audit_bodies(conn, "pilot", "review.outcome")
    assert len(bodies) == 52
