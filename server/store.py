"""The coordinator's store: SQLAlchemy Core over SQLite (embedded default) or
PostgreSQL. It holds projects, uploads and their batches, encoded records,
runs, links, flags and audit events; never a raw identifier, because none
reaches the coordinator.

Writes that must be all-or-nothing (a batch and its records; a run's links and
flags) each happen in one transaction, so a crash never leaves half of one.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import (
    JSON, Column, Float, ForeignKey, Index, Integer, LargeBinary, MetaData, String, Table, Text,
    UniqueConstraint, create_engine, event, select, text,
)
from sqlalchemy.engine import Engine

from fedlink.audit import GENESIS_PREV, canonical, event_leaf
from fedlink.files import tighten

log = logging.getLogger("fedlink.coordinator")
metadata = MetaData()

projects = Table(
    "projects", metadata,
    Column("project_id", String(128), primary_key=True),
    Column("spec", JSON, nullable=False),            # departments, schema, reference date
    Column("rules_toml", Text, nullable=False),
    Column("schema_digest", String(64), nullable=False),
    Column("key_check", LargeBinary),                 # pinned by the first upload
    Column("key_check_by", String(128)),
    # The least suppression k any rule pack of the project may set, fixed at creation.
    Column("suppression_floor", Integer),
    Column("created_by", String(128), nullable=False),
    Column("created_at", Float, nullable=False),
)

uploads = Table(
    "uploads", metadata,
    Column("upload_id", String(64), primary_key=True),
    Column("project_id", String(128), ForeignKey("projects.project_id"), nullable=False),
    Column("department", String(64), nullable=False),
    Column("upload_digest", LargeBinary, nullable=False),
    Column("schema_digest", String(64), nullable=False),
    Column("record_count", Integer, nullable=False),
    Column("batch_count", Integer, nullable=False),
    Column("state", String(16), nullable=False),       # open, committed, superseded
    Column("created_at", Float, nullable=False),
    Column("committed_at", Float),
    UniqueConstraint("project_id", "department", "upload_digest", name="uq_upload_digest"),
)

batches = Table(
    "batches", metadata,
    Column("upload_id", String(64), ForeignKey("uploads.upload_id"), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("digest", LargeBinary, nullable=False),
    Column("record_count", Integer, nullable=False),
)

records = Table(
    "records", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("upload_id", String(64), ForeignKey("uploads.upload_id"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("ref", LargeBinary, nullable=False),
    Column("clk", LargeBinary, nullable=False),
    Column("indicators", JSON, nullable=False),
    Column("household", LargeBinary),                 # keyed household token, household registers only
    # 1: its reference was not in the upload this one replaced (server/domain/uploads.py, the probe trace)
    Column("came_with", Integer),
    UniqueConstraint("upload_id", "ref", name="uq_record_ref"),
)

runs = Table(
    "runs", metadata,
    Column("run_id", String(64), primary_key=True),
    Column("project_id", String(128), ForeignKey("projects.project_id"), nullable=False),
    Column("state", String(16), nullable=False),      # queued, running, done, failed
    Column("started_by", String(128), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("finished_at", Float),
    Column("as_of", String(10), nullable=False),      # ISO date the run is for
    Column("uploads", JSON),                          # the upload of each department the run used
    Column("report", JSON),
    Column("error", Text),
    Column("purged_at", Float),                       # its links and flags deleted under retention
    # The run's place in its project, 1, 2, 3...: runs are ordered by it, never by a clock that can step.
    Column("number", Integer),
    Column("owner", String(32)),                      # the coordinator instance executing it (server/ownership.py)
    UniqueConstraint("project_id", "number", name="uq_run_number"),
)

links = Table(
    "links", metadata,
    Column("run_id", String(64), ForeignKey("runs.run_id"), primary_key=True),
    Column("record_id", Integer, ForeignKey("records.id"), primary_key=True),
    Column("person", Integer, nullable=False),
)

flags = Table(
    "flags", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(64), ForeignKey("runs.run_id"), nullable=False),
    Column("department", String(64), nullable=False),
    Column("record_id", Integer, ForeignKey("records.id"), nullable=False),
    Column("person", Integer, nullable=False),
    Column("need", String(64), nullable=False),
    Column("tier", Integer, nullable=False),
    Column("status", String(16), nullable=False),    # new, continuing, transition, resolved
    Column("since", String(10), nullable=False),     # first flagged without a break
    Column("transition_until", String(10)),
    Column("detail", JSON, nullable=False),          # reasons, departments linked, scores, explanation
    Index("ix_flags_run_dept", "run_id", "department"),
)

schedules = Table(
    "schedules", metadata,                            # a project's run cadence (server/schedule.py)
    Column("project_id", String(128), ForeignKey("projects.project_id"), primary_key=True),
    Column("every", String(16), nullable=False),      # 1mo, 3mo, 14d, 1w, semester
    Column("day", Integer, nullable=False),
    Column("at", String(5), nullable=False),          # HH:MM UTC
    Column("start", String(10), nullable=False),      # ISO date
    Column("next_due", String(20), nullable=False),   # ISO UTC, e.g. 2025-07-01T02:00:00Z
    Column("last_due", String(20)),
    Column("last_run_id", String(64)),
    Column("last_error", Text),
    Column("updated_by", String(128), nullable=False),
    Column("updated_at", Float, nullable=False),
)

outcomes = Table(
    "outcomes", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project_id", String(128), ForeignKey("projects.project_id"), nullable=False),
    Column("department", String(64), nullable=False),
    Column("ref", LargeBinary, nullable=False),
    Column("need", String(64), nullable=False),
    Column("rule", String(128), nullable=False),
    Column("run_id", String(64), nullable=False),
    Column("outcome", String(32), nullable=False),    # confirmed, assistance_granted, not_in_need, wrong_person
    Column("suppressed_until", String(10)),
    Column("recorded_by", String(128), nullable=False),
    Column("recorded_at", Float, nullable=False),
    Index("ix_outcomes_ref", "project_id", "department", "ref", "need"),
)

proposals = Table(
    "proposals", metadata,                            # changes waiting for an officer (server/domain/approvals.py)
    Column("proposal_id", String(32), primary_key=True),
    Column("project_id", String(128), ForeignKey("projects.project_id"), nullable=False),
    Column("kind", String(32), nullable=False),       # rules, linkage, key_check_reset
    Column("change", JSON, nullable=False),           # what approval applies
    Column("base", String(64), nullable=False),       # digest of what it was proposed against
    Column("diff", JSON, nullable=False),             # what changes and who newly learns what
    Column("reason", Text, nullable=False),
    Column("state", String(16), nullable=False),      # pending, approved, rejected, expired
    Column("proposed_by", String(128), nullable=False),
    Column("proposed_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("decided_by", String(128)),
    Column("decided_at", Float),
    Column("note", Text),
    Index("ix_proposals_project_state", "project_id", "state"),
)


coordinator_leases = Table(
    "coordinator_leases", metadata,                   # live coordinator instances (server/ownership.py)
    Column("instance_id", String(32), primary_key=True),
    Column("pid", Integer, nullable=False),
    Column("host", String(255), nullable=False),
    Column("address", String(255), nullable=False),
    Column("started_at", Float, nullable=False),      # all three by the database's clock
    Column("renewed_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
)


audit_events = Table(
    "audit_events", metadata,
    Column("seq", Integer, primary_key=True),
    Column("ts", Float, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("project_id", String(128)),
    Column("department", String(64)),
    Column("body", Text, nullable=False),            # canonical JSON: what the Merkle leaf commits to;
    # it names the previous event's leaf hash, so an edit is pinned to one event
)

log_signers = Table(
    "log_signers", metadata,                         # the audit key the log is signed with (server/audit.py):
    Column("vkey", String(512), primary_key=True),   # the first coordinator's, which every other must share
    Column("recorded_at", Float, nullable=False),
)

cosignatures = Table(
    "cosignatures", metadata,
    Column("witness", String(256), primary_key=True),  # the witness's verifier key (name+id+key)
    Column("size", Integer, nullable=False),
    Column("checkpoint", Text, nullable=False),        # the checkpoint text it cosigned last
    Column("line", Text, nullable=False),              # its cosignature line over that text
    Column("received_at", Float, nullable=False),
)


link_carries = Table(
    "link_carries", metadata,                         # what a run leaves the next (server/pipeline/increments.py)
    Column("run_id", String(64), ForeignKey("runs.run_id"), primary_key=True),
    Column("left_department", String(64), primary_key=True),
    Column("right_department", String(64), primary_key=True),
    Column("blocking", String(64), nullable=False),   # how the pair was compared: exact, lsh:bands:rows:seed:max_bucket
    Column("floor", Float, nullable=False),           # the project's threshold the run's profile was taken from
    Column("level", Float),                           # the scores kept reach this (none: the floor, before 0009)
    Column("blank_level", Float),                     # the blank-ID class's, on the rest (none: before 0010)
    Column("bucket_bound", Integer, nullable=False),  # at least the largest LSH bucket of the run's blocked pass
    Column("pairs", Integer, nullable=False),
    Column("data", LargeBinary, nullable=False),      # zlib: left, right ids (int64), scores (float32), profile
)


def safe_url(url: str | Path) -> str:
    """A database URL without its password, for messages and the log."""
    if "://" not in str(url):
        return str(url)
    from sqlalchemy.engine import make_url

    return make_url(str(url)).render_as_string(hide_password=True)


def connect(url: str | Path) -> Engine:
    """An engine for a database URL or a SQLite file path, its schema brought
    to the latest migration."""
    from server.migrations import upgrade

    engine = connect_engine(url)
    before, after = upgrade(engine)  # the Alembic revisions not yet applied (server/migrations)
    if before == after:
        log.info("database schema at revision %s", after, extra={"event": "schema", "revision": after})
    else:
        log.info("database schema migrated from %s to revision %s", before or "empty", after,
                 extra={"event": "schema", "revision": after, "from_revision": before})
    event.listen(engine, "handle_error", _count_error)
    return engine


def _count_error(context) -> None:
    """Every error the database driver raised, for the operator's metrics (server/metrics.py)."""
    from server.metrics import STORE_ERRORS

    STORE_ERRORS.labels(type(context.original_exception).__name__).inc()


def connect_engine(url: str | Path) -> Engine:
    """An engine for a database URL or a SQLite file path (SQLite in WAL mode);
    `postgresql://` uses the psycopg 3 driver."""
    url = str(url)
    if "://" not in url:
        Path(url).parent.mkdir(parents=True, exist_ok=True)
        for made_before in (url, f"{url}-wal", f"{url}-shm"):  # new ones are private (fedlink/files.py)
            tighten(Path(made_before))
        url = f"sqlite:///{url}"
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _):
            # The driver's own transaction handling begins a transaction only at the first write, so a
            # write transaction's reads (the last audit seq) would see no lock: we begin them ourselves.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            # Before the first table of a new database: space freed by retention
            # (server/domain/retention.py) can be given back page by page.
            cur.execute("PRAGMA auto_vacuum=INCREMENTAL")
            # WAL: readers (WatchRun, PullFlags) do not block the writer; FULL sync:
            # an acknowledged batch survives a power cut.
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        if os.environ.get("FEDLINK_FAULT_SQLITE_PAGES"):  # the fault tests' full disk (server/faults.py)
            @event.listens_for(engine, "checkout")
            def _page_limit(dbapi_conn, *_):
                from server.faults import sqlite_page_limit

                limit = sqlite_page_limit()
                dbapi_conn.execute(f"PRAGMA max_page_count = {limit or 4294967294}")

        @event.listens_for(engine, "begin")
        def _begin(conn):
            # A write takes the database's write lock up front (IMMEDIATE), so another process's writer
            # waits instead of both reading the same last audit seq; a read begins a snapshot only.
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("write") else "BEGIN")
    else:
        if url.startswith(("postgresql://", "postgres://")):  # the psycopg 3 driver (fedlink[coordinator])
            url = "postgresql+psycopg://" + url.split("://", 1)[1]
        engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
    return engine


# Any fixed 64-bit key: the lock every PostgreSQL write transaction takes first.
PG_WRITE_LOCK = 0x666564_6C6E6B


class Store:
    """Transactions over the engine.

    Writes are serialised, on both databases: SQLite has one writer at a time
    (a lock keeps our own threads from contending for it and timing out), and
    on PostgreSQL every write transaction first takes a transaction-scoped
    advisory lock, so that audit events, which chain to the event before them,
    get gap-free, ordered sequence numbers under concurrent writers, across
    coordinator processes too, and no two writers can deadlock. Reads never
    wait (WAL on SQLite, MVCC on PostgreSQL)."""

    def __init__(self, url: str | Path):
        self.engine = connect(url)
        self.dialect = self.engine.dialect.name
        self._write_lock = threading.RLock() if self.dialect == "sqlite" else _NoLock()
        self.clock = EventClock()
        url = self.engine.url  # what messages name the store by; never its password
        self.name = (f"SQLite {url.database}" if self.dialect == "sqlite" else
                     f"PostgreSQL {url.host}:{url.port or 5432}/{url.database}")

    @contextmanager
    def write(self):
        with self._write_lock, self.engine.connect() as conn:
            conn.execution_options(write=True)
            with conn.begin():
                if self.dialect == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_WRITE_LOCK})
                yield conn

    def write_lock(self):
        """Held by every write transaction: for work outside one (VACUUM)."""
        return self._write_lock

    @contextmanager
    def read(self):
        with self.engine.connect() as conn:
            yield conn

    def audit(self, conn, actor: str, kind: str, *, project_id: str | None = None, department: str | None = None,
              **details) -> int:
        """Append an audit event in the caller's transaction: the event lands
        exactly when what it records does. Its time never goes back: a clock
        that stepped behind the last event is reported by an event of its own
        (once per step), and the events keep the last time until it catches up."""
        last = conn.execute(select(audit_events.c.seq, audit_events.c.body, audit_events.c.ts)
                            .order_by(audit_events.c.seq.desc()).limit(1)).first()
        ts, behind = self.clock.stamp(time.time(), None if last is None else last.ts)
        if behind:
            last = self._append(conn, last, ts, "coordinator", CLOCK_STEP, None, None,
                                {"direction": "back", "seconds": -round(behind, 3), "noticed_at": kind})
        return self._append(conn, last, ts, actor, kind, project_id, department, details).seq

    @staticmethod
    def _append(conn, last, ts: float, actor: str, kind: str, project_id, department, details: dict):
        seq, prev = (0, GENESIS_PREV) if last is None else (last.seq + 1, event_leaf(last.body).hex())
        body = canonical({"seq": seq, "prev": prev, "ts": ts, "actor": actor, "kind": kind,
                          "project_id": project_id, "department": department, "details": details})
        conn.execute(audit_events.insert().values(seq=seq, ts=ts, actor=actor, kind=kind, project_id=project_id,
                                                  department=department, body=body))
        return _Appended(seq, body, ts)

    def keep_cosignature(self, conn, witness: str, size: int, checkpoint: str, line: str) -> bool:
        """Keep a witness's cosignature if it is its latest (a witness never cosigns a smaller log)."""
        c = cosignatures.c
        held = conn.execute(select(c.size).where(c.witness == witness)).scalar()
        row = {"size": size, "checkpoint": checkpoint, "line": line, "received_at": time.time()}
        if held is None:
            conn.execute(cosignatures.insert().values(witness=witness, **row))
        elif size >= held:
            conn.execute(cosignatures.update().where(c.witness == witness).values(**row))
        else:
            return False
        return True


@dataclass(frozen=True)
class _Appended:
    seq: int
    body: str
    ts: float


CLOCK_STEP = "clock.stepped"


class EventClock:
    """Times for the audit log that never go back. A wall clock found more than
    `tolerance` seconds behind the last event is a step back (NTP, an operator,
    a restored VM): reported once, until the clock has caught up again."""

    def __init__(self, tolerance: float = 1.0):
        self.tolerance = tolerance
        self._behind = False

    def stamp(self, now: float, last: float | None) -> tuple[float, float]:
        """(the event's time, how far the clock stepped back if that is news, else 0)."""
        if last is None or now >= last:
            self._behind = False
            return now, 0.0
        news = last - now > self.tolerance and not self._behind
        if news:
            self._behind = True
            log.warning("the clock is %.1f s behind the last audit event: it stepped back; events keep the "
                        "last time until it catches up (check NTP)", last - now)
        return last, (last - now) if news else 0.0



class _NoLock:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
