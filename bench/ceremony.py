"""The key ceremony as the demo plays it, each step as its party would take
it: the CA operator creates the CA; each party makes its key and request in
its own folder; the CA operator signs each request and delivers a bundle
(certificate, CA certificate, CRL, the log key every party pins, the
project's witnesses file, at first with no witness: each department and
officer sends its witness key later and the CA operator delivers the file
again, as bench.harness.register_witness plays it); last, a spare
certificate is issued and revoked, and the new CRL goes to the coordinator."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from fedlink.pki import AUDIT_KEY_FILE, CA_FOLDER, CRL_FILE, WITNESSES_FILE, bundle, new_ca, request, revoke, sign
from fedlink.witnessing import DEFAULT_QUORUM, Roster


def key_ceremony(pki: Path, departments: Sequence[str], say: Callable[[str], None] = lambda _: None,
                 hostnames: Sequence[str] = ()) -> dict[str, Path]:
    """Every party's folder under `pki` (the layout of `fedlink pki init`); {party: folder}."""
    pki = Path(pki)
    ca = new_ca(pki / CA_FOLDER)
    say(f"   CA operator: a new CA in {ca} (its key stays there, offline)")
    Roster(ca / WITNESSES_FILE, DEFAULT_QUORUM, ()).write()
    say(f"   CA operator: the project's witnesses file {ca / WITNESSES_FILE} (quorum {DEFAULT_QUORUM}), in every bundle")
    parties = [("coordinator", "coordinator", "")] + [(f"agent-{d}", "agent", d) for d in departments]
    parties += [("operator", "operator", ""), ("officer", "officer", ""), ("console", "console", ""),
                ("spare", "operator", "")]
    folders = {}
    for party, role, department in parties:
        folder = pki / party
        csr = request(folder, role, name=party, department=department,
                      hostnames=hostnames if role == "coordinator" else ())
        audit = (folder / AUDIT_KEY_FILE).with_suffix(".pub") if role == "coordinator" else None
        cert, _ = sign(csr, ca, folder / f"{party}.pem", audit_key=audit)
        csr.unlink()
        bundle(folder / f"{party}.pem", ca, folder)
        folders[party] = folder
        say(f"   {party:24s} key made in {folder}, request signed (serial {cert.serial_number:x}), bundle delivered")
    serial, who = revoke(ca, str(folders["spare"] / "spare.pem"), [pki / "coordinator" / CRL_FILE])
    say(f"   CA operator: revoked the spare certificate {serial:x} ({who}); the coordinator's CRL now lists it")
    return folders
