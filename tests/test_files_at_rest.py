"""Files at rest: every file the real `fedlink` processes write (a PKI, a
synthetic scenario, the coordinator's SQLite store with its -wal and -shm, an
agent's state, a worklist, an audit export, bench outputs) is 0600 and every
folder 0700, though the processes start under a umask that would make them
world-readable; a database made readable before is made private at start."""
from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from dbutil import BACKEND

from fedlink.operator import Operator
from agents.secret import new_secret
from bench.harness import officer_witnesses
from fedlink.audit import vkey_path
from fedlink.schema import Project
from procs import FEDLINK, CoordinatorProcess, agent_toml

DEPARTMENTS = ("population", "medical_insurance")
# Public by design (certificates, the CRL, the audit key's public half): no personal data, no secret.
PUBLIC = ("-----BEGIN CERTIFICATE-----", "-----BEGIN X509 CRL-----", "-----BEGIN PUBLIC KEY-----")


def public(path: Path) -> bool:
    """A file every party receives in its bundle: a PEM above, the log's verifier key
    (audit-signing.vkey) or the project's witnesses file (public keys and the quorum)."""
    from fedlink.note import NoteError, VerifierKey
    from fedlink.witnessing import Roster

    text = path.read_text(errors="replace")
    if text.startswith(PUBLIC):
        return True
    if path.suffix == ".vkey":
        try:
            return VerifierKey.parse(text) is not None
        except NoteError:
            return False
    if path.name == "witnesses.toml":
        try:
            return Roster.load(path) is not None
        except ValueError:
            return False
    return False

pytestmark = pytest.mark.skipif(BACKEND != "sqlite", reason="the coordinator's file store is SQLite")


def fedlink(*args: str, cwd: Path) -> str:
    done = subprocess.run([*FEDLINK, *args], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def modes(root: Path, skip: set[Path]) -> dict[Path, int]:
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            if path not in skip and not path.is_symlink():
                found[path] = stat.S_IMODE(path.stat().st_mode)
    return found


def test_every_file_fedlink_writes_is_private(tmp_path):
    old = os.umask(0o022)  # what most systems start with: files 0644, folders 0755
    try:
        pki, scenario = tmp_path / "pki", tmp_path / "scenario"
        fedlink("pki", "init", str(pki), "--departments", ",".join(DEPARTMENTS), cwd=tmp_path)
        fedlink("synth", str(scenario), "--persons", "150", "--seed", "5", cwd=tmp_path)
        (tmp_path / "inputs").mkdir()
        secret = new_secret(tmp_path / "inputs" / "project.secret")
        configs = {d: agent_toml(tmp_path / "inputs", pki, d, "127.0.0.1:0", scenario / f"{d}.csv", secret)
                   for d in DEPARTMENTS}
        inputs = set(modes(tmp_path / "inputs", set())) | {tmp_path / "inputs"}
        coordinator = CoordinatorProcess(tmp_path / "inputs", pki, tmp_path / "store" / "coordinator.sqlite")
        try:
            for d, config in configs.items():
                config.write_text(config.read_text().replace("127.0.0.1:0", coordinator.address))
            with Operator.connect(coordinator.address, pki) as op:
                op.create_project(Project.default("pilot", departments=DEPARTMENTS, reference_date="2025-06-30"))
            # The quorum (1): the officer witnesses first, so that the first uploader finds a cosignature.
            officer_witnesses(coordinator.address, pki, vkey_path(coordinator.audit_key))
            with Operator.connect(coordinator.address, pki) as op:
                for config in configs.values():
                    fedlink("agent", "upload", "--config", str(config), "--quiet", cwd=tmp_path)
                assert op.watch(op.start_run("pilot", "2025-06-30")) == "done"
            worklist = tmp_path / "worklists" / "population.csv"
            fedlink("agent", "flags", "--config", str(configs["population"]), "--out", str(worklist), cwd=tmp_path)
            fedlink("audit", "export", str(tmp_path / "export"), "--pki", str(pki), "--coordinator",
                    coordinator.address, cwd=tmp_path)
            store = tmp_path / "store" / "coordinator.sqlite"
            assert Path(f"{store}-wal").exists() and Path(f"{store}-shm").exists()
            written = modes(tmp_path, inputs | {coordinator.log})
        finally:
            coordinator.stop()
        fedlink("bench", str(scenario), "--out", str(tmp_path / "bench"), cwd=tmp_path)
        written.update(modes(tmp_path / "bench", set()))
    finally:
        os.umask(old)

    for path in (worklist, store, tmp_path / "export" / "events.jsonl", pki / "ca" / "ca.key", scenario / "truth.csv",
                 tmp_path / "bench" / "flags.csv", tmp_path / "inputs" / "agent-population" / "state"):
        assert path in written, path  # each kind of file the issue names was written and is checked below
    loose = {}
    for path, mode in written.items():
        if path.is_dir():
            if mode != 0o700:
                loose[path] = oct(mode)
        elif mode != 0o600 and not (mode == 0o644 and public(path)):
            loose[path] = oct(mode)
    assert not loose, f"{len(loose)} of {len(written)} paths are not private: {loose}"


def test_a_database_made_readable_before_is_made_private_at_start(tmp_path, pki):
    store = tmp_path / "coordinator.sqlite"
    first = CoordinatorProcess(tmp_path, pki, store)
    first.stop()
    os.chmod(store, 0o644)
    again = CoordinatorProcess(tmp_path, pki, store)
    try:
        assert stat.S_IMODE(store.stat().st_mode) == 0o600
        assert "was readable by others" in again.log.read_text()
    finally:
        again.stop()
