"""`fedlink pki`: the key ceremony. Each party makes its own key and request
(`request`), the CA operator signs it (`sign`) and sends back a bundle
(`bundle`); `revoke` writes a new CRL. `init` plays it all at once for a
demo or test deployment."""
from __future__ import annotations

from pathlib import Path

import typer

from fedlink.cli.base import INPUT, Failure, console

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Keys and certificates: request, sign, bundle, revoke (init for a demo).")

# A PKI folder or key that exists already, a request or name that cannot be a certificate's, a file not there.
EXIT_CODES = {FileExistsError: Failure(INPUT), ValueError: Failure(INPUT), FileNotFoundError: Failure(INPUT)}


@app.command("init")
def pki_init(
    directory: Path,
    departments: str = typer.Option(..., help="Comma-separated departments, e.g. population,civil_affairs"),
    operators: str = typer.Option("operator", help="Comma-separated operator names"),
    officers: str = typer.Option("officer", help="Comma-separated privacy officer names"),
    consoles: str = typer.Option("console", help="Comma-separated web console names (the certificate a console "
                                                 "records page views and relays officers' decisions with)"),
    hostname: list[str] = typer.Option([], help="Extra coordinator host names or IPs"),
    days: int = typer.Option(365, help="Validity of the issued certificates"),
):
    """A demo deployment: a CA folder and one folder per party, each with only its own key."""
    from fedlink.pki import CA_FOLDER, init_pki

    issued = init_pki(directory, [d.strip() for d in departments.split(",") if d.strip()],
                      operators=tuple(operators.split(",")), officers=tuple(officers.split(",")),
                      consoles=tuple(c for c in consoles.split(",") if c),
                      hostnames=tuple(hostname), days=days)
    print(f"{'CA (keep offline)':28s} {directory / CA_FOLDER}")
    for party, creds in issued.items():
        print(f"{party:28s} {creds.cert.parent}")


@app.command("new-ca")
def pki_new_ca(directory: Path, days: int = typer.Option(3650, help="Validity of the CA certificate")):
    """Create the CA: its certificate, its key (keep this folder offline) and an empty CRL."""
    from fedlink.pki import new_ca

    new_ca(directory, days=days)
    print(f"CA written to {directory}: ca.key stays here; ca.pem goes in every bundle")


@app.command("request")
def pki_request(
    role: str = typer.Option(..., help="coordinator, agent, operator, officer or console"),
    name: str = typer.Option("", help="Party name (default: the role; agent-<department> for an agent)"),
    department: str = typer.Option("", help="The agent's department"),
    dns: list[str] = typer.Option([], help="Coordinator only: a DNS name agents connect by (repeatable)"),
    ip: list[str] = typer.Option([], help="Coordinator only: an address agents connect by (repeatable)"),
    out: Path = typer.Option(..., help="This party's own folder: the key is written here and stays here"),
):
    """Make this party's key and a certificate request for the CA operator."""
    from fedlink.pki import request

    csr = request(out, role, name=name, department=department, hostnames=[*dns, *ip])
    print(f"key written to {csr.with_suffix('.key')} (mode 0600; it never leaves {out})")
    console.print(f"send {csr} to the CA operator" + (
        f", with {out / 'audit-signing.pub'} (its audit key: the CA makes the log key every party pins from it)"
        if role == "coordinator" else ""))


@app.command("sign")
def pki_sign(
    request_file: Path = typer.Argument(..., metavar="REQ.csr"),
    ca: Path = typer.Option(..., help="The CA folder (ca.pem, ca.key)"),
    out: Path = typer.Option(..., help="Certificate to write"),
    audit_key: Path = typer.Option(None, help="With the coordinator's request: its audit-signing.pub; the log "
                                              "key made from it (audit-signing.vkey) goes in every bundle"),
    days: int = typer.Option(365, help="Validity"),
):
    """Sign a party's request: the certificate carries the role, department and host names it asked for."""
    from fedlink.pki import sign

    cert, asked = sign(request_file, ca, out, days=days, audit_key=audit_key)
    what = f"agent of {asked.department}" if asked.role == "agent" else f"{asked.role} {asked.name}"
    hosts = f", host names {', '.join(asked.hostnames)}" if asked.hostnames else ""
    print(f"signed {out}: {what}{hosts}; serial {cert.serial_number:x}, valid until "
                  f"{cert.not_valid_after_utc:%Y-%m-%d}")


@app.command("bundle")
def pki_bundle(
    cert: Path = typer.Argument(..., metavar="CERT.pem"),
    ca: Path = typer.Option(..., help="The CA folder"),
    out: Path = typer.Option(..., help="A folder, or a file ending in .tar.gz"),
):
    """What a party receives: its certificate, the CA certificate, the CRL, the log key to pin
    (audit-signing.vkey) and the project's witnesses file (witnesses.toml), when the CA folder has it."""
    from fedlink.pki import bundle

    written = bundle(cert, ca, out)
    print(f"bundle written to {written}: deliver it to the party, who adds it to the folder holding its key")


@app.command("revoke")
def pki_revoke(
    certificate: str = typer.Argument(..., metavar="SERIAL|CERT", help="A hexadecimal serial or a certificate"),
    ca: Path = typer.Option(..., help="The CA folder"),
    publish: list[Path] = typer.Option([], help="Also write the CRL here, e.g. the coordinator's crl.pem"),
):
    """Revoke a certificate: a new CRL, which the coordinator picks up without a restart."""
    from fedlink.pki import CRL_FILE, revoke

    serial, who = revoke(ca, certificate, publish)
    print(f"revoked serial {serial:x}{f' ({who})' if who else ''}; CRL written to {ca / CRL_FILE}"
                  + "".join(f" and {p}" for p in publish))
    if not publish:
        console.print("copy it to the coordinator's folder as crl.pem: calls with the certificate stop at once")


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
