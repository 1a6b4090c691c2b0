"""`fedlink pki`: certificates for the coordinator, agents, operators, officers."""
from __future__ import annotations

from pathlib import Path

import typer

from fedlink.cli.base import INPUT, Failure, console

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Certificates for the coordinator, agents, operators, officers.")

# A PKI folder that exists already, or a name that cannot be a certificate's.
EXIT_CODES = {FileExistsError: Failure(INPUT), ValueError: Failure(INPUT)}


@app.command("init")
def pki_init(
    directory: Path,
    departments: str = typer.Option(..., help="Comma-separated departments, e.g. population,civil_affairs"),
    operators: str = typer.Option("operator", help="Comma-separated operator names"),
    officers: str = typer.Option("officer", help="Comma-separated privacy officer names"),
    hostname: list[str] = typer.Option([], help="Extra coordinator host names or IPs"),
    days: int = typer.Option(365, help="Validity of the issued certificates"),
):
    """Issue a CA and certificates for the coordinator, each department, operators and officers."""
    from fedlink.audit import default_origin, new_signing_key, write_vkey
    from fedlink.pki import init_pki

    issued = init_pki(directory, [d.strip() for d in departments.split(",") if d.strip()],
                      operators=tuple(operators.split(",")), officers=tuple(officers.split(",")),
                      hostnames=tuple(hostname), days=days)
    audit_key = new_signing_key(directory / "audit-signing.key")
    # The log key every party pins, for the coordinator's default origin (serve --log-origin rewrites it).
    vkey = write_vkey(audit_key, default_origin(issued["coordinator"].cert))
    for party, creds in issued.items():
        console.print(f"{party:28s} {creds.cert}")
    console.print(f"{'audit log signing key':28s} {audit_key} (log key to pin: {vkey})")
