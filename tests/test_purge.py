"""Superseded uploads purged at commit (server/domain/superseded.py), against real coordinators on loopback
and real agents: population uploads, a run, then two re-uploads. The upload no run used is deleted at the
next commit, audited, and on SQLite the file shrinks; the upload the kept run used survives, and so does the
upload of a run still computing; the next run still works, and, incremental from the first, links and flags
as a full run of the same uploads does."""
from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

from dbutil import BACKEND, new_database, query, scalar

from agents.client import Agent
from agents.config import load_config
from fedlink.audit import vkey_path
from fedlink.operator import Operator
from fedlink.pki import credentials_for
from fedlink.schema import Project

DEPARTMENTS = ("population", "medical_insurance")
EXTRA = 400  # persons of another scenario in the mistaken upload: enough pages that the file shrinks


def _write(path: Path, columns, rows) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def population_extracts(scenario: Path, tmp_path: Path) -> list[Path]:
    """P0 the register; P1 it with another scenario's persons added by mistake; P2 the register without its
    last row."""
    from bench.synth import write_scenario

    others = tmp_path / "others"
    write_scenario(others, EXTRA, seed=13, reference_date="2025-06-30")
    with open(scenario / "population.csv", encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        columns, rows = reader.fieldnames, list(reader)
    with open(others / "population.csv", encoding="utf-8", newline="") as f:
        extra = [{**r, "record_id": f"X{r['record_id']}"} for r in csv.DictReader(f)]
    return [_write(tmp_path / "p0.csv", columns, rows), _write(tmp_path / "p1.csv", columns, rows + extra),
            _write(tmp_path / "p2.csv", columns, rows[:-1])]


def file_bytes(database) -> int:
    """The SQLite file with its WAL checkpointed into it: what the store takes on disk."""
    scalar(database, "pragma wal_checkpoint(TRUNCATE)")
    return Path(database).stat().st_size


class Coordinator:
    def __init__(self, pki: Path, tmp_path: Path, name: str, **options):
        from server.serve import start

        self.key = tmp_path / f"{name}-log" / "audit-signing.key"
        self.database = new_database(tmp_path, name)
        self.running = start("127.0.0.1:0", self.database, credentials=credentials_for(pki, "coordinator"),
                             audit_key=self.key, witnesses=pki / "coordinator" / "witnesses.toml", **options)
        self.address = f"127.0.0.1:{self.running.port}"
        with Operator.connect(self.address, pki) as op:
            op.create_project(Project.default("pilot", reference_date="2025-06-30"))

    def agent(self, config, extract=None) -> Agent:
        config = replace(config, coordinator=self.address, audit_key=vkey_path(self.key),
                         state_dir=config.state_dir.with_name(f"state-{config.department}-{self.address}"))
        return Agent(replace(config, extract=extract) if extract else config, show_progress=False)

    def upload(self, config, extract=None) -> str:
        with self.agent(config, extract) as a:
            return a.upload(force=True).upload_id

    def run(self, pki, as_of: str) -> str:
        with Operator.connect(self.address, pki) as op:
            run_id = op.start_run("pilot", as_of)
            assert op.watch(run_id) == "done"
        return run_id

    def outcome(self, configs, extract, run_id: str) -> tuple[set, dict]:
        """The run's persons (as sets of department and reference) and each department's flags."""
        groups: dict[int, set] = {}
        for department, ref, person in query(
                self.database, "select u.department, r.ref, l.person from links l join records r on "
                "r.id = l.record_id join uploads u on u.upload_id = r.upload_id where l.run_id = :run",
                run=run_id):
            groups.setdefault(person, set()).add((department, bytes(ref)))
        flags = {}
        for d in DEPARTMENTS:
            with self.agent(configs[d], extract if d == "population" else None) as a:
                flags[d] = sorted((f.need, f.tier, f.status, f.since, f.ref) for f in a.pull_flags(run_id))
        return {frozenset(g) for g in groups.values()}, flags


def records_bytes(database) -> int:
    """PostgreSQL: the records table with its indexes and TOAST, on disk."""
    return scalar(database, "select pg_total_relation_size('records')")


def records_of(database, upload_id: str) -> int:
    return scalar(database, "select count(*) from records where upload_id = :u", u=upload_id)


def test_a_superseded_upload_no_run_needs_is_purged_at_the_next_commit(scenario, agent_config, pki, tmp_path):
    configs = {d: load_config(agent_config(d)) for d in DEPARTMENTS}
    p = population_extracts(scenario, tmp_path)
    mine = Coordinator(pki, tmp_path, "purging")  # keeps the last two runs, the default
    try:
        mine.upload(configs["medical_insurance"])
        ups = [mine.upload(configs["population"], p[0])]
        first = mine.run(pki, "2025-06-28")
        ups.append(mine.upload(configs["population"], p[1]))
        # P0 is the kept run's: nothing went yet.
        assert records_of(mine.database, ups[0]) > 0 and records_of(mine.database, ups[1]) > 0
        assert not query(mine.database, "select seq from audit_events where kind = 'upload.purged'")
        before = file_bytes(mine.database) if BACKEND == "sqlite" else records_bytes(mine.database)

        ups.append(mine.upload(configs["population"], p[2]))
        assert records_of(mine.database, ups[1]) == 0
        assert scalar(mine.database, "select count(*) from uploads where upload_id = :u", u=ups[1]) == 0
        assert scalar(mine.database, "select count(*) from batches where upload_id = :u", u=ups[1]) == 0
        (body,), = query(mine.database, "select body from audit_events where kind = 'upload.purged'")
        event = json.loads(body)
        p1_rows = len(p[1].read_text(encoding="utf-8").splitlines()) - 1
        assert event["department"] == "population" and event["project_id"] == "pilot"
        assert event["details"] == {"upload_id": ups[1], "records": p1_rows, "superseded_by": ups[2]}
        # The kept run's upload stays, and the current.
        assert records_of(mine.database, ups[0]) > 0 and records_of(mine.database, ups[2]) > 0
        if BACKEND == "sqlite":  # P2's records came in, P1's more went, and the pages were given back
            after = file_bytes(mine.database)
            assert scalar(mine.database, "pragma freelist_count") == 0 and after < before
            print(f"SQLite file {before} -> {after} bytes after the purge of {p1_rows} records")
        else:  # the rows are gone; autovacuum makes their space reusable, the table's files keep their size
            print(f"PostgreSQL records table {before} -> {records_bytes(mine.database)} bytes after the purge of "
                  f"{p1_rows} records (database {mine.database.rsplit('/', 1)[-1]})")

        second = mine.run(pki, "2025-07-28")
        report = scalar(mine.database, "select report from runs where run_id = :r", r=second)
        report = report if isinstance(report, dict) else json.loads(report)
        assert report["incremental"]["from_run"] == first
        persons, flags = mine.outcome(configs, p[2], second)
        assert records_of(mine.database, ups[0]) > 0  # both runs are kept: the first's upload still
    finally:
        mine.running.stop(grace=1)

    full = Coordinator(pki, tmp_path, "full", full_runs=True)  # the same current uploads, every pair scored
    try:
        full.upload(configs["medical_insurance"])
        full.upload(configs["population"], p[0])
        full.run(pki, "2025-06-28")
        full.upload(configs["population"], p[2])
        full_persons, full_flags = full.outcome(configs, p[2], full.run(pki, "2025-07-28"))
    finally:
        full.running.stop(grace=1)
    assert persons == full_persons and len(persons) > 0
    assert flags == full_flags and any(flags.values())


def test_the_upload_of_a_run_still_computing_survives_re_uploads(scenario, agent_config, pki, tmp_path,
                                                                monkeypatch):
    """The run is held in its compare phase (FEDLINK_FAULT_PAUSE, server/faults.py) while the department
    uploads twice more: the upload the run is computing on is no longer current and no finished run used it,
    and still stays; the one in between goes; the run then finishes on its upload. (About 15 s: the hold is
    a fixed pause, long enough for the two uploads on a loaded machine.)"""
    from procs import wait_for

    mark = tmp_path / "paused"
    for name, value in (("PAUSE", "run.compare"), ("FILE", str(mark)), ("PAUSE_S", "8")):
        monkeypatch.setenv(f"FEDLINK_FAULT_{name}", value)
    configs = {d: load_config(agent_config(d)) for d in DEPARTMENTS}
    p = population_extracts(scenario, tmp_path)
    mine = Coordinator(pki, tmp_path, "computing")
    try:
        mine.upload(configs["medical_insurance"])
        ups = [mine.upload(configs["population"], p[0])]
        with Operator.connect(mine.address, pki) as op:
            run_id = op.start_run("pilot", "2025-06-28")
            wait_for(mark.exists, "the run to reach its compare phase", every=0.05)
            ups += [mine.upload(configs["population"], extract) for extract in p[1:]]
            assert scalar(mine.database, "select state from runs where run_id = :r", r=run_id) == "running"
            assert records_of(mine.database, ups[0]) > 0 and records_of(mine.database, ups[1]) == 0
            purged = [json.loads(b)["details"]["upload_id"]
                      for (b,) in query(mine.database, "select body from audit_events where kind = 'upload.purged'")]
            assert purged == [ups[1]]
            assert op.watch(run_id) == "done"
        assert scalar(mine.database, "select count(*) from links where run_id = :r", r=run_id) > 0
    finally:
        mine.running.stop(grace=1)


def test_migration_0008_marks_the_records_that_came_with_each_current_upload(tmp_path):
    """A database from before: each department's current upload is marked against the upload committed
    before it, so the first commit after the upgrade counts the records that came and went as before."""
    from sqlalchemy import create_engine

    from server import migrations
    from server.store import Store

    path = tmp_path / "before.sqlite"
    engine = create_engine(f"sqlite:///{path}")
    migrations.upgrade(engine, "0007")
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO projects (project_id, spec, rules_toml, schema_digest, created_by, "
                             "created_at) VALUES ('pilot', '{}', '', 'd', 'operator', 0)")
        for i, (upload_id, state, refs) in enumerate((("old", "superseded", b"ab"), ("new", "committed", b"bcd"),
                                                      ("alone", "committed", b"x"))):
            department = "civil_affairs" if upload_id == "alone" else "population"
            conn.exec_driver_sql(
                "INSERT INTO uploads (upload_id, project_id, department, upload_digest, schema_digest, record_count, "
                "batch_count, state, created_at, committed_at) VALUES (?, 'pilot', ?, ?, 'd', ?, 1, ?, ?, ?)",
                (upload_id, department, upload_id.encode(), len(refs), state, i, i))
            for ref in refs:
                conn.exec_driver_sql("INSERT INTO records (upload_id, seq, ref, clk, indicators) VALUES "
                                     "(?, 0, ?, x'00', '{}')", (upload_id, bytes([ref]) * 17))
    engine.dispose()
    Store(path).engine.dispose()  # a start brings it to head
    marks = dict(query(path, "select hex(ref), came_with from records"))
    assert {bytes.fromhex(ref)[:1]: mark for ref, mark in marks.items()} == {
        b"a": None, b"b": None, b"c": 1, b"d": 1, b"x": None}
