"""The store's named queries: every read and write the coordinator's domain
makes on the tables of `server/store.py`, each in the caller's connection or
transaction, so the domain says what it needs and never how the tables hold it.

The store codec of a `Project` is here too: a project is one row (`spec` as
JSON), decoded over the schema model's own defaults."""
from __future__ import annotations

import json
import time
from typing import Iterable, Sequence

from sqlalchemy import and_, delete, func, select, update

from fedlink.schema import DEFAULT_SUPPRESSION_FLOOR, FieldSpec, LinkageSchema, Project
from server import store as t

ACTIVE_RUN_STATES = ("queued", "running")
_SCHEMA_SETTINGS = ("filter_bits", "threshold", "auto_threshold", "hardening", "comparison", "id_segment_bits")


# -- projects ------------------------------------------------------------------

def project_to_row(p: Project) -> dict:
    """The columns a project is stored in."""
    s = p.schema
    spec = {
        "departments": {d: list(v) for d, v in p.departments.items()},
        "schema": {**{k: getattr(s, k) for k in _SCHEMA_SETTINGS},
                   "fields": [{"name": f.name, "hashes": f.hashes, "qgram": f.qgram, "kind": f.kind,
                               "column": f.column, "segment_bits": f.segment_bits, "group": f.group}
                              for f in s.fields]},
        "reference_date": p.reference_date,
    }
    return {"project_id": p.project_id, "spec": spec, "rules_toml": p.rules_toml,
            "suppression_floor": p.suppression_floor}


def project_from_row(row) -> Project:
    """A stored project; a setting the row lacks (written before it existed) takes the schema's default,
    save the ID segment: a project stored before it existed was encoded with the ID in the record filter."""
    spec = row.spec
    schema = spec["schema"]
    settings = {"id_segment_bits": 0} | {k: schema[k] for k in _SCHEMA_SETTINGS if k in schema}
    return Project(row.project_id, {d: tuple(v) for d, v in spec["departments"].items()},
                   LinkageSchema(fields=tuple(FieldSpec(**f) for f in schema["fields"]), **settings),
                   spec["reference_date"], row.rules_toml, row.suppression_floor or DEFAULT_SUPPRESSION_FLOOR)


def project(conn, project_id: str) -> Project | None:
    row = conn.execute(select(t.projects).where(t.projects.c.project_id == project_id)).first()
    return None if row is None else project_from_row(row)


def insert_project(conn, p: Project, created_by: str) -> None:
    conn.execute(t.projects.insert().values(**project_to_row(p), schema_digest=p.digest(), created_by=created_by,
                                            created_at=time.time()))


def pinned_key_check(conn, project_id: str):
    """(key_check, key_check_by) of a project; both None until the first upload pins them."""
    return conn.execute(select(t.projects.c.key_check, t.projects.c.key_check_by).where(
        t.projects.c.project_id == project_id)).first()


def pin_key_check(conn, project_id: str, key_check: bytes, department: str) -> None:
    conn.execute(update(t.projects).where(t.projects.c.project_id == project_id).values(
        key_check=key_check, key_check_by=department))


def set_rules(conn, project_id: str, rules_toml: str) -> None:
    conn.execute(update(t.projects).where(t.projects.c.project_id == project_id).values(rules_toml=rules_toml))


def set_schema(conn, p: Project) -> None:
    """Store a project's changed schema settings (its spec and digest)."""
    conn.execute(update(t.projects).where(t.projects.c.project_id == p.project_id).values(
        spec=project_to_row(p)["spec"], schema_digest=p.digest()))


def reset_key_check(conn, project_id: str) -> None:
    conn.execute(update(t.projects).where(t.projects.c.project_id == project_id).values(
        key_check=None, key_check_by=None))


# -- proposals (dual control) --------------------------------------------------

def insert_proposal(conn, **values) -> None:
    conn.execute(t.proposals.insert().values(**values, state="pending", proposed_at=time.time()))


def proposal(conn, proposal_id: str):
    return conn.execute(select(t.proposals).where(t.proposals.c.proposal_id == proposal_id)).first()


def proposals(conn, project_id: str = "", state: str = ""):
    query = select(t.proposals).order_by(t.proposals.c.proposed_at)
    if project_id:
        query = query.where(t.proposals.c.project_id == project_id)
    if state:
        query = query.where(t.proposals.c.state == state)
    return conn.execute(query).all()


def overdue_proposals(conn, now: float):
    return conn.execute(select(t.proposals).where(and_(
        t.proposals.c.state == "pending", t.proposals.c.expires_at <= now))).all()


def decide_proposal(conn, proposal_id: str, state: str, decided_by: str, note: str) -> None:
    conn.execute(update(t.proposals).where(t.proposals.c.proposal_id == proposal_id).values(
        state=state, decided_by=decided_by, decided_at=time.time(), note=note or None))


# -- uploads and batches -------------------------------------------------------

def upload(conn, upload_id: str):
    return conn.execute(select(t.uploads).where(t.uploads.c.upload_id == upload_id)).first()


def upload_with_digest(conn, project_id: str, department: str, digest: bytes):
    return conn.execute(select(t.uploads).where(and_(
        t.uploads.c.project_id == project_id, t.uploads.c.department == department,
        t.uploads.c.upload_digest == digest))).first()


def open_uploads(conn, project_id: str, department: str):
    """(upload_id, created_at) of a department's uploads not yet committed, oldest first."""
    c = t.uploads.c
    return conn.execute(select(c.upload_id, c.created_at).where(and_(
        c.project_id == project_id, c.department == department, c.state == "open")).order_by(c.created_at)).all()


def delete_upload(conn, upload_id: str) -> int:
    """An open upload and everything stored for it; returns the records deleted. Only an upload
    never committed: no run used its records."""
    deleted = conn.execute(delete(t.records).where(t.records.c.upload_id == upload_id)).rowcount
    conn.execute(delete(t.batches).where(t.batches.c.upload_id == upload_id))
    conn.execute(delete(t.uploads).where(t.uploads.c.upload_id == upload_id))
    return deleted


def insert_upload(conn, **values) -> None:
    conn.execute(t.uploads.insert().values(**values, state="open", created_at=time.time()))


def set_upload_state(conn, upload_id: str, state: str) -> None:
    committed = {"committed_at": time.time()} if state == "committed" else {}
    conn.execute(update(t.uploads).where(t.uploads.c.upload_id == upload_id).values(state=state, **committed))


def committed_upload(conn, project_id: str, department: str) -> str | None:
    """The department's current upload."""
    return conn.execute(select(t.uploads.c.upload_id).where(and_(
        t.uploads.c.project_id == project_id, t.uploads.c.department == department,
        t.uploads.c.state == "committed"))).scalar()


def committed_uploads(conn, project_id: str) -> dict[str, str]:
    """The current upload of each department that has one."""
    rows = conn.execute(select(t.uploads.c.department, t.uploads.c.upload_id).where(and_(
        t.uploads.c.project_id == project_id, t.uploads.c.state == "committed"))).all()
    return {r.department: r.upload_id for r in rows}


def upload_record_count(conn, upload_id: str) -> int:
    return conn.execute(select(t.uploads.c.record_count).where(t.uploads.c.upload_id == upload_id)).scalar()


def records_in_both(conn, upload_id: str, other_upload_id: str) -> int:
    """Records of one upload whose reference the other upload holds too."""
    other = t.records.alias("other")
    return conn.execute(select(func.count()).select_from(t.records).join(other, and_(
        other.c.upload_id == other_upload_id, other.c.ref == t.records.c.ref)).where(
        t.records.c.upload_id == upload_id)).scalar()


def mark_came_with(conn, upload_id: str, replaced: str | None, *, again: bool = False) -> None:
    """Mark the records of `upload_id` whose reference the upload it replaced did not hold: they came with it
    (the next commit counts those it removes again, a probe's trace). `again`: an earlier upload made current
    again, whose marks were set against another."""
    r = t.records
    if again:
        conn.execute(update(r).where(and_(r.c.upload_id == upload_id, r.c.came_with.is_not(None)))
                     .values(came_with=None))
    if replaced is None:
        return  # a department's first upload: the baseline, nothing came with it
    other = t.records.alias("other")
    conn.execute(update(r).where(and_(r.c.upload_id == upload_id, ~select(other.c.id).where(and_(
        other.c.upload_id == replaced, other.c.ref == r.c.ref)).exists())).values(came_with=1))


def records_short_lived(conn, replaced: str, upload_id: str) -> int:
    """Records that came with the `replaced` upload and that `upload_id` no longer holds."""
    other = t.records.alias("other")
    return conn.execute(select(func.count()).select_from(t.records).where(and_(
        t.records.c.upload_id == replaced, t.records.c.came_with == 1, ~select(other.c.id).where(and_(
            other.c.upload_id == upload_id, other.c.ref == t.records.c.ref)).exists()))).scalar()


def upload_filter_parts(conn, upload_id: str, part_rows: int = 65536):
    """An upload's filters, ``part_rows`` at a time: at the 20M-record limit the whole list of bytes objects
    would hold ~3.4 GB beside its packed copy (a server-side cursor on PostgreSQL, so it is not fetched whole)."""
    result = conn.execute(select(t.records.c.clk).where(t.records.c.upload_id == upload_id)
                          .execution_options(yield_per=part_rows))  # the statement's, not the connection's
    for part in result.scalars().partitions():
        yield part


def stored_batch_seqs(conn, upload_id: str) -> list[int]:
    return conn.execute(select(t.batches.c.seq).where(
        t.batches.c.upload_id == upload_id).order_by(t.batches.c.seq)).scalars().all()


def stored_batches(conn, upload_id: str):
    """(seq, digest, record_count) of each stored batch, in order."""
    return conn.execute(select(t.batches.c.seq, t.batches.c.digest, t.batches.c.record_count).where(
        t.batches.c.upload_id == upload_id).order_by(t.batches.c.seq)).all()


def batch_digest_at(conn, upload_id: str, seq: int) -> bytes | None:
    return conn.execute(select(t.batches.c.digest).where(and_(
        t.batches.c.upload_id == upload_id, t.batches.c.seq == seq))).scalar()


def stored_record_count(conn, upload_id: str) -> int:
    return conn.execute(select(func.coalesce(func.sum(t.batches.c.record_count), 0)).where(
        t.batches.c.upload_id == upload_id)).scalar()


def upload_state(conn, upload_id: str) -> str | None:
    return conn.execute(select(t.uploads.c.state).where(t.uploads.c.upload_id == upload_id)).scalar()


_RECORD_COLUMNS = ("upload_id", "seq", "ref", "clk", "indicators", "household")


def insert_batch(conn, upload_id: str, seq: int, digest: bytes, records: Sequence) -> None:
    """A batch and its records (ref, clk, indicators, household), in the caller's transaction: in bulk,
    past SQLAlchemy's per-row processing (COPY on PostgreSQL, one prepared executemany on SQLite)."""
    conn.execute(t.batches.insert().values(upload_id=upload_id, seq=seq, digest=digest, record_count=len(records)))
    if not records:
        return
    encoded: dict[tuple, str] = {}  # the indicators column is JSON: a batch repeats few distinct sets
    rows = [(upload_id, seq, r.ref, r.clk, encoded.get(k) or encoded.setdefault(k, json.dumps(r.indicators)),
             r.household or None) for r in records for k in (tuple(r.indicators.items()),)]
    cursor = conn.connection.driver_connection.cursor()
    try:
        if conn.dialect.name == "postgresql":
            with cursor.copy(f"COPY records ({', '.join(_RECORD_COLUMNS)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            cursor.executemany(f"INSERT INTO records ({', '.join(_RECORD_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?)", rows)
    finally:
        cursor.close()


def is_repeated_reference(error: Exception) -> bool:
    """Whether a failed insert broke the one-reference-per-upload constraint."""
    return "uq_record_ref" in str(error) or "UNIQUE constraint failed: records" in str(error)


def audit_bodies(conn, project_id: str, kind: str) -> list[str]:
    return conn.execute(select(t.audit_events.c.body).where(and_(
        t.audit_events.c.kind == kind, t.audit_events.c.project_id == project_id))).scalars().all()


def withdraw_committed_uploads(conn, project_id: str) -> dict[str, str]:
    """Take every department's current upload out of use (a reset key check): department -> upload."""
    current = committed_uploads(conn, project_id)
    if current:
        conn.execute(update(t.uploads).where(t.uploads.c.upload_id.in_(current.values())).values(state="superseded"))
    return current


# -- retention -----------------------------------------------------------------

def uploads_of_runs_in_use(conn, project_id: str) -> set[str]:
    """Uploads a run still refers to: a queued or running run's, and a finished run's whose links and flags
    retention has not deleted (its links point at the upload's records, its carry at their ids)."""
    linked = select(t.links.c.run_id).where(t.links.c.run_id == t.runs.c.run_id).exists()
    in_use = (t.runs.c.state.in_(ACTIVE_RUN_STATES) | ((t.runs.c.state == "done") & t.runs.c.purged_at.is_(None))
              | ((t.runs.c.state == "failed") & linked))  # a run failed after storing its links
    rows = conn.execute(select(t.runs.c.run_id, t.runs.c.uploads).where(and_(
        t.runs.c.project_id == project_id, in_use))).all()
    kept = {u for r in rows for u in (r.uploads or {}).values()}
    return kept | uploads_flagged_in(conn, [r.run_id for r in rows])


def done_runs(conn, project_id: str):
    """(run_id, uploads, purged_at) of a project's finished runs, newest first."""
    return conn.execute(select(t.runs.c.run_id, t.runs.c.uploads, t.runs.c.purged_at).where(and_(
        t.runs.c.project_id == project_id, t.runs.c.state == "done")).order_by(t.runs.c.number.desc())).all()


def superseded_uploads(conn, project_id: str, department: str | None = None):
    """(upload_id, department, records) of the uploads no department (or not `department`) uses now."""
    where = [t.uploads.c.project_id == project_id, t.uploads.c.state == "superseded"]
    if department is not None:
        where.append(t.uploads.c.department == department)
    return conn.execute(select(t.uploads.c.upload_id, t.uploads.c.department, t.uploads.c.record_count)
                        .where(and_(*where))).all()


def uploads_flagged_in(conn, run_ids: list[str]) -> set[str]:
    """Uploads holding a record some flag of these runs is on: a flag in transition or resolved is carried
    on the record of the run that first raised it, which may be an older upload."""
    return set(conn.execute(select(t.records.c.upload_id).distinct().join(
        t.flags, t.flags.c.record_id == t.records.c.id).where(t.flags.c.run_id.in_(run_ids))).scalars())


def delete_run_results(conn, run_ids: list[str]) -> None:
    """An old run's links and flags (per person, per record); its report of counts stays."""
    conn.execute(t.flags.delete().where(t.flags.c.run_id.in_(run_ids)))
    conn.execute(t.links.delete().where(t.links.c.run_id.in_(run_ids)))
    conn.execute(t.link_carries.delete().where(t.link_carries.c.run_id.in_(run_ids)))
    conn.execute(update(t.runs).where(t.runs.c.run_id.in_(run_ids)).values(purged_at=time.time()))


def delete_uploads(conn, upload_ids: list[str]) -> int:
    """Uploads with their batches and records (filters, indicators, household tokens); the records deleted."""
    deleted = conn.execute(t.records.delete().where(t.records.c.upload_id.in_(upload_ids))).rowcount
    conn.execute(t.batches.delete().where(t.batches.c.upload_id.in_(upload_ids)))
    conn.execute(t.uploads.delete().where(t.uploads.c.upload_id.in_(upload_ids)))
    return deleted


def held_records(conn, project_id: str):
    """(uploads, records, oldest committed_at) of what the store holds for a project."""
    uploads = conn.execute(select(func.count(), func.min(t.uploads.c.committed_at)).where(
        t.uploads.c.project_id == project_id)).first()
    records = conn.execute(select(func.count()).select_from(t.records).join(
        t.uploads, t.uploads.c.upload_id == t.records.c.upload_id).where(
        t.uploads.c.project_id == project_id)).scalar()
    return uploads[0], records, uploads[1]


# -- runs ----------------------------------------------------------------------

def run(conn, run_id: str):
    return conn.execute(select(t.runs).where(t.runs.c.run_id == run_id)).first()


def active_run(conn, project_id: str) -> str | None:
    return conn.execute(select(t.runs.c.run_id).where(and_(
        t.runs.c.project_id == project_id, t.runs.c.state.in_(ACTIVE_RUN_STATES)))).scalar()


def active_runs(conn):
    """(run_id, project_id, state, owner) of every queued or running run."""
    return conn.execute(select(t.runs.c.run_id, t.runs.c.project_id, t.runs.c.state, t.runs.c.owner).where(
        t.runs.c.state.in_(ACTIVE_RUN_STATES))).all()


def latest_done_run(conn, project_id: str, run_id: str = ""):
    """The project's latest finished run, or the finished run `run_id`."""
    q = select(t.runs).where(and_(t.runs.c.project_id == project_id, t.runs.c.state == "done"))
    if run_id:
        q = q.where(t.runs.c.run_id == run_id)
    return conn.execute(q.order_by(t.runs.c.number.desc()).limit(1)).first()


def previous_done_run(conn, project_id: str, run_id: str):
    """The project's latest finished run before `run_id`, by run number (never by a clock that can step)."""
    number = select(t.runs.c.number).where(t.runs.c.run_id == run_id).scalar_subquery()
    return conn.execute(select(t.runs).where(and_(
        t.runs.c.project_id == project_id, t.runs.c.state == "done", t.runs.c.number < number))
        .order_by(t.runs.c.number.desc()).limit(1)).first()


def projects_with_run_counts(conn):
    """Every project's row and its number of runs, by project id."""
    runs = select(t.runs.c.project_id, func.count().label("n")).group_by(t.runs.c.project_id).subquery()
    return conn.execute(select(t.projects, func.coalesce(runs.c.n, 0).label("runs"))
                        .outerjoin(runs, runs.c.project_id == t.projects.c.project_id)
                        .order_by(t.projects.c.project_id)).all()


def recent_runs(conn, project_id: str, limit: int):
    """A project's runs, newest first."""
    return conn.execute(select(t.runs).where(t.runs.c.project_id == project_id)
                        .order_by(t.runs.c.number.desc()).limit(limit)).all()


def insert_run(conn, run_id: str, project_id: str, started_by: str, as_of: str, uploads: dict[str, str],
               owner: str | None) -> int:
    """A queued run, numbered after the project's last; its number. The caller's write
    transaction is serialised (server/store.py), so two runs never get one number."""
    number = conn.execute(select(func.coalesce(func.max(t.runs.c.number), 0) + 1).where(
        t.runs.c.project_id == project_id)).scalar()
    conn.execute(t.runs.insert().values(run_id=run_id, project_id=project_id, state="queued", started_by=started_by,
                                        created_at=time.time(), as_of=as_of, uploads=uploads, number=number,
                                        owner=owner))
    return number


def set_run_state(conn, run_id: str, state: str, *, owner: str | None = None, **values) -> bool:
    """`values`: report, error; a finished run gets its time. With `owner`, only
    while that instance still owns the active run; whether a row changed."""
    finished = {"finished_at": time.time()} if state in ("done", "failed") else {}
    where = t.runs.c.run_id == run_id
    if owner is not None:
        where = and_(where, t.runs.c.owner == owner, t.runs.c.state.in_(ACTIVE_RUN_STATES))
    return conn.execute(update(t.runs).where(where).values(state=state, **finished, **values)).rowcount > 0


def discard_run_results(conn, run_id: str) -> None:
    conn.execute(t.link_carries.delete().where(t.link_carries.c.run_id == run_id))
    conn.execute(t.flags.delete().where(t.flags.c.run_id == run_id))
    conn.execute(t.links.delete().where(t.links.c.run_id == run_id))


# -- flags and reviews ---------------------------------------------------------

def department_flags(conn, run_id: str, department: str):
    """(need, tier, detail, status, since, transition_until, ref) of a department's flags, by tier; a held
    flag (pipeline/disclosure.py) is not the department's until its record persists."""
    return conn.execute(
        select(t.flags.c.need, t.flags.c.tier, t.flags.c.detail, t.flags.c.status, t.flags.c.since,
               t.flags.c.transition_until, t.records.c.ref)
        .join(t.records, t.records.c.id == t.flags.c.record_id)
        .where(and_(t.flags.c.run_id == run_id, t.flags.c.department == department, t.flags.c.status != "held"))
        .order_by(t.flags.c.tier, t.flags.c.id)).all()


def flag_on_record(conn, run_id: str, department: str, ref: bytes, need: str):
    """(id, detail, as_of) of one flag of a run, found by the department's reference."""
    return conn.execute(
        select(t.flags.c.id, t.flags.c.detail, t.runs.c.as_of)
        .join(t.records, t.records.c.id == t.flags.c.record_id)
        .join(t.runs, t.runs.c.run_id == t.flags.c.run_id)
        .where(and_(t.flags.c.run_id == run_id, t.flags.c.department == department, t.flags.c.status != "held",
                    t.records.c.ref == ref, t.flags.c.need == need))).first()


def latest_outcome(conn, project_id: str, department: str, ref: bytes, need: str, reviewer: str):
    """(outcome, run_id, recorded_at) of a reviewer's last review of a record's need, or None."""
    o = t.outcomes.c
    return conn.execute(select(o.outcome, o.run_id, o.recorded_at).where(and_(
        o.project_id == project_id, o.department == department, o.ref == ref, o.need == need,
        o.recorded_by == reviewer))
        .order_by(o.recorded_at.desc(), o.id.desc()).limit(1)).first()


def insert_outcome(conn, **values) -> None:
    conn.execute(t.outcomes.insert().values(**values, recorded_at=time.time()))


def _latest_outcome_ids(project_id: str):
    """The id of each reviewer's latest outcome on each flag (department, reference, need): a later
    outcome supersedes the earlier ones, which stay stored and audited."""
    o = t.outcomes.c
    return select(func.max(o.id)).where(o.project_id == project_id).group_by(o.department, o.ref, o.need,
                                                                            o.recorded_by)


def latest_outcomes(conn, project_id: str):
    """(department, ref, need, rule, outcome, suppressed_until) of each reviewer's current outcome per flag."""
    o = t.outcomes.c
    return conn.execute(select(o.department, o.ref, o.need, o.rule, o.outcome, o.suppressed_until).where(
        o.id.in_(_latest_outcome_ids(project_id)))).all()


def outcome_counts(conn, project_id: str) -> dict[str, int]:
    """Flags of a project by their reviewers' current outcome, counted per "rule/outcome" (flags, not calls)."""
    o = t.outcomes.c
    rows = conn.execute(select(o.rule, o.outcome, func.count()).where(o.id.in_(_latest_outcome_ids(project_id)))
                        .group_by(o.rule, o.outcome)).all()
    return {f"{rule}/{outcome}": n for rule, outcome, n in rows}


# -- schedules -----------------------------------------------------------------

def schedule(conn, project_id: str):
    return conn.execute(select(t.schedules).where(t.schedules.c.project_id == project_id)).first()


def due_schedule(conn, project_id: str, now_iso: str):
    return conn.execute(select(t.schedules).where(and_(
        t.schedules.c.project_id == project_id, t.schedules.c.next_due <= now_iso))).first()


def due_projects(conn, now_iso: str) -> list[str]:
    return conn.execute(select(t.schedules.c.project_id).where(t.schedules.c.next_due <= now_iso)).scalars().all()


def replace_schedule(conn, project_id: str, updated_by: str, **cadence) -> None:
    """Remove the project's schedule; with `cadence` (every, day, at, start, next_due), set the new one."""
    conn.execute(t.schedules.delete().where(t.schedules.c.project_id == project_id))
    if cadence:
        conn.execute(t.schedules.insert().values(project_id=project_id, **cadence, updated_by=updated_by,
                                                 updated_at=time.time()))


def record_schedule_fired(conn, project_id: str, **values) -> None:
    """`values`: next_due, last_due, last_error, last_run_id."""
    conn.execute(update(t.schedules).where(t.schedules.c.project_id == project_id).values(**values))
