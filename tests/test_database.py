"""The store on both databases: Alembic migrations equal to the metadata,
applied on start and by `fedlink coordinator migrate`; audit sequence numbers
gap-free and chained under concurrent writers."""
from __future__ import annotations

import json
import subprocess
import sys
import threading

from sqlalchemy import create_engine

from dbutil import BACKEND, new_database, query
from fedlink.audit import GENESIS_PREV, event_leaf
from server import migrations
from server.store import Store


def test_the_migrations_equal_the_metadata(tmp_path):
    store = Store(new_database(tmp_path))
    try:
        diff = migrations.differences(store.engine)
    finally:
        store.engine.dispose()
    assert not diff, (
        f"server/store.py's metadata and the Alembic migrations differ on {BACKEND}: {diff}. "
        'Add the revision with: python -m server.migrations revision "what changed" (then review and commit it)')


def test_start_applies_the_migrations_and_migrate_is_idempotent(tmp_path):
    database = new_database(tmp_path)
    cmd = [sys.executable, "-m", "fedlink.cli", "coordinator", "migrate", "--database", str(database)]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    head = query(database, "select version_num from alembic_version")
    assert head and head[0][0] in first.stdout  # the result, on stdout
    # Quiet: none of Alembic's per-revision lines.
    assert "alembic" not in first.stderr.lower() and "Running upgrade" not in first.stderr
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "already at" in " ".join(again.stdout.split())  # the console wraps long paths
    assert query(database, "select version_num from alembic_version") == head


def test_a_database_from_before_the_migrations_is_adopted(tmp_path):
    """Tables made with create_all and no alembic_version (the coordinator before
    migrations): stamped as the initial revision and brought to head."""
    if BACKEND != "sqlite":
        return  # such databases only ever existed as SQLite files
    path = tmp_path / "old.sqlite"
    engine = create_engine(f"sqlite:///{path}")
    # The tables as they were before migrations (the initial revision's), not today's metadata, which
    # later revisions extend.
    migrations.upgrade(engine, migrations.INITIAL)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE alembic_version")
    engine.dispose()
    store = Store(path)
    try:
        assert migrations.differences(store.engine) == []
    finally:
        store.engine.dispose()
    assert query(path, "select count(*) from alembic_version") == [(1,)]


def test_audit_sequence_is_gap_free_and_chained_under_concurrent_writers(tmp_path):
    """Several writers at once, each with its own engine (as separate coordinator
    processes would have on PostgreSQL; threads of one process on SQLite)."""
    database = new_database(tmp_path)
    writers, per_writer = 6, 25
    shared = Store(database)
    stores = [Store(database) for _ in range(writers)] if BACKEND == "postgresql" else [shared] * writers
    errors: list[BaseException] = []
    start = threading.Barrier(writers)

    def write(i: int) -> None:
        try:
            start.wait()
            for n in range(per_writer):
                with stores[i].write() as conn:
                    stores[i].audit(conn, f"writer:{i}", "test.append", n=n)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for s in {id(s): s for s in stores + [shared]}.values():
        s.engine.dispose()
    assert not errors, errors
    rows = query(database, "select seq, body from audit_events order by seq")
    assert [seq for seq, _ in rows] == list(range(writers * per_writer))
    prev = GENESIS_PREV
    for seq, body in rows:
        event = json.loads(body)
        assert event["seq"] == seq and event["prev"] == prev
        prev = event_leaf(body).hex()
