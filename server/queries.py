"""The store's named queries: every read and write the coordinator's domain
makes on the tables of `server/store.py`, each in the caller's connection or
transaction, so the domain says what it needs and never how the tables hold it.

The store codec of a `Project` is here too: a project is one row (`spec` as
JSON), decoded over the schema model's own defaults."""
from __future__ import annotations

import time
from typing import Iterable

from sqlalchemy import and_, func, select, update

from fedlink.schema import FieldSpec, LinkageSchema, Project
from server import store as t

ACTIVE_RUN_STATES = ("queued", "running")
_SCHEMA_SETTINGS = ("filter_bits", "threshold", "auto_threshold", "hardening")


# -- projects ------------------------------------------------------------------

def project_to_row(p: Project) -> dict:
    """The columns a project is stored in."""
    s = p.schema
    spec = {
        "departments": {d: list(v) for d, v in p.departments.items()},
        "schema": {**{k: getattr(s, k) for k in _SCHEMA_SETTINGS},
                   "fields": [{"name": f.name, "hashes": f.hashes, "qgram": f.qgram, "kind": f.kind,
                               "column": f.column} for f in s.fields]},
        "reference_date": p.reference_date,
    }
    return {"project_id": p.project_id, "spec": spec, "rules_toml": p.rules_toml}


def project_from_row(row) -> Project:
    """A stored project; a setting the row lacks (written before it existed) takes the schema's default."""
    spec = row.spec
    schema = spec["schema"]
    settings = {k: schema[k] for k in _SCHEMA_SETTINGS if k in schema}
    return Project(row.project_id, {d: tuple(v) for d, v in spec["departments"].items()},
                   LinkageSchema(fields=tuple(FieldSpec(**f) for f in schema["fields"]), **settings),
                   spec["reference_date"], row.rules_toml)


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


# -- uploads and batches -------------------------------------------------------

def upload(conn, upload_id: str):
    return conn.execute(select(t.uploads).where(t.uploads.c.upload_id == upload_id)).first()


def upload_with_digest(conn, project_id: str, department: str, digest: bytes):
    return conn.execute(select(t.uploads).where(and_(
        t.uploads.c.project_id == project_id, t.uploads.c.department == department,
        t.uploads.c.upload_digest == digest))).first()


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


def upload_filters(conn, upload_id: str) -> list[bytes]:
    return conn.execute(select(t.records.c.clk).where(t.records.c.upload_id == upload_id)).scalars().all()


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


def insert_batch(conn, upload_id: str, seq: int, digest: bytes, records: Iterable) -> None:
    """A batch and its records (ref, clk, indicators, household), in the caller's transaction."""
    rows = [{"upload_id": upload_id, "seq": seq, "ref": r.ref, "clk": r.clk, "indicators": r.indicators,
             "household": r.household or None} for r in records]
    conn.execute(t.batches.insert().values(upload_id=upload_id, seq=seq, digest=digest, record_count=len(rows)))
    if rows:
        conn.execute(t.records.insert(), rows)


def is_repeated_reference(error: Exception) -> bool:
    """Whether a failed insert broke the one-reference-per-upload constraint."""
    return "uq_record_ref" in str(error) or "UNIQUE constraint failed: records" in str(error)


def audit_bodies(conn, project_id: str, kind: str) -> list[str]:
    return conn.execute(select(t.audit_events.c.body).where(and_(
        t.audit_events.c.kind == kind, t.audit_events.c.project_id == project_id))).scalars().all()


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


def previous_done_run(conn, project_id: str, run_id: str) -> str | None:
    """The project's latest finished run before `run_id`, by run number."""
    number = select(t.runs.c.number).where(t.runs.c.run_id == run_id).scalar_subquery()
    return conn.execute(select(t.runs.c.run_id).where(and_(
        t.runs.c.project_id == project_id, t.runs.c.state == "done", t.runs.c.number < number))
        .order_by(t.runs.c.number.desc()).limit(1)).scalar()


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
    conn.execute(t.flags.delete().where(t.flags.c.run_id == run_id))
    conn.execute(t.links.delete().where(t.links.c.run_id == run_id))


# -- flags and reviews ---------------------------------------------------------

def department_flags(conn, run_id: str, department: str):
    """(need, tier, detail, status, since, transition_until, ref) of a department's flags, by tier."""
    return conn.execute(
        select(t.flags.c.need, t.flags.c.tier, t.flags.c.detail, t.flags.c.status, t.flags.c.since,
               t.flags.c.transition_until, t.records.c.ref)
        .join(t.records, t.records.c.id == t.flags.c.record_id)
        .where(and_(t.flags.c.run_id == run_id, t.flags.c.department == department))
        .order_by(t.flags.c.tier, t.flags.c.id)).all()


def flag_on_record(conn, run_id: str, department: str, ref: bytes, need: str):
    """(id, detail, as_of) of one flag of a run, found by the department's reference."""
    return conn.execute(
        select(t.flags.c.id, t.flags.c.detail, t.runs.c.as_of)
        .join(t.records, t.records.c.id == t.flags.c.record_id)
        .join(t.runs, t.runs.c.run_id == t.flags.c.run_id)
        .where(and_(t.flags.c.run_id == run_id, t.flags.c.department == department,
                    t.records.c.ref == ref, t.flags.c.need == need))).first()


def insert_outcome(conn, **values) -> None:
    conn.execute(t.outcomes.insert().values(**values, recorded_at=time.time()))


def outcome_counts(conn, project_id: str) -> dict[str, int]:
    """Review outcomes of a project, counted per "rule/outcome"."""
    rows = conn.execute(select(t.outcomes.c.rule, t.outcomes.c.outcome, func.count()).where(
        t.outcomes.c.project_id == project_id).group_by(t.outcomes.c.rule, t.outcomes.c.outcome)).all()
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
