"""Certificates checked against this machine's clock: a certificate not yet
valid or expired makes every TLS handshake fail, which gRPC reports only as
"unavailable". These checks name the certificate, its validity and the clock
instead, so an operator fixes the clock or renews the certificate rather than
the network. When this machine finds every certificate valid but the peer
still closes the connection once it has this party's certificate, the peer's
clock is the likely culprit: said with the certificate's window and this
clock (a gRPC server sends no TLS alert that would say why). Given the
coordinator's plain health URL (which needs no certificate), the agent reads
the coordinator's clock from its HTTP Date header and names it against the
window: a clock outside it is the cause; one inside it means the coordinator
refuses the certificate itself (another CA, revoked)."""
from __future__ import annotations

import datetime as _dt
import email.utils
import socket
import ssl
import urllib.error
import urllib.request

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


_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def refusal_problem(address: str, creds: Credentials, health_url: str = "", timeout: float = 3.0) -> str | None:
    """Whether the TLS server at `address` closes a mutual-TLS connection made
    with this party's certificate instead of answering HTTP/2 (as a gRPC server
    whose clock finds that certificate expired or not yet valid does). With the
    coordinator's plain health URL, its clock is read there and named."""
    host, _, port = address.rpartition(":")
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    context.load_cert_chain(creds.cert, creds.key)
    try:
        sock = socket.create_connection((host.strip("[]"), int(port)), timeout=timeout)
    except (OSError, ValueError):
        return None  # nothing listens there: truly unreachable
    try:
        with sock, context.wrap_socket(sock, server_hostname=host.strip("[]") or None) as tls:
            tls.sendall(_H2_PREFACE)
            if tls.recv(9):  # the server's SETTINGS frame: it took the certificate
                return None
    except (ssl.SSLError, OSError):
        pass
    cert = x509.load_pem_x509_certificate(creds.cert.read_bytes())
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    now = _dt.datetime.now(_dt.timezone.utc)
    refused = (f"the coordinator at {address} closed the connection once it had this party's certificate "
               f"{creds.cert} (valid from {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC; this machine's clock "
               f"says {now:%Y-%m-%d %H:%M} UTC, inside that window)")
    theirs = peer_clock(health_url, timeout) if health_url else None
    if theirs is None:
        return (f"{refused}: the coordinator's clock is most likely outside that window (or it trusts another CA); "
                "ask its operator to check the coordinator's clock (NTP)")
    reads = f"the coordinator's clock reads {theirs:%Y-%m-%d %H:%M:%S} UTC ({health_url})"
    if start <= theirs <= end:
        return (f"{refused}; {reads}, inside that window too: it refuses the certificate itself (another CA, or "
                "revoked); ask its operator which CA it trusts")
    return (f"{refused}; {reads}, {'before' if theirs < start else 'after'} that window: ask its operator to set "
            "the coordinator's clock right (NTP)")


def peer_clock(url: str, timeout: float = 3.0) -> _dt.datetime | None:
    """The time in the Date header of a plain HTTP answer (the coordinator's
    /healthz, which needs no certificate), or None when there is none."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            said = answer.headers.get("Date")
    except urllib.error.HTTPError as e:  # 503 while its database is away: the Date is still its clock
        said = e.headers.get("Date")
    except (OSError, ValueError):
        return None
    try:
        return email.utils.parsedate_to_datetime(said).astimezone(_dt.timezone.utc) if said else None
    except (TypeError, ValueError):
        return None
