"""`fedlink coordinator`: run the coordinator, migrate its database."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import typer
from sqlalchemy.exc import SQLAlchemyError

from fedlink.cli.base import INPUT, Failure, Invocation, console
from fedlink.pki import Credentials, credentials_for
from server.limits import Limits

app = typer.Typer(no_args_is_help=True, add_completion=False, help="The central coordinator.")

DatabaseOpt = typer.Option("fedlink.sqlite", help="SQLite file, or postgresql://...")


def _safe_url(url: str) -> str:
    """A database URL without its password, for messages."""
    if "://" not in url:
        return url
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _database_error(error: SQLAlchemyError, run: Invocation) -> str:
    return (f"database {_safe_url(str(run.params['database']))}: {error.__class__.__name__}: "
            f"{str(error).splitlines()[0]}")


# What the coordinator is started with: an engine or a limit not valid, a port
# taken, a certificate missing, a database it cannot use.
EXIT_CODES = {ValueError: Failure(INPUT), OSError: Failure(INPUT), SQLAlchemyError: Failure(INPUT, _database_error)}


def _server_credentials(pki: Optional[Path], cert: Optional[Path], key: Optional[Path],
                        ca: Optional[Path]) -> Credentials | None:
    if pki:
        return credentials_for(pki, "coordinator")
    if cert and key and ca:
        return Credentials(cert, key, ca)
    return None


@app.command("serve")
def coordinator_serve(
    listen: str = typer.Option("127.0.0.1:50051", help="host:port to listen on"),
    database: str = DatabaseOpt,
    pki: Optional[Path] = typer.Option(None, help="PKI folder from `fedlink pki init` (uses coordinator.pem)"),
    cert: Optional[Path] = typer.Option(None), key: Optional[Path] = typer.Option(None),
    ca: Optional[Path] = typer.Option(None),
    insecure: bool = typer.Option(False, help="Plaintext, loopback only, for development"),
    engine: str = typer.Option("local", help="Match engine: local (exact, LSH-blocked for large pairs), "
                                             "local+exact, local+lsh, dask://HOST:PORT (the same choice on a "
                                             "Dask cluster), dask+exact://, dask+lsh://; "
                                             "see docs/scale.md"),
    metrics_port: Optional[int] = typer.Option(None, help="Serve Prometheus metrics on this port"),
    grace: float = typer.Option(10.0, help="Seconds calls in flight get to finish on Ctrl-C"),
    max_message_bytes: int = typer.Option(Limits.max_message_bytes, help="Largest gRPC message accepted"),
    max_batch_records: int = typer.Option(Limits.max_batch_records, help="Most records in one upload batch"),
    max_records_per_upload: int = typer.Option(Limits.max_records_per_upload,
                                               help="Most records in one department's upload"),
    max_calls_per_minute: int = typer.Option(Limits.calls_per_minute,
                                             help="Calls per minute per caller identity (0: no limit)"),
    audit_key: Optional[Path] = typer.Option(None, help="The audit log's signing key (default: "
                                             "audit-signing.key in the PKI folder); made on first start"),
    log_origin: Optional[str] = typer.Option(None, help="The log's name in its checkpoints (default: "
                                             "<coordinator host name>/fedlink-audit)"),
    witnesses: Optional[Path] = typer.Option(None, help="The project's witnesses file (default: "
                                             "witnesses.toml beside the audit key)"),
):
    """Run the coordinator until Ctrl-C (which finishes the calls in flight).
    Pending schema migrations are applied first."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from server.serve import serve_forever, start

    limits = Limits(max_message_bytes, max_batch_records, max_records_per_upload, max_calls_per_minute)
    running = start(listen, database, credentials=_server_credentials(pki, cert, key, ca), insecure=insecure,
                    engine=engine, metrics_port=metrics_port, limits=limits, audit_key=audit_key,
                    log_origin=log_origin, witnesses=witnesses)
    console.print(f"coordinator serving on {listen} (database {database})")
    serve_forever(running, grace)


@app.command("migrate")
def coordinator_migrate(database: str = DatabaseOpt):
    """Apply the pending schema migrations (Alembic) and exit; `serve` does this too."""
    from server.migrations import upgrade
    from server.store import connect_engine

    engine = connect_engine(database)
    before, after = upgrade(engine)
    engine.dispose()
    if before == after:
        console.print(f"database {_safe_url(database)} already at revision {after}")
    else:
        console.print(f"database {_safe_url(database)} migrated from {before or 'empty'} to revision {after}")
