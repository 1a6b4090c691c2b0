"""Alembic's environment for the coordinator's store: always called with a
connection (server.migrations.config), never from an alembic.ini."""
from alembic import context

from server.store import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("use server.migrations (or `fedlink coordinator migrate`), not the alembic command")
context.configure(connection=connection, target_metadata=metadata, compare_type=True,
                  render_as_batch=True)  # SQLite alters tables by copying them
with context.begin_transaction():
    context.run_migrations()
