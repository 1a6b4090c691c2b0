"""Schema migrations of the coordinator's store (Alembic).

The tables are declared once, in `server/store.py` (`metadata`); every change
to them gets an Alembic revision in `versions/`. The coordinator applies the
pending revisions when it starts (`Store`), or an operator does it first with
`fedlink coordinator migrate --database URL`.

After changing `metadata`, add the revision with the one command

    python -m server.migrations revision "what changed"

which compares the metadata with a scratch database migrated to the current
head (Alembic autogenerate) and writes the difference as a new file in
`versions/`; review it, then commit it. `tests/test_migrations.py` fails while
the metadata and the migrations differ.
"""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

HERE = Path(__file__).resolve().parent
INITIAL = "0001"
# Any fixed 64-bit key: serialises concurrent migrations on PostgreSQL.
_PG_MIGRATION_LOCK = 0x666564_6D6967


def config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("script_location", str(HERE))
    cfg.set_main_option("version_locations", str(HERE / "versions"))
    cfg.attributes["connection"] = connection
    return cfg


def current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str | None]:
    """Bring the database to `revision`; returns (before, after). A database
    made before migrations existed (tables, no version) is stamped as the
    initial revision first."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
        before = current(conn)
        if before is None and inspect(conn).has_table("projects"):
            command.stamp(config(conn), INITIAL)
            before = INITIAL
        command.upgrade(config(conn), revision)
        return before, current(conn)


def differences(engine: Engine) -> list:
    """What autogenerate finds between the migrated database and `metadata`
    (empty when the migrations are complete)."""
    from alembic.autogenerate import compare_metadata

    from server.store import metadata

    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(ctx, metadata)


def new_revision(message: str) -> list[str]:
    """Autogenerate a revision from the difference between `metadata` and a
    scratch SQLite database at the current head."""
    import tempfile

    from sqlalchemy import create_engine

    with tempfile.TemporaryDirectory() as tmp:
        engine = create_engine(f"sqlite:///{tmp}/scratch.sqlite")
        upgrade(engine)
        with engine.begin() as conn:
            if not differences(engine):
                return []
            scripts = command.revision(config(conn), message=message, autogenerate=True,
                                       rev_id=_next_id())
        engine.dispose()
    scripts = scripts if isinstance(scripts, list) else [scripts]
    return [s.path for s in scripts if s is not None]


def _next_id() -> str:
    numbers = [int(p.name[:4]) for p in (HERE / "versions").glob("[0-9][0-9][0-9][0-9]_*.py")]
    return f"{max(numbers, default=0) + 1:04d}"
