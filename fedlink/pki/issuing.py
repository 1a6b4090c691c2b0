"""A whole demo deployment in one folder: the key ceremony of `ceremony`,
played for every party at once (tests, `fedlink demo`, a pilot's first day).

    DIR/ca/            ca.pem ca.key crl.pem issued.jsonl audit-signing.vkey witnesses.toml  (the CA operator's, offline)
    DIR/coordinator/   coordinator.pem/.key ca.pem crl.pem audit-signing.key/.pub/.vkey witnesses.toml
    DIR/<party>/       <party>.pem/.key ca.pem crl.pem audit-signing.vkey witnesses.toml  (every other party)

The witnesses file starts with the default quorum and no witness: each
department and officer sends its witness key, the CA operator lists them
(`fedlink audit witnesses DIR/ca/witnesses.toml --add ...`) and delivers the
file again.

Each party's folder holds its own key and public files only: the CA key is
never in the coordinator's folder, nor any key in another party's."""
from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from fedlink.identity import validate_label
from fedlink.pki.ceremony import AUDIT_KEY_FILE, bundle, request, sign
from fedlink.pki.certificates import CA_DAYS, LEAF_DAYS, make_ca
from fedlink.pki.files import CA_CERT_FILE, CA_KEY_FILE, WITNESSES_FILE, Credentials, agent_party_name, write_cert, write_key
from fedlink.pki.revocation import write_crl

CA_FOLDER = "ca"


def new_ca(ca_dir: Path | str, *, days: int = CA_DAYS) -> Path:
    """A CA folder: its certificate, its key (mode 0600) and an empty CRL."""
    ca_dir = Path(ca_dir)
    if (ca_dir / CA_KEY_FILE).exists():
        raise FileExistsError(f"{ca_dir} already holds a CA key; sign further requests with it (`fedlink pki "
                              "sign`), a new CA would make every issued certificate untrusted")
    ca_dir.mkdir(parents=True, exist_ok=True)
    key, cert = make_ca(days)
    write_key(ca_dir / CA_KEY_FILE, key)
    write_cert(ca_dir / CA_CERT_FILE, cert)
    write_crl(ca_dir, {})
    return ca_dir


def init_pki(
    directory: Path | str,
    departments: Sequence[str],
    *,
    operators: Sequence[str] = ("operator",),
    officers: Sequence[str] = ("officer",),
    consoles: Sequence[str] = ("console",),
    hostnames: Sequence[str] = (),
    days: int = LEAF_DAYS,
    ca_days: int = CA_DAYS,
    overwrite: bool = False,
) -> dict[str, Credentials]:
    """Create a CA and every party of a project under *directory* (layout above).

    Refuses (``FileExistsError``) to replace an existing deployment unless
    *overwrite* is true. Returns ``{party name: Credentials}``.
    """
    directory = Path(directory)
    if any(isinstance(v, str) for v in (departments, operators, officers, consoles, hostnames)):
        raise TypeError("departments, operators, officers, consoles and hostnames must be sequences of strings, "
                        "not a string")
    # (party name, role, department)
    parties: list[tuple[str, str, str]] = [("coordinator", "coordinator", "")]
    parties += [(agent_party_name(d), "agent", d) for d in departments]
    parties += [(validate_label(n, "operator name"), "operator", "") for n in operators]
    parties += [(validate_label(n, "officer name"), "officer", "") for n in officers]
    parties += [(validate_label(n, "console name"), "console", "") for n in consoles]
    seen: dict[str, str] = {}
    for party, role, _ in parties:
        if party == CA_FOLDER:
            raise ValueError(f"party name {party!r} is reserved")
        if party in seen:
            raise ValueError(f"duplicate party name {party!r} ({seen[party]} and {role})")
        seen[party] = role
    folders = [directory / CA_FOLDER] + [directory / party for party, _, _ in parties]
    existing = [f for f in folders if f.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"refusing to overwrite existing PKI files: {', '.join(map(str, existing))}. "
                              f"{directory} already holds a fedlink PKI; add a party with `fedlink pki request` "
                              "and `fedlink pki sign`. Pass overwrite=True to replace it (every certificate "
                              "issued by a replaced CA stops being trusted).")
    for folder in existing:
        shutil.rmtree(folder)

    ca_dir = new_ca(directory / CA_FOLDER, days=ca_days)
    from fedlink.witnessing import DEFAULT_QUORUM, Roster

    Roster(ca_dir / WITNESSES_FILE, DEFAULT_QUORUM, ()).write()
    coordinator = directory / "coordinator"
    result: dict[str, Credentials] = {}
    for party, role, department in parties:  # the coordinator first: its audit key goes in every bundle
        folder = directory / party
        csr = request(folder, role, name=party, department=department,
                      hostnames=hostnames if role == "coordinator" else ())
        audit_key = coordinator / AUDIT_KEY_FILE if role == "coordinator" else None
        sign(csr, ca_dir, folder / f"{party}.pem", days=days,
             audit_key=audit_key.with_suffix(".pub") if audit_key else None)
        csr.unlink()
        bundle(folder / f"{party}.pem", ca_dir, folder)
        result[party] = Credentials.of(folder, party)
    return result
