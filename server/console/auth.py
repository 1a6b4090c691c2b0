"""Who is looking: the person's identity from the client certificate their
browser presented, which the TLS layer verified against the project's CA
(uvicorn with ssl.CERT_REQUIRED). A connection without a certificate never
gets an HTTP request through; one with a certificate of another role (an
agent's) gets a refusal page. The identity travels to the app in the ASGI
scope under IDENTITY_KEY, set here from the handshake and nowhere else from
anything a client sends (but for the OpenID sign-in below).

With a site's OpenID Connect provider (server/console/oidc.py) the handshake
asks for a certificate without requiring one: a request without one gets the
person of its signed-in session, set under the same key; a certificate wins."""
from __future__ import annotations

import ssl

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from uvicorn.protocols.http.h11_impl import H11Protocol

from fedlink.identity import Identity, IdentityError, identity_from_certificate

IDENTITY_KEY = "fedlink.identity"  # Identity, or IdentityError when the certificate carries none
VIEWER_ROLES = ("operator", "officer")


class Refused(Exception):
    """A page not shown: the HTTP status and why, in the coordinator's or the console's words."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def identity_of(der: bytes | None) -> Identity | IdentityError:
    if not der:
        return IdentityError("no client certificate was presented")
    try:
        pem = x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM)
        return identity_from_certificate(pem)
    except (IdentityError, ValueError) as e:
        return IdentityError(str(e))


class CertificateH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, handing each request on a connection the
    identity of the certificate that connection's handshake verified."""

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        tls: ssl.SSLObject | None = transport.get_extra_info("ssl_object")
        who = identity_of(tls.getpeercert(binary_form=True) if tls else None)
        inner = self.app

        async def app(scope, receive, send):
            scope[IDENTITY_KEY] = who
            await inner(scope, receive, send)
        self.app = app


def server_tls(cert: str, key: str, ca: str, required: bool = True) -> dict:
    """uvicorn's TLS settings: the console's server certificate, client certificates of the CA required
    (or, where people may sign in with OpenID Connect instead, verified when presented)."""
    return {"ssl_certfile": cert, "ssl_keyfile": key, "ssl_ca_certs": ca,
            "ssl_cert_reqs": ssl.CERT_REQUIRED if required else ssl.CERT_OPTIONAL}
