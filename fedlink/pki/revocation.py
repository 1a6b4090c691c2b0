"""Revocation: the CA operator revokes a certificate (`revoke`), which writes a
new CRL signed by the CA; the coordinator reads that CRL (`RevocationList`)
and refuses every call made with a revoked certificate, reloading the file
whenever it changes, without a restart."""
from __future__ import annotations

import datetime as _dt
import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from fedlink.files import write_atomic
from fedlink.pki.files import CRL_FILE, ISSUED_FILE, load_ca

log = logging.getLogger("fedlink.pki")

# A CRL says when the next one is due; the coordinator warns (it does not lock everyone out) once it is late.
CRL_DAYS = 30


def serial_of(serial_or_cert: str) -> int:
    """A serial given in hex (as `pki sign` prints it), or the serial of a certificate file."""
    path = Path(serial_or_cert)
    if path.is_file():
        return x509.load_pem_x509_certificate(path.read_bytes()).serial_number
    try:
        return int(serial_or_cert.lower().removeprefix("0x").replace(":", ""), 16)
    except ValueError:
        raise ValueError(f"{serial_or_cert!r} is neither a certificate file nor a hexadecimal serial") from None


def write_crl(ca_dir: Path, revoked: dict[int, _dt.datetime], publish: Sequence[Path] = ()) -> bytes:
    ca_key, ca_cert = load_ca(ca_dir)
    now = _dt.datetime.now(_dt.timezone.utc)
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca_cert.subject)
               .last_update(now).next_update(now + _dt.timedelta(days=CRL_DAYS)))
    for serial, when in sorted(revoked.items()):
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build())
    pem = builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
    for path in (ca_dir / CRL_FILE, *publish):
        write_atomic(Path(path), pem, 0o644)
    return pem


def revoke(ca_dir: Path | str, serial_or_cert: str, publish: Sequence[Path] = ()) -> tuple[int, str]:
    """Add a certificate to the CA's CRL and write it (to the CA folder and every
    `publish` path, e.g. the coordinator's crl.pem). Returns (serial, who it was issued to)."""
    ca_dir = Path(ca_dir)
    serial = serial_of(serial_or_cert)
    revoked = {}
    if (ca_dir / CRL_FILE).exists():
        crl = x509.load_pem_x509_crl((ca_dir / CRL_FILE).read_bytes())
        revoked = {r.serial_number: r.revocation_date_utc for r in crl}
    revoked.setdefault(serial, _dt.datetime.now(_dt.timezone.utc))
    write_crl(ca_dir, revoked, publish)
    return serial, issued_to(ca_dir, serial)


def issued_to(ca_dir: Path, serial: int) -> str:
    """Whom the CA's index says a serial was issued to ("" when it is not listed)."""
    index = Path(ca_dir) / ISSUED_FILE
    if index.exists():
        for line in index.read_text(encoding="utf-8").splitlines():
            entry = json.loads(line)
            if int(entry["serial"], 16) == serial:
                return f"{entry['role']}:{entry['department'] or entry['name']}"
    return ""


@dataclass(frozen=True)
class Revoked:
    serial: int
    since: _dt.datetime


class RevocationList:
    """The CRL a coordinator checks every caller against. The file is re-read
    when its modification time or size changes; a CRL that does not verify
    against the CA is refused at start and, later, logged while the last good
    one stays in force."""

    def __init__(self, path: Path, ca_path: Path):
        self.path, self.ca_path = Path(path), Path(ca_path)
        self._stamp: tuple[int, int] | None = None
        self._revoked: dict[int, Revoked] = {}
        self._lock = threading.Lock()
        self._load(strict=True)

    def _load(self, strict: bool) -> None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            if strict:
                raise FileNotFoundError(f"CRL not found: {self.path} (fedlink pki revoke writes it; pki init "
                                        "writes an empty one)") from None
            return
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp == self._stamp:
            return
        try:
            crl = x509.load_pem_x509_crl(self.path.read_bytes())
            ca = x509.load_pem_x509_certificate(self.ca_path.read_bytes())
            if crl.issuer != ca.subject or not crl.is_signature_valid(ca.public_key()):
                raise ValueError("it is not signed by the CA in " + str(self.ca_path))
        except ValueError as e:
            if strict:
                raise ValueError(f"CRL {self.path} is not usable: {e}") from None
            log.error("CRL %s changed but is not usable (%s); the previous CRL stays in force", self.path, e)
            return
        if crl.next_update_utc and crl.next_update_utc < _dt.datetime.now(_dt.timezone.utc):
            log.warning("CRL %s was due for renewal on %s: ask the CA operator for a fresh one",
                        self.path, crl.next_update_utc.date())
        self._revoked = {r.serial_number: Revoked(r.serial_number, r.revocation_date_utc) for r in crl}
        self._stamp = stamp
        log.info("CRL %s loaded: %d revoked certificates", self.path, len(self._revoked))

    def revoked(self, serial: int) -> Revoked | None:
        with self._lock:
            self._load(strict=False)
            return self._revoked.get(serial)

