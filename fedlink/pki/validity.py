"""Certificates checked against this machine's clock: a certificate not yet
valid or expired makes every TLS handshake fail, which gRPC reports only as
"unavailable". These checks name the certificate, its validity and the clock
instead, so an operator fixes the clock or renews the certificate rather than
the network."""
from __future__ import annotations

import datetime as _dt
import socket
import ssl

from cryptography import x509

from fedlink.pki.files import Credentials


def time_problem(pem: bytes, what: str, now: _dt.datetime | None = None) -> str | None:
    """Why `pem` (a certificate) is not valid at `now` (this machine's clock), or None."""
    now = now or _dt.datetime.now(_dt.timezone.utc)
    cert = x509.load_pem_x509_certificate(pem)
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    if now < start:
        return (f"{what} is not valid until {start:%Y-%m-%d %H:%M} UTC and this machine's clock says "
                f"{now:%Y-%m-%d %H:%M} UTC: the clock is behind (check NTP)")
    if now > end:
        return (f"{what} expired on {end:%Y-%m-%d %H:%M} UTC (this machine's clock says {now:%Y-%m-%d %H:%M} "
                f"UTC): renew it, or check the clock")
    return None


def credential_problems(creds: Credentials, now: _dt.datetime | None = None) -> list[str]:
    """The problems of a party's own certificate and its CA at `now`."""
    return [p for p in (time_problem(creds.cert.read_bytes(), f"the certificate {creds.cert}", now),
                        time_problem(creds.ca.read_bytes(), f"the CA certificate {creds.ca}", now)) if p]


def peer_problem(address: str, timeout: float = 3.0) -> str | None:
    """Whether the TLS server at `address` (host:port) shows a certificate
    that is not valid by this machine's clock. The certificate is only read,
    not trusted: this diagnoses a failed connection, it authenticates nothing."""
    host, _, port = address.rpartition(":")
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout) as sock, \
                context.wrap_socket(sock, server_hostname=host.strip("[]") or None) as tls:
            der = tls.getpeercert(binary_form=True)
    except (OSError, ValueError):
        return None
    if not der:
        return None
    pem = ssl.DER_cert_to_PEM_cert(der).encode()
    return time_problem(pem, f"the coordinator's certificate at {address}")
