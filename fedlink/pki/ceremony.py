"""The key ceremony: each party makes its own key and a certificate request
(`request`), the CA operator signs the request (`sign`) and sends back a
bundle (`bundle`): the certificate, the CA certificate, the CRL, the log key
the coordinator signs its audit log's checkpoints with (`audit-signing.vkey`),
which every party pins, and the project's witnesses file (`witnesses.toml`). A private key
is written once, in its owner's folder, and never copied by any of these."""
from __future__ import annotations

import io
import json
import tarfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from fedlink.files import write_atomic
from fedlink.identity import IDENTITY_URI_PREFIX, ROLES, IdentityError, identity_from_certificate, validate_label
from fedlink.pki.certificates import LEAF_DAYS, make_leaf, make_request, new_key
from fedlink.pki.files import (
    AUDIT_VKEY_FILE, CA_CERT_FILE, CRL_FILE, ISSUED_FILE, WITNESSES_FILE, agent_party_name, check_not_existing,
    load_ca, write_cert, write_key,
)

AUDIT_KEY_FILE = "audit-signing.key"


@dataclass(frozen=True)
class Request:
    """What a certificate request asks for, read back from the request itself."""

    role: str
    name: str
    department: str
    hostnames: tuple[str, ...]


def party_name(role: str, name: str = "", department: str = "") -> str:
    """A party's file name: `agent-<department>` for an agent, else its name (default: the role)."""
    if role == "agent":
        return name or agent_party_name(department)
    return validate_label(name or role, f"{role} name")


def request(out: Path | str, role: str, *, name: str = "", department: str = "",
            hostnames: Sequence[str] = ()) -> Path:
    """Write `<party>.key` (mode 0600) and `<party>.csr` in `out`; the coordinator's
    folder also gets its audit signing key, a second key that never signs TLS."""
    out = Path(out)
    party = party_name(role, name, department)
    key_path, csr_path = out / f"{party}.key", out / f"{party}.csr"
    check_not_existing([key_path, csr_path], False, f"{out} already holds a request for {party}.")
    key = new_key()
    csr = make_request(key, role=role, name=party, department=department, hostnames=hostnames)
    out.mkdir(parents=True, exist_ok=True)
    write_key(key_path, key)
    write_atomic(csr_path, csr.public_bytes(serialization.Encoding.PEM), 0o644)
    if role == "coordinator" and not (out / AUDIT_KEY_FILE).exists():
        from fedlink.audit import new_signing_key

        new_signing_key(out / AUDIT_KEY_FILE)
    return csr_path


def read_request(path: Path | str) -> tuple[x509.CertificateSigningRequest, Request]:
    """A request that is signed by the key it names, asking for exactly one fedlink identity."""
    path = Path(path)
    try:
        csr = x509.load_pem_x509_csr(path.read_bytes())
    except FileNotFoundError:
        raise FileNotFoundError(f"certificate request not found: {path}") from None
    except ValueError as e:
        raise ValueError(f"{path}: not a PEM certificate request ({e})") from None
    if not csr.is_signature_valid:
        raise ValueError(f"{path}: the request's signature does not verify; ask the party for a new request")
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise ValueError(f"{path}: the request names no identity (no SubjectAlternativeName)") from None
    uris = [u for u in san.get_values_for_type(x509.UniformResourceIdentifier) if u.startswith(IDENTITY_URI_PREFIX)]
    if len(uris) != 1:
        raise ValueError(f"{path}: a request names exactly one {IDENTITY_URI_PREFIX} identity, this one {len(uris)}")
    role, _, suffix = uris[0][len(IDENTITY_URI_PREFIX):].partition(":")
    if role not in ROLES:
        raise ValueError(f"{path}: unknown role {role!r}; expected one of {ROLES}")
    cns = csr.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    name = str(cns[0].value) if cns else ""
    department = suffix if role == "agent" else ""
    if role != "agent" and name != suffix:
        raise ValueError(f"{path}: the request's common name {name!r} is not its identity's name {suffix!r}")
    hosts = [str(h) for h in san.get_values_for_type(x509.DNSName)]
    hosts += [str(h) for h in san.get_values_for_type(x509.IPAddress)]
    return csr, Request(role, name, department, tuple(hosts))


def sign(csr_path: Path | str, ca_dir: Path | str, out: Path | str, *, days: int = LEAF_DAYS,
         audit_key: Path | str | None = None) -> tuple[x509.Certificate, Request]:
    """Sign a request with the CA in `ca_dir`: the certificate carries the role,
    department and host names the request asked for (the CA operator reads them
    back before sending the certificate). Each certificate issued is listed in
    the CA's `issued.jsonl`. Signing the coordinator's request with its audit
    public key (`audit_key`, audit-signing.pub) keeps the log key every party pins
    in the CA folder for the bundles: `audit-signing.vkey`, named for the log's
    default origin (fedlink.audit.default_origin of this certificate)."""
    ca_dir, out = Path(ca_dir), Path(out)
    csr, asked = read_request(csr_path)
    ca_key, ca_cert = load_ca(ca_dir)
    try:
        cert = make_leaf(ca_key, ca_cert, csr.public_key(), role=asked.role, name=asked.name,
                         department=asked.department, hostnames=asked.hostnames, days=days)
    except IdentityError as e:
        raise ValueError(f"{csr_path}: {e}") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    write_cert(out, cert)
    entry = {"serial": format(cert.serial_number, "x"), "role": asked.role, "name": asked.name,
             "department": asked.department, "hosts": list(asked.hostnames), "issued": int(time.time()),
             "not_after": cert.not_valid_after_utc.isoformat()}
    with (ca_dir / ISSUED_FILE).open("a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")
    if audit_key is not None:
        if asked.role != "coordinator":
            raise ValueError("--audit-key goes with the coordinator's request: it is the coordinator's key")
        write_atomic(ca_dir / AUDIT_VKEY_FILE, (log_key_of(Path(audit_key), out).encode() + "\n").encode(), 0o644)
    return cert, asked


def log_key_of(public_pem: Path, coordinator_cert: Path):
    """The log's verifier key: the coordinator's audit public key under its default origin."""
    from Crypto.PublicKey import ECC

    from fedlink.audit import default_origin
    from fedlink.note import ED25519, VerifierKey

    try:
        key = ECC.import_key(public_pem.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{public_pem}: no such public key (the coordinator's audit-signing.pub)") from None
    except ValueError as e:
        raise ValueError(f"{public_pem}: not an Ed25519 public key ({e})") from None
    if key.curve != "Ed25519":
        raise ValueError(f"{public_pem}: the audit key is Ed25519, this one is {key.curve}")
    return VerifierKey(default_origin(coordinator_cert), ED25519, key.export_key(format="raw"))


def bundle(cert_path: Path | str, ca_dir: Path | str, out: Path | str) -> Path:
    """What the CA operator sends a party: its certificate, the CA certificate,
    the CRL, the log key and the project's witnesses file, as a folder or (for a name ending in
    .tar.gz) one archive; the party adds them to the folder holding its key."""
    cert_path, ca_dir, out = Path(cert_path), Path(ca_dir), Path(out)
    who = identity_from_certificate(cert_path.read_bytes())
    party = who.name
    files = {f"{party}.pem": cert_path.read_bytes(), CA_CERT_FILE: (ca_dir / CA_CERT_FILE).read_bytes()}
    for extra in (CRL_FILE, AUDIT_VKEY_FILE, WITNESSES_FILE):
        if (ca_dir / extra).exists():
            files[extra] = (ca_dir / extra).read_bytes()
    if AUDIT_VKEY_FILE not in files and who.role != "coordinator":
        raise FileNotFoundError(f"{ca_dir / AUDIT_VKEY_FILE} not found: sign the coordinator's request with "
                                "--audit-key first, so that every bundle carries the log key every party pins")
    if out.name.endswith(".tar.gz"):
        out.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(out, "w:gz") as tar:
            for name, data in files.items():
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
                tar.addfile(info, io.BytesIO(data))
        return out
    out.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        write_atomic(out / name, data, 0o644)
    return out
