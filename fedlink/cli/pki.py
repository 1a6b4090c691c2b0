"""`fedlink pki`: certificates for the coordinator, agents, operators, officers."""
from __future__ import annotations

from pathlib import Path

import typer

from fedlink.cli.base import INPUT, Failure

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
    from fedlink.audit import new_signing_key, public_path
    from fedlink.pki import init_pki

    issued = init_pki(directory, [d.strip() for d in departments.split(",") if d.strip()],
                      operators=tuple(operators.split(",")), officers=tuple(officers.split(",")),
                      hostnames=tuple(hostname), days=days)
    audit_key = new_signing_key(directory / "audit-signing.key")
    for party, creds in issued.items():
        print(f"{party:28s} {creds.cert}")
    print(f"{'audit log signing key':28s} {audit_key} (public: {public_path(audit_key)})")


@app.command("p12")
def pki_p12(
    directory: Path,
    party: str = typer.Argument(..., help="operator or officer certificate name, e.g. operator"),
    password: str = typer.Option(..., prompt=True, hide_input=True, confirmation_prompt=True,
                                 envvar="FEDLINK_P12_PASSWORD", help="Protects the file; the browser asks for it"),
):
    """Write PARTY.p12 (certificate, key and CA, password-protected) for a person to import
    into a browser and open the console (`fedlink console serve`) with."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import BestAvailableEncryption, load_pem_private_key, pkcs12

    from fedlink.pki import credentials_for

    creds = credentials_for(directory, party)
    cert_pem, key_pem, ca_pem = creds.load()
    blob = pkcs12.serialize_key_and_certificates(
        party.encode(), load_pem_private_key(key_pem, None), x509.load_pem_x509_certificate(cert_pem),
        [x509.load_pem_x509_certificate(ca_pem)], BestAvailableEncryption(password.encode()))
    out = Path(directory) / f"{party}.p12"
    out.write_bytes(blob)
    out.chmod(0o600)
    print(out)
