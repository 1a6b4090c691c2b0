"""Retention: the coordinator keeps the indicators and filters of an upload
only while a run may need them.

After each finished run of a project, the uploads that are no department's
current upload and that none of the project's last `keep_runs` runs used are
deleted with their records (filters, indicators, household tokens), and the
links and flags of the runs before those are deleted too (each run's report
of counts stays). An audit event says what was deleted and how many records;
the run's report says what the store still holds. SQLite gives the space back
(incremental vacuum); PostgreSQL's autovacuum does.

The default keeps what the last two runs used: the newest run's flags are
compared against the run before it (new, continuing, transition), and a
department that resends an extract the previous run used is recognised."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timezone

from server import queries as q
from server.store import Store

DEFAULT_KEEP_RUNS = 2


@dataclass(frozen=True)
class Retention:
    keep_runs: int           # 0: the coordinator keeps everything
    uploads_held: int
    records_held: int
    oldest_held: str         # ISO date the oldest held upload was committed ("" when none)
    uploads_purged: int = 0
    records_purged: int = 0
    runs_purged: int = 0

    def to_json(self) -> dict:
        return asdict(self)


def purge(store: Store, conn, project_id: str, keep_runs: int) -> Retention:
    """Delete what no run needs any more, in the caller's transaction (the run's last one), and audit it."""
    uploads = records = 0
    old_runs: list[str] = []
    if keep_runs > 0:
        runs = q.done_runs(conn, project_id)
        old_runs = [r.run_id for r in runs[keep_runs:] if r.purged_at is None]
        if old_runs:
            q.delete_run_results(conn, old_runs)
        gone = [u for u in q.superseded_uploads(conn, project_id) if u.upload_id not in kept_uploads(conn, project_id)]
        if gone:
            records = q.delete_uploads(conn, [u.upload_id for u in gone])
            uploads = len(gone)
        if old_runs or gone:
            store.audit(conn, "coordinator", "retention.purge", project_id=project_id, keep_runs=keep_runs,
                        runs=old_runs, uploads={u.upload_id: u.department for u in gone}, records=records)
    n_uploads, n_records, oldest = q.held_records(conn, project_id)
    when = datetime.fromtimestamp(oldest, timezone.utc).date().isoformat() if oldest else ""
    return Retention(keep_runs, n_uploads, n_records, when, uploads, records, len(old_runs))


def kept_uploads(conn, project_id: str) -> set[str]:
    """The uploads a superseded one must be among to stay: those of the runs not finished, or finished
    with their links and flags kept (retention deletes the others' at the end of each run), and those
    holding a kept flag's record."""
    return q.uploads_of_runs_in_use(conn, project_id)


def reclaim(store: Store) -> None:
    """Give the deleted records' space back to the file system (SQLite): the
    pages freed by the purge with an incremental-vacuum database, else a full
    VACUUM once, which makes it incremental from then on (store.connect_engine);
    then a WAL checkpoint, so the file shrinks now rather than at the next one."""
    if store.dialect != "sqlite":
        return  # PostgreSQL: autovacuum reuses the space
    with store.write_lock():
        raw = store.engine.raw_connection()
        try:
            db = raw.driver_connection
            incremental = db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
            # executescript steps the pragma to its end; execute() frees one page per step.
            db.executescript("PRAGMA incremental_vacuum;" if incremental else "VACUUM;")
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        finally:
            raw.close()
