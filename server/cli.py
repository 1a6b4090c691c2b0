"""`fedlink coordinator`: run the coordinator, migrate its database."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from sqlalchemy.exc import SQLAlchemyError

from fedlink.cli.base import INPUT, Failure, Invocation
from fedlink.pki import Credentials, credentials_for
from server.limits import DEFAULT_RUN_STALL_S, Limits
from server.store import safe_url
from server.ownership import LEASE_TTL_S, DatabaseInUse

app = typer.Typer(no_args_is_help=True, add_completion=False, help="The central coordinator.")

DatabaseOpt = typer.Option("fedlink.sqlite", help="SQLite file, or postgresql://...")


def _database_error(error: SQLAlchemyError, run: Invocation) -> str:
    return (f"database {safe_url(str(run.params['database']))}: {error.__class__.__name__}: "
            f"{str(error).splitlines()[0]}")


# What the coordinator is started with: an engine or a limit not valid, a port
# taken, a certificate missing, a database it cannot use.
EXIT_CODES = {ValueError: Failure(INPUT), OSError: Failure(INPUT), SQLAlchemyError: Failure(INPUT, _database_error),
              DatabaseInUse: Failure(INPUT)}


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
    pki: Optional[Path] = typer.Option(None, help="The coordinator's folder (coordinator.pem/.key, ca.pem, crl.pem, "
                                                  "audit-signing.key), or a `fedlink pki init` deployment"),
    cert: Optional[Path] = typer.Option(None), key: Optional[Path] = typer.Option(None),
    ca: Optional[Path] = typer.Option(None),
    crl: Optional[Path] = typer.Option(None, help="CRL to check callers against (default crl.pem beside the "
                                                  "certificate); re-read when it changes"),
    insecure: bool = typer.Option(False, help="Plaintext, loopback only, for development; never with --pki"),
    engine: str = typer.Option("local", help="Match engine: local (exact, LSH-blocked for large pairs), "
                                             "local+exact, local+lsh, dask://HOST:PORT (the same choice on a "
                                             "Dask cluster), dask+exact://, dask+lsh://; any dask URL "
                                             "takes ?storage=PATH_OR_URL[&block=N] for the partitioned pass; "
                                             "see docs/scale.md"),
    metrics_port: Optional[int] = typer.Option(None, help="Serve Prometheus metrics (/metrics) on this port, "
                                                          "on the --listen host"),
    health_port: Optional[int] = typer.Option(None, help="Serve plain HTTP GET /healthz on this port, for a load "
                                                         "balancer: no certificate needed, nothing but the status"),
    health_host: str = typer.Option("", help="Address the health port binds to (default: the --listen host)"),
    log_format: str = typer.Option("text", help="text, or json (one object per line) for a log collector"),
    log_level: str = typer.Option("info", help="debug, info, warning or error"),
    grace: float = typer.Option(10.0, help="Seconds calls in flight get to finish on Ctrl-C"),
    max_message_bytes: int = typer.Option(Limits.max_message_bytes, help="Largest gRPC message accepted"),
    max_batch_records: int = typer.Option(Limits.max_batch_records, help="Most records in one upload batch"),
    max_records_per_upload: int = typer.Option(Limits.max_records_per_upload,
                                               help="Most records in one department's upload"),
    max_calls_per_minute: int = typer.Option(Limits.calls_per_minute,
                                             help="Calls per minute per caller identity (0: no limit)"),
    max_messages_per_minute: int = typer.Option(Limits.messages_per_minute,
                                                help="Stream messages per minute per caller identity (0: no limit)"),
    max_streams: int = typer.Option(Limits.streams_per_identity, help="Streams open at once per caller identity"),
    stream_idle_seconds: int = typer.Option(Limits.stream_idle_s,
                                            help="Close a stream that waits this long on its client"),
    max_open_uploads: int = typer.Option(Limits.open_uploads_per_department,
                                         help="Uncommitted uploads a department may hold per project"),
    upload_expiry_hours: int = typer.Option(Limits.upload_expiry_hours,
                                            help="Hours before an uncommitted upload expires"),
    keep_runs: int = typer.Option(2, help="Retention: keep the uploads (filters, indicators) the last N runs of a "
                                          "project used and the current ones; older ones are deleted after "
                                          "each run (0: keep everything)"),
    full_runs: bool = typer.Option(False, "--full-runs", help="Every run re-links every record; by default a run "
                                                              "re-scores only the records new or changed since "
                                                              "the project's last run (docs/scale.md)"),
    schedule_poll: float = typer.Option(30.0, help="Seconds between checks for a schedule that fell due"),
    run_stall_seconds: float = typer.Option(DEFAULT_RUN_STALL_S, help="Fail a run whose phase reports no "
                                            "progress for this many seconds (a hung engine or store call)"),
    lease_seconds: float = typer.Option(LEASE_TTL_S, help="PostgreSQL: how long this coordinator's lease lasts "
                                                          "without a heartbeat before others recover its runs"),
    audit_key: Optional[Path] = typer.Option(None, help="The audit log's signing key (default: "
                                             "audit-signing.key in the PKI folder); made on first start"),
    log_origin: Optional[str] = typer.Option(None, help="The log's name in its checkpoints (default: "
                                             "<coordinator host name>/fedlink-audit)"),
    witnesses: Optional[Path] = typer.Option(None, help="The project's witnesses file (default: "
                                             "witnesses.toml beside the audit key)"),
):
    """Run the coordinator until Ctrl-C (which finishes the calls in flight).
    Pending schema migrations are applied first."""
    from server.oplog import configure
    from server.serve import serve_forever, start

    configure(log_format, log_level)
    limits = Limits(max_message_bytes, max_batch_records, max_records_per_upload, max_calls_per_minute,
                    max_messages_per_minute, max_streams, stream_idle_seconds, max_open_uploads, upload_expiry_hours)
    health = None if health_port is None else f"{health_host or listen.rpartition(':')[0]}:{health_port}"
    running = start(listen, database, credentials=_server_credentials(pki, cert, key, ca), insecure=insecure,
                    engine=engine, metrics_port=metrics_port, limits=limits, health_address=health, crl=crl,
                    keep_runs=keep_runs, full_runs=full_runs, schedule_poll=schedule_poll, lease_seconds=lease_seconds,
                    run_stall_seconds=run_stall_seconds,
                    audit_key=audit_key, log_origin=log_origin, witnesses=witnesses)
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
        print(f"database {safe_url(database)} already at revision {after}")
    else:
        print(f"database {safe_url(database)} migrated from {before or 'empty'} to revision {after}")
