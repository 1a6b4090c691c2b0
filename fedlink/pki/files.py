"""A party's PEM files: where they are, and writing them safely."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fedlink.identity import validate_label
from fedlink.files import write_atomic

CA_CERT_FILE = "ca.pem"
CA_KEY_FILE = "ca.key"
CRL_FILE = "crl.pem"
AUDIT_VKEY_FILE = "audit-signing.vkey"  # the log key the coordinator signs checkpoints with, which every party pins
WITNESSES_FILE = "witnesses.toml"  # the project's witnesses and quorum, kept by the CA operator
ISSUED_FILE = "issued.jsonl"  # the CA's index of the certificates it signed


@dataclass(frozen=True)
class Credentials:
    """Paths of one party's PEM files: its certificate, its key, the CA."""

    cert: Path
    key: Path
    ca: Path

    def load(self) -> tuple[bytes, bytes, bytes]:
        """Return ``(cert, key, ca)`` as bytes."""
        return self.cert.read_bytes(), self.key.read_bytes(), self.ca.read_bytes()

    @classmethod
    def of(cls, directory: Path, party: str) -> Credentials:
        """Where *party*'s files are (or go) in *directory*."""
        return cls(cert=directory / f"{party}.pem", key=directory / f"{party}.key", ca=directory / CA_CERT_FILE)


def agent_party_name(department: str) -> str:
    """The party (file / common) name of a department's agent: ``agent-<department>``."""
    return f"agent-{validate_label(department, 'department')}"


def party_folder(directory: Path | str, party: str) -> Path:
    """The folder of a party's own files: *directory* itself, or its `<party>/`
    subfolder when *directory* is a whole demo deployment (`pki init`)."""
    directory = Path(directory)
    own = directory / party
    return own if (own / f"{party}.pem").is_file() else directory


def credentials_for(directory: Path | str, party: str) -> Credentials:
    """Locate an existing party's files in *directory* (its own folder, or the
    folder `pki init` made for every party).

    *party* is a party name as returned by :func:`init_pki` (``"coordinator"``,
    ``"agent-population"``, ``"operator"`` ...).  Raises ``FileNotFoundError``
    naming the first missing file.
    """
    validate_label(party, "party name")
    if not directory.is_dir():
        raise FileNotFoundError(f"PKI folder {directory} does not exist (`fedlink pki init` makes one; "
                                "a department gets its folder from the operator)")
    creds = Credentials.of(party_folder(directory, party), party)
    for what, path in (("certificate", creds.cert), ("private key", creds.key), ("CA certificate", creds.ca)):
        if not path.is_file():
            raise FileNotFoundError(
                f"{what} for party {party!r} not found: {path} "
                "(make it with `fedlink pki request`, have the CA operator `fedlink pki sign` it)"
            )
    return creds


def write_key(path: Path, key) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_atomic(path, pem, 0o600)


def write_cert(path: Path, cert: x509.Certificate) -> None:
    write_atomic(path, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def check_not_existing(paths: Iterable[Path], overwrite: bool, hint: str) -> None:
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


def load_ca(ca_dir: Path):
    cert_path, key_path = ca_dir / CA_CERT_FILE, ca_dir / CA_KEY_FILE
    for what, path in (("CA certificate", cert_path), ("CA private key", key_path)):
        if not path.is_file():
            raise FileNotFoundError(f"{what} not found: {path} (the CA folder holds ca.pem and ca.key)")
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
