"""Creating a PKI for every party of a project, and issuing one more party from it."""
from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from fedlink.identity import validate_label
from fedlink.pki.certificates import CA_DAYS, LEAF_DAYS, make_ca, make_leaf
from fedlink.pki.files import (
    CA_CERT_FILE,
    CA_KEY_FILE,
    Credentials,
    agent_party_name,
    check_not_existing,
    load_ca,
    write_cert,
    write_key,
)


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
    check_not_existing(
        targets,
        overwrite,
        f"{directory} already holds a fedlink PKI; use issue() to add a party to it.",
    )

    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = make_ca(ca_days)
    write_key(directory / CA_KEY_FILE, ca_key)
    write_cert(directory / CA_CERT_FILE, ca_cert)

    result: dict[str, Credentials] = {}
    for party, role, department in parties:
        key, cert = make_leaf(
            ca_key,
            ca_cert,
            role=role,
            name=party,
            department=department,
            hostnames=hostnames if role == "coordinator" else (),
            days=days,
        )
        creds = Credentials.of(directory, party)
        write_key(creds.key, key)
        write_cert(creds.cert, cert)
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
    ca_key, ca_cert = load_ca(ca_dir)

    creds = Credentials.of(out, name)
    check_not_existing([creds.cert, creds.key], overwrite, f"Party {name!r} already has credentials in {out}.")
    key, cert = make_leaf(
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
    write_key(creds.key, key)
    write_cert(creds.cert, cert)
    return creds
