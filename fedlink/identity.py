"""Who is on the other end of a connection, taken from its verified certificate.

Every party in fedlink (coordinator, department agents, operators, privacy
officers) holds an X.509 certificate issued by the deployment's CA
(:mod:`fedlink.pki`).  Its role -- and, for an agent, its department -- is
written into the certificate as exactly one SubjectAlternativeName URI of the
form ``urn:fedlink:<role>:<department-or-name>``.

The coordinator takes role and department *only* from the peer certificate
that the TLS layer verified under mutual TLS, never from a field of a request:
a request can claim anything, a certificate signed by the CA cannot.

This module is pure: no file or network I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from cryptography import x509

__all__ = [
    "ROLES",
    "IDENTITY_URI_PREFIX",
    "Identity",
    "IdentityError",
    "identity_uri",
    "identity_from_certificate",
    "identity_from_grpc_context",
    "validate_label",
]

# console: the web console's own certificate, the one identity that records a person's page view and relays
# an officer's decision (server/console); it reads nothing itself.
ROLES: tuple[str, ...] = ("coordinator", "agent", "operator", "officer", "console")

IDENTITY_URI_PREFIX = "urn:fedlink:"

# Names and departments end up in URIs, file names and audit lines: keep them
# boring.  No ':' (URI separator), no '/' (paths), no whitespace.
_LABEL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

# gRPC auth-context property holding the verified peer certificate (PEM).
_GRPC_PEER_CERT_KEY = "x509_pem_cert"


class IdentityError(ValueError):
    """A certificate or connection does not carry a usable fedlink identity."""


def validate_label(value: str, what: str = "name") -> str:
    """Return *value* if it is a valid role suffix / department / party name.

    Raises :class:`IdentityError` (a ``ValueError``) otherwise.
    """
    if not isinstance(value, str) or not _LABEL_RE.fullmatch(value):
        raise IdentityError(
            f"invalid {what} {value!r}: use 1-64 characters from "
            "[A-Za-z0-9._-], starting with a letter or digit"
        )
    return value


@dataclass(frozen=True)
class Identity:
    """The authenticated identity of a peer."""

    role: str  # one of ROLES
    name: str  # certificate common name, e.g. "agent-population", "operator-1"
    department: str = ""  # for agents: the department; "" otherwise

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise IdentityError(f"unknown role {self.role!r}; expected one of {ROLES}")
        if self.role == "agent":
            if not self.department:
                raise IdentityError("an agent identity needs a department")
        elif self.department:
            raise IdentityError(
                f"only agents have a department; got role {self.role!r} "
                f"with department {self.department!r}"
            )

    @property
    def uri(self) -> str:
        """The SAN URI that certifies this identity."""
        return identity_uri(self.role, self.department if self.role == "agent" else self.name)

    def __str__(self) -> str:
        # "agent:population", "operator:ops-1", "coordinator:coordinator"
        return f"{self.role}:{self.department if self.role == 'agent' else self.name}"


def identity_uri(role: str, department_or_name: str) -> str:
    """The SAN URI put in certificates, e.g. ``urn:fedlink:agent:population``.

    For agents the suffix is the department; for every other role it is the
    party's name (``urn:fedlink:operator:ops-1``).
    """
    if role not in ROLES:
        raise IdentityError(f"unknown role {role!r}; expected one of {ROLES}")
    what = "department" if role == "agent" else f"{role} name"
    validate_label(department_or_name, what)
    return f"{IDENTITY_URI_PREFIX}{role}:{department_or_name}"


def _parse_identity_uri(uri: str, common_name: str | None) -> Identity:
    rest = uri[len(IDENTITY_URI_PREFIX):]
    role, sep, suffix = rest.partition(":")
    if role not in ROLES:
        raise IdentityError(
            f"certificate identity URI {uri!r} names unknown role {role!r}; "
            f"expected one of {ROLES}"
        )
    if not sep or not suffix:
        if role == "agent":
            raise IdentityError(
                f"certificate identity URI {uri!r} is for an agent without a department"
            )
        raise IdentityError(f"certificate identity URI {uri!r} has no {role} name")
    what = "department" if role == "agent" else f"{role} name"
    try:
        validate_label(suffix, what)
    except IdentityError as exc:
        raise IdentityError(f"certificate identity URI {uri!r}: {exc}") from None
    if role == "agent":
        return Identity(role="agent", name=common_name or f"agent-{suffix}", department=suffix)
    # For non-agents the URI suffix *is* the name: it is what the CA vouched
    # for, and str(identity) / audit lines use it.
    return Identity(role=role, name=suffix, department="")


def identity_from_certificate(pem: bytes | str) -> Identity:
    """Parse an X.509 PEM certificate and return the fedlink identity it carries.

    Exactly one ``urn:fedlink:`` URI SubjectAlternativeName must be present.
    This does *not* verify the certificate chain -- call it only on a
    certificate the TLS layer already verified (see
    :func:`identity_from_grpc_context`).
    """
    if isinstance(pem, str):
        pem = pem.encode("ascii")
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except (ValueError, TypeError) as exc:
        raise IdentityError(f"not a valid PEM X.509 certificate: {exc}") from None

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        uris = []
    ours = [u for u in uris if u.lower().startswith(IDENTITY_URI_PREFIX)]
    subject = cert.subject.rfc4514_string()
    if not ours:
        raise IdentityError(
            f"certificate {subject!r} has no {IDENTITY_URI_PREFIX}... "
            "SubjectAlternativeName URI; it was not issued as a fedlink identity"
        )
    if len(ours) > 1:
        raise IdentityError(
            f"certificate {subject!r} has {len(ours)} {IDENTITY_URI_PREFIX}... "
            f"SubjectAlternativeName URIs ({', '.join(ours)}); exactly one is allowed"
        )
    uri = IDENTITY_URI_PREFIX + ours[0][len(IDENTITY_URI_PREFIX):]

    cns = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    common_name = str(cns[0].value) if cns else None
    return _parse_identity_uri(uri, common_name)


def identity_from_grpc_context(context: Any) -> Identity:
    """The identity of the peer of a gRPC call, from its verified certificate.

    *context* is a ``grpc.ServicerContext``.  Under mutual TLS its auth
    context holds the peer certificate that the handshake verified against
    the CA; on an insecure channel (or TLS without a client certificate)
    there is none and :class:`IdentityError` is raised.
    """
    try:
        auth = context.auth_context() or {}
    except Exception as exc:  # pragma: no cover - defensive
        raise IdentityError(f"cannot read the gRPC auth context: {exc}") from None
    certs = auth.get(_GRPC_PEER_CERT_KEY) or []
    if not certs:
        kind = (auth.get("transport_security_type") or [b"none"])[0]
        if isinstance(kind, bytes):
            kind = kind.decode("utf-8", "replace")
        raise IdentityError(
            "the peer presented no verified client certificate "
            f"(transport security: {kind}); mutual TLS is required"
        )
    return identity_from_certificate(certs[0])
