"""The CA and leaf certificates: extensions, validity, the identity each leaf carries."""
from __future__ import annotations

import datetime as _dt
import ipaddress
from collections.abc import Iterable

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fedlink.identity import ROLES, IdentityError, identity_uri, validate_label

CA_DAYS = 3650
LEAF_DAYS = 365
ORGANIZATION = "fedlink"

# ECDSA P-256 (signatures ecdsa-with-SHA256): accepted by every TLS stack
# (gRPC's BoringSSL, OpenSSL, Go, Java) for server and client certificates.
# Ed25519 is NOT usable: grpcio 1.85's TLS handshake fails with
# NO_COMMON_SIGNATURE_ALGORITHMS when the certificates are Ed25519 (gRPC
# restricts the signature algorithms it offers), so it is not offered here.
KEY_ALGORITHM = "ec-p256"

# Certificates are back-dated a little so that small clock skew between the
# issuing machine and the parties does not make fresh certificates "not yet
# valid".
_BACKDATE = _dt.timedelta(minutes=5)


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _validity(days: int) -> tuple[_dt.datetime, _dt.datetime]:
    if days <= 0:
        raise ValueError(f"validity must be a positive number of days, got {days}")
    now = _dt.datetime.now(_dt.timezone.utc)
    return now - _BACKDATE, now + _dt.timedelta(days=days)


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    # A CA only signs certificates (and CRLs); a leaf only signs TLS handshakes.
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _builder(subject: x509.Name, issuer: x509.Name, key, not_before, not_after) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )


def make_ca(days: int):
    key = new_key()
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, "fedlink CA"),
        ]
    )
    not_before, not_after = _validity(days)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        _builder(name, name, key, not_before, not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _host_names(hostnames: Iterable[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    for host in hostnames:
        host = host.strip()
        if not host:
            continue
        try:
            entry: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
        except ValueError:
            if any(c in host for c in " /:@") or host.startswith(".") or host.endswith("."):
                raise ValueError(f"invalid host name for the coordinator certificate: {host!r}") from None
            entry = x509.DNSName(host.lower())
        if entry not in names:
            names.append(entry)
    return names


def _identity_uri(role: str, name: str, department: str) -> str:
    """The one SAN URI a party's certificate carries (fedlink.identity)."""
    if role not in ROLES:
        raise IdentityError(f"unknown role {role!r}; expected one of {ROLES}")
    validate_label(name, "party name")
    if role == "agent":
        if not department:
            raise IdentityError("an agent certificate needs a department")
        return identity_uri("agent", department)
    if department:
        raise IdentityError(f"only agents have a department; got role {role!r} with {department!r}")
    return identity_uri(role, name)


def _subject(role: str, name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
        x509.NameAttribute(NameOID.COMMON_NAME, name),
    ])


def _san(role: str, name: str, department: str, hostnames: Iterable[str]) -> list[x509.GeneralName]:
    san: list[x509.GeneralName] = [x509.UniformResourceIdentifier(_identity_uri(role, name, department))]
    hostnames = [h for h in hostnames if h.strip()]
    if role == "coordinator":
        san += _host_names(hostnames)
    elif hostnames:
        raise ValueError(f"host names and addresses only go in the coordinator's certificate, not a {role}'s")
    return san


def make_request(key, *, role: str, name: str, department: str = "",
                 hostnames: Iterable[str] = ()) -> x509.CertificateSigningRequest:
    """A certificate request asking for one identity (and, for the coordinator, its host names),
    signed with the requester's own key: the key itself never leaves the requester."""
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(_subject(role, name))
        .add_extension(x509.SubjectAlternativeName(_san(role, name, department, hostnames)), critical=False)
        .sign(key, hashes.SHA256())
    )


def make_leaf(ca_key, ca_cert: x509.Certificate, public_key, *, role: str, name: str, department: str,
              hostnames: Iterable[str], days: int) -> x509.Certificate:
    """The certificate of one party's public key: its role, its department or name, its host names."""
    san = _san(role, name, department, hostnames)
    eku = [ExtendedKeyUsageOID.SERVER_AUTH] if role == "coordinator" else [ExtendedKeyUsageOID.CLIENT_AUTH]
    not_before, not_after = _validity(days)
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        x509.CertificateBuilder()
        .subject_name(_subject(role, name))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(min(not_after, ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(eku), critical=False)
        # Non-critical: the subject is non-empty (RFC 5280 4.2.1.6).
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
