"""A small development / pilot PKI for fedlink, and gRPC mutual-TLS helpers.

``init_pki`` creates a self-signed CA and one certificate per party:

* ``coordinator``            -- TLS server (serverAuth), SAN DNS ``localhost``,
  IP ``127.0.0.1`` and ``::1`` plus any extra host names / addresses;
* ``agent-<department>``     -- TLS client (clientAuth), one per department;
* operators and officers     -- TLS clients (clientAuth), under the names given.

Each leaf carries exactly one SAN URI ``urn:fedlink:<role>:<department-or-name>``
(:func:`fedlink.identity.identity_uri`); that URI, not the common name and not
anything a client sends, is what the coordinator trusts.

Keys are ECDSA P-256 (see ``KEY_ALGORITHM``), written unencrypted as PKCS#8 PEM
with mode 0600.  This is a convenience PKI: the CA key lives in the same
directory as the leaves.  For production, keep ``ca.key`` offline (or use the
organisation's own CA) and distribute each party only its own ``<name>.pem``,
``<name>.key`` and ``ca.pem``.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fedlink.identity import ROLES, IdentityError, identity_uri, validate_label

__all__ = [
    "CA_CERT_FILE",
    "CA_KEY_FILE",
    "CA_DAYS",
    "LEAF_DAYS",
    "KEY_ALGORITHM",
    "Credentials",
    "init_pki",
    "issue",
    "credentials_for",
    "agent_party_name",
    "server_credentials",
    "channel_credentials",
]

CA_CERT_FILE = "ca.pem"
CA_KEY_FILE = "ca.key"
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


# --------------------------------------------------------------------------
# Credentials


@dataclass(frozen=True)
class Credentials:
    """Paths of one party's PEM files: its certificate, its key, the CA."""

    cert: Path
    key: Path
    ca: Path

    def load(self) -> tuple[bytes, bytes, bytes]:
        """Return ``(cert, key, ca)`` as bytes."""
        return self.cert.read_bytes(), self.key.read_bytes(), self.ca.read_bytes()


def agent_party_name(department: str) -> str:
    """The party (file / common) name of a department's agent: ``agent-<department>``."""
    return f"agent-{validate_label(department, 'department')}"


def credentials_for(directory: Path | str, party: str) -> Credentials:
    """Locate an existing party's files in *directory*.

    *party* is a party name as returned by :func:`init_pki` (``"coordinator"``,
    ``"agent-population"``, ``"operator"`` ...).  Raises ``FileNotFoundError``
    naming the first missing file.
    """
    directory = Path(directory)
    validate_label(party, "party name")
    creds = Credentials(
        cert=directory / f"{party}.pem",
        key=directory / f"{party}.key",
        ca=directory / CA_CERT_FILE,
    )
    for what, path in (("certificate", creds.cert), ("private key", creds.key), ("CA certificate", creds.ca)):
        if not path.is_file():
            raise FileNotFoundError(
                f"{what} for party {party!r} not found: {path} "
                f"(run `init_pki` / `issue` for it first)"
            )
    return creds


# --------------------------------------------------------------------------
# Keys and files


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write *data* to *path* with *mode*, atomically (temp file + rename).

    The temporary file is created 0600 from the start, so a private key is
    never readable by others, whatever the umask.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _write_key(path: Path, key) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_atomic(path, pem, 0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    _write_atomic(path, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def _check_not_existing(paths: Iterable[Path], overwrite: bool, hint: str) -> None:
    if overwrite:
        return
    existing = [p for p in paths if p.exists()]
    if existing:
        names = ", ".join(str(p) for p in existing)
        raise FileExistsError(
            f"refusing to overwrite existing PKI files: {names}. {hint} "
            "Pass overwrite=True to replace them (every certificate issued by "
            "a replaced CA stops being trusted)."
        )


# --------------------------------------------------------------------------
# Certificates


def _validity(days: int) -> tuple[_dt.datetime, _dt.datetime]:
    if days <= 0:
        raise ValueError(f"validity must be a positive number of days, got {days}")
    now = _dt.datetime.now(_dt.timezone.utc)
    return now - _BACKDATE, now + _dt.timedelta(days=days)


def _make_ca(days: int):
    key = _new_key()
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, "fedlink CA"),
        ]
    )
    not_before, not_after = _validity(days)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
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


def _make_leaf(
    ca_key,
    ca_cert: x509.Certificate,
    *,
    role: str,
    name: str,
    department: str,
    hostnames: Iterable[str],
    days: int,
):
    if role not in ROLES:
        raise IdentityError(f"unknown role {role!r}; expected one of {ROLES}")
    validate_label(name, "party name")
    if role == "agent":
        if not department:
            raise IdentityError("an agent certificate needs a department")
        uri = identity_uri("agent", department)
    else:
        if department:
            raise IdentityError(f"only agents have a department; got role {role!r} with {department!r}")
        uri = identity_uri(role, name)

    key = _new_key()
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
    )
    san: list[x509.GeneralName] = [x509.UniformResourceIdentifier(uri)]
    if role == "coordinator":
        san += _host_names(hostnames)
        eku = [ExtendedKeyUsageOID.SERVER_AUTH]
    else:
        eku = [ExtendedKeyUsageOID.CLIENT_AUTH]

    not_before, not_after = _validity(days)
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(min(not_after, ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(eku), critical=False)
        # Non-critical: the subject is non-empty (RFC 5280 4.2.1.6).
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def _load_ca(ca_dir: Path):
    cert_path, key_path = ca_dir / CA_CERT_FILE, ca_dir / CA_KEY_FILE
    for what, path in (("CA certificate", cert_path), ("CA private key", key_path)):
        if not path.is_file():
            raise FileNotFoundError(f"{what} not found: {path} (run init_pki first)")
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{key_path} is not an ECDSA key; fedlink certificates are ECDSA P-256")
    if key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        raise ValueError(f"{key_path} does not match {cert_path}")
    return key, cert


# --------------------------------------------------------------------------
# Public API


def init_pki(
    directory: Path | str,
    departments: Sequence[str],
    *,
    operators: Sequence[str] = ("operator",),
    officers: Sequence[str] = ("officer",),
    hostnames: Sequence[str] = (),
    days: int = LEAF_DAYS,
    ca_days: int = CA_DAYS,
    overwrite: bool = False,
) -> dict[str, Credentials]:
    """Create a CA and the certificates of every party in *directory*.

    Writes ``ca.pem``/``ca.key`` and ``<party>.pem``/``<party>.key`` for
    ``coordinator``, ``agent-<department>`` per department, and each operator
    and officer name.  Keys are mode 0600.  Refuses (``FileExistsError``) to
    replace existing files unless *overwrite* is true.  Returns
    ``{party name: Credentials}``.
    """
    directory = Path(directory)
    if isinstance(departments, str) or isinstance(operators, str) or isinstance(officers, str) \
            or isinstance(hostnames, str):
        raise TypeError("departments, operators, officers and hostnames must be sequences of strings, not a string")

    # (party name, role, department)
    parties: list[tuple[str, str, str]] = [("coordinator", "coordinator", "")]
    parties += [(agent_party_name(d), "agent", d) for d in departments]
    parties += [(validate_label(n, "operator name"), "operator", "") for n in operators]
    parties += [(validate_label(n, "officer name"), "officer", "") for n in officers]
    seen: dict[str, str] = {}
    for party, role, _ in parties:
        if party in ("ca",):
            raise ValueError(f"party name {party!r} is reserved")
        if party in seen:
            raise ValueError(f"duplicate party name {party!r} ({seen[party]} and {role})")
        seen[party] = role

    targets = [directory / CA_CERT_FILE, directory / CA_KEY_FILE]
    for party, _, _ in parties:
        targets += [directory / f"{party}.pem", directory / f"{party}.key"]
    _check_not_existing(
        targets,
        overwrite,
        f"{directory} already holds a fedlink PKI; use issue() to add a party to it.",
    )

    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = _make_ca(ca_days)
    _write_key(directory / CA_KEY_FILE, ca_key)
    _write_cert(directory / CA_CERT_FILE, ca_cert)

    result: dict[str, Credentials] = {}
    for party, role, department in parties:
        key, cert = _make_leaf(
            ca_key,
            ca_cert,
            role=role,
            name=party,
            department=department,
            hostnames=hostnames if role == "coordinator" else (),
            days=days,
        )
        creds = Credentials(
            cert=directory / f"{party}.pem",
            key=directory / f"{party}.key",
            ca=directory / CA_CERT_FILE,
        )
        _write_key(creds.key, key)
        _write_cert(creds.cert, cert)
        result[party] = creds
    return result


def issue(
    ca_dir: Path | str,
    role: str,
    name: str,
    *,
    department: str = "",
    out_dir: Path | str | None = None,
    days: int = LEAF_DAYS,
    hostnames: Sequence[str] = (),
    overwrite: bool = False,
) -> Credentials:
    """Issue one more certificate from the existing CA in *ca_dir*.

    E.g. ``issue(d, "agent", "agent-tax", department="tax")`` for a new
    department.  Files go to *out_dir* (default *ca_dir*) as ``<name>.pem`` /
    ``<name>.key``; when *out_dir* differs from *ca_dir* the (public) CA
    certificate is copied there too, so that the directory is a complete
    bundle for the party.  *hostnames* only applies to the coordinator.
    """
    ca_dir = Path(ca_dir)
    out = Path(out_dir) if out_dir is not None else ca_dir
    validate_label(name, "party name")
    if name == "ca":
        raise ValueError("party name 'ca' is reserved")
    if role != "coordinator" and hostnames:
        raise ValueError("hostnames only apply to the coordinator certificate")
    ca_key, ca_cert = _load_ca(ca_dir)

    creds = Credentials(cert=out / f"{name}.pem", key=out / f"{name}.key", ca=out / CA_CERT_FILE)
    _check_not_existing([creds.cert, creds.key], overwrite, f"Party {name!r} already has credentials in {out}.")
    key, cert = _make_leaf(
        ca_key,
        ca_cert,
        role=role,
        name=name,
        department=department,
        hostnames=hostnames,
        days=days,
    )
    out.mkdir(parents=True, exist_ok=True)
    if out.resolve() != ca_dir.resolve():
        ca_copy = out / CA_CERT_FILE
        if ca_copy.exists() and ca_copy.read_bytes() != (ca_dir / CA_CERT_FILE).read_bytes():
            raise FileExistsError(f"{ca_copy} exists and is a different CA certificate than {ca_dir / CA_CERT_FILE}")
        shutil.copyfile(ca_dir / CA_CERT_FILE, ca_copy)
    _write_key(creds.key, key)
    _write_cert(creds.cert, cert)
    return creds


# --------------------------------------------------------------------------
# gRPC


def server_credentials(creds: Credentials):
    """gRPC server credentials requiring and verifying client certificates."""
    import grpc

    cert, key, ca = creds.load()
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=True)


def channel_credentials(creds: Credentials):
    """gRPC channel credentials: verify the server against the CA, present our certificate."""
    import grpc

    cert, key, ca = creds.load()
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
