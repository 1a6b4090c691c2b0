"""The database the tests run the coordinator on: a SQLite file per test by
default; PostgreSQL when FEDLINK_TEST_DATABASE names a server, e.g.

    FEDLINK_TEST_DATABASE=postgresql://fedlink@127.0.0.1:5433/postgres pytest

(`scripts/test` starts a throwaway server with `scripts/postgres` and runs the
suite on both). Each test then gets a fresh database of its own, created from
a template migrated once per session. Tests read and tamper with the store
through these helpers, never through one database's own driver."""
from __future__ import annotations

import os
import secrets
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

SERVER = os.environ.get("FEDLINK_TEST_DATABASE", "").strip()
if SERVER and not SERVER.startswith(("postgresql://", "postgresql+psycopg://")):
    raise RuntimeError(f"FEDLINK_TEST_DATABASE must be a postgresql:// URL, not {SERVER!r}")
BACKEND = "postgresql" if SERVER else "sqlite"
# One template per pytest-xdist worker: a worker rebuilding its template never
# drops the one another worker is copying from.
TEMPLATE = f"fedlink_template_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
_template_ready = False


def _url(database: str | None = None) -> str:
    url = make_url(SERVER).set(drivername="postgresql+psycopg")
    if database:
        url = url.set(database=database)
    return url.render_as_string(hide_password=False)


def _admin() -> Engine:
    return create_engine(_url(), isolation_level="AUTOCOMMIT")


def _ensure_template() -> None:
    global _template_ready
    if _template_ready:
        return
    from server.store import connect

    admin = _admin()
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{TEMPLATE}" WITH (FORCE)'))
        c.execute(text(f'CREATE DATABASE "{TEMPLATE}"'))
    admin.dispose()
    connect(_url(TEMPLATE)).dispose()  # migrated to head once; every test's database is a copy
    _template_ready = True


def new_database(tmp_path: Path, name: str = "coordinator") -> str | Path:
    """A fresh, empty coordinator database: a SQLite path, or a PostgreSQL URL."""
    if not SERVER:
        return Path(tmp_path) / f"{name}.sqlite"
    _ensure_template()
    database = f"t_{name[:20]}_{secrets.token_hex(5)}".lower()
    admin = _admin()
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{database}" TEMPLATE "{TEMPLATE}"'))
    admin.dispose()
    return _url(database)


def database_on(server: str, name: str = "coordinator") -> str:
    """A fresh coordinator database on another PostgreSQL server (a test's own), migrated."""
    from server.store import connect

    url = make_url(server).set(drivername="postgresql+psycopg")
    database = f"t_{name[:20]}_{secrets.token_hex(5)}".lower()
    admin = create_engine(url.render_as_string(hide_password=False), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{database}"'))
    admin.dispose()
    target = url.set(database=database).render_as_string(hide_password=False)
    connect(target).dispose()
    return target


def engine(database: str | Path) -> Engine:
    database = str(database)
    if "://" not in database:
        database = f"sqlite:///{database}"
    elif database.startswith("postgresql://"):
        database = "postgresql+psycopg://" + database.split("://", 1)[1]
    return create_engine(database)


def query(database: str | Path, sql: str, **params) -> list[tuple]:
    """Rows of a read on the coordinator's database (named :params)."""
    e = engine(database)
    try:
        with e.connect() as c:
            return [tuple(r) for r in c.execute(text(sql), params)]
    finally:
        e.dispose()


def scalar(database: str | Path, sql: str, **params):
    rows = query(database, sql, **params)
    return rows[0][0] if rows else None


def execute(database: str | Path, sql: str, **params) -> None:
    """A write, committed (for tests that tamper with the store)."""
    e = engine(database)
    try:
        with e.begin() as c:
            c.execute(text(sql), params)
    finally:
        e.dispose()


def copy_database(source: str | Path, tmp_path: Path, name: str = "copy") -> str | Path:
    """A copy of a coordinator database, row for row, on the same backend."""
    from server.store import metadata

    target = new_database(tmp_path, name)
    from server.store import connect

    connect(target).dispose()  # the schema, at head
    src, dst = engine(source), engine(target)
    try:
        with src.connect() as s, dst.begin() as d:
            for table in metadata.sorted_tables:
                rows = [dict(r._mapping) for r in s.execute(table.select())]
                if rows:
                    d.execute(table.insert(), rows)
            if dst.dialect.name == "postgresql":  # keep the serial counters ahead of the copied ids
                for table in metadata.sorted_tables:
                    for col in table.primary_key.columns:
                        if col.autoincrement is True:
                            d.execute(text(f"SELECT setval(pg_get_serial_sequence('{table.name}', '{col.name}'), "
                                           f"COALESCE((SELECT max({col.name}) FROM {table.name}), 0) + 1, false)"))
    finally:
        src.dispose()
        dst.dispose()
    return target


def stored_bytes(database: str | Path) -> bytes:
    """Everything the store holds, as bytes: every value of every row of every
    table (and, for SQLite, the database and WAL files themselves)."""
    from server.store import metadata

    parts: list[bytes] = []
    path = Path(str(database))
    if "://" not in str(database):
        for p in (path, path.with_suffix(".sqlite-wal")):
            if p.exists():
                parts.append(p.read_bytes())
    e = engine(database)
    try:
        with e.connect() as c:
            for table in metadata.sorted_tables:
                for row in c.execute(table.select()):
                    for v in row:
                        parts.append(v if isinstance(v, bytes) else str(v).encode())
    finally:
        e.dispose()
    return b"\x00".join(parts)


class _PgConnection:
    """psycopg behind sqlite3's little API the tests use: `?` placeholders,
    `with` commits, execute() returns a cursor."""

    def __init__(self, url: str):
        import psycopg

        self._conn = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"))

    def execute(self, sql: str, params=()):
        return self._conn.execute(sql.replace("%", "%%").replace("?", "%s"), tuple(params))

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *_):
        if exc_type is None:
            self._conn.commit()
        else:
            self._conn.rollback()
        self._conn.close()
        return False


def dbapi(database: str | Path):
    """A plain DB-API connection to the coordinator's database, used like
    `with dbapi(db) as c: c.execute("select ... where x = ?", (x,)).fetchone()`."""
    if "://" not in str(database):
        import sqlite3

        return sqlite3.connect(database)
    return _PgConnection(str(database))


def db_errors() -> tuple[type[BaseException], ...]:
    """What dbapi() raises for a table that does not exist yet."""
    import sqlite3

    errors: list[type[BaseException]] = [sqlite3.OperationalError]
    if SERVER:
        import psycopg

        errors.append(psycopg.errors.UndefinedTable)
    return tuple(errors)
