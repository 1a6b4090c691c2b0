"""`fedlink console serve`: the web console beside the coordinator."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from fedlink.cli.base import INPUT, Failure

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="The web console for operators and privacy officers.")

# A certificate or key missing, a port taken, an address that is not host:port.
EXIT_CODES = {ValueError: Failure(INPUT)}


def console_url(listen: str) -> str:
    host, _, port = listen.rpartition(":")
    return f"https://{'localhost' if host in ('127.0.0.1', '0.0.0.0', '') else host}:{port}/"


@app.command("serve")
def console_serve(
    coordinator: str = typer.Option("127.0.0.1:50051", help="The coordinator's host:port"),
    pki: Path = typer.Option(..., help="PKI folder from `fedlink pki init`: the CA people's certificates are "
                                       "checked against, the console's certificates, the log key and the "
                                       "witnesses file delivered to the officer"),
    log_key: Optional[Path] = typer.Option(None, help="The coordinator's log key (default: audit-signing.vkey in "
                                                      "the officer's folder)"),
    witnesses: Optional[Path] = typer.Option(None, help="The project's witnesses file (default: witnesses.toml in "
                                                        "the officer's folder)"),
    listen: str = typer.Option("127.0.0.1:8443", help="host:port the console serves HTTPS on"),
    operator: str = typer.Option("operator", help="Certificate in the PKI folder the console reads operator "
                                                  "pages with"),
    officer: str = typer.Option("officer", help="Certificate in the PKI folder the console reads officer pages with"),
    relay: str = typer.Option("console", help="Certificate in the PKI folder of the console role: the console "
                                              "records each page view and relays officers' decisions with it"),
    server_cert: str = typer.Option("coordinator", help="Certificate in the PKI folder the console serves HTTPS "
                                                        "with (its host names must match the address people open)"),
    oidc: Optional[Path] = typer.Option(None, help="The site's OpenID Connect provider and who may sign in with "
                                                   "it as operator or officer (docs/console.md); people without "
                                                   "a certificate then sign in there"),
    log_level: str = typer.Option("info", help="debug, info, warning or error"),
):
    """Serve the console until Ctrl-C. People open it with their own certificate
    (operator or officer) from the same PKI; every page they open is an audit event."""
    import uvicorn

    from fedlink.pki import AUDIT_VKEY_FILE, WITNESSES_FILE, credentials_for, party_folder
    from server.console.app import create_app
    from server.console.auth import CertificateH11Protocol, server_tls
    from server.console.oidc import OidcConfig
    from server.console.source import CoordinatorSource

    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--listen {listen!r}: use host:port, e.g. 127.0.0.1:8443")
    provider = OidcConfig.load(oidc) if oidc else None
    served = credentials_for(pki, server_cert)
    delivered = party_folder(pki, officer)
    source = CoordinatorSource(coordinator, credentials_for(pki, operator), credentials_for(pki, officer),
                               credentials_for(pki, relay),
                               log_key or delivered / AUDIT_VKEY_FILE, witnesses or delivered / WITNESSES_FILE)
    print(f"console at {console_url(listen)} (coordinator {coordinator})", flush=True)
    try:
        uvicorn.run(create_app(source, oidc=provider), host=host, port=int(port), http=CertificateH11Protocol,
                    log_level=log_level, access_log=False,
                    **server_tls(str(served.cert), str(served.key), str(served.ca), required=provider is None))
    finally:
        source.close()
