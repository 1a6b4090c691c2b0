"""Real processes for the fault and load tests: a coordinator started with
`fedlink coordinator serve` (its log in a file, so a full pipe never stalls
it), killed with SIGKILL or stopped with SIGINT; agents run as
`fedlink agent ...`; agent TOMLs on the session's PKI."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


FEDLINK = [sys.executable, "-m", "fedlink.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class CoordinatorProcess:
    """`fedlink coordinator serve` on loopback with mutual TLS."""

    def __init__(self, work: Path, pki: Path, database, *, port: int | None = None, env: dict | None = None,
                 args: tuple[str, ...] = (), witnesses: Path | None = None, audit_key: Path | None = None):
        self.work, self.pki, self.database = Path(work), Path(pki), database
        from fedlink.pki import WITNESSES_FILE, party_folder

        self.witnesses = witnesses or party_folder(self.pki, "coordinator") / WITNESSES_FILE
        self.port = port or free_port()
        # One key per log, as deployed: coordinators sharing a database share it.
        self.audit_key = audit_key or self.work / "log" / "audit-signing.key"
        self.address = f"127.0.0.1:{self.port}"
        self.starts = 0
        self.proc: subprocess.Popen | None = None
        self.start(env=env, args=args)

    @property
    def log(self) -> Path:
        return self.work / f"coordinator-{self.starts}.log"

    def start(self, env: dict | None = None, args: tuple[str, ...] = ()) -> None:
        self.starts += 1
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                [*FEDLINK, "coordinator", "serve", "--listen", self.address, "--pki", str(self.pki),
                 "--database", str(self.database), "--grace", "2", "--audit-key", str(self.audit_key),
                 "--witnesses", str(self.witnesses), *args],
                cwd=self.work, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        self._wait_serving()

    def _wait_serving(self, limit: float = 90) -> None:
        from fedlink.pki import credentials_for
        from server.serve import wait_serving

        if wait_serving(self.address, credentials_for(self.pki, "officer"), limit,
                        alive=lambda: self.proc.poll() is None):
            return
        if self.proc.poll() is not None:
            raise AssertionError(f"coordinator exited with {self.proc.returncode}: {self.log.read_text()}")
        self.kill()
        raise AssertionError(f"coordinator did not start: {self.log.read_text()}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill(self) -> None:
        """kill -9: no grace, no cleanup, as a crash or the OOM killer would."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> int:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode if self.proc else 0


def agent_toml(work: Path, pki: Path, department: str, address: str, extract: Path, secret: Path, *,
               project: str = "pilot", batch_size: int = 500, retries: int = 5, name: str | None = None,
               log_key: Path | None = None, witnesses: Path | None = None) -> Path:
    """An agent TOML in its own folder, with a fresh reference key, pinning the log key
    of a CoordinatorProcess in `work` (or `log_key`)."""
    from agents.config import AgentConfig
    from agents.refs import new_key
    from bench.harness import register_witness
    from fedlink.audit import vkey_path
    from fedlink.pki import WITNESSES_FILE, credentials_for, party_folder

    folder = (Path(work) / (name or f"agent-{department}")).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    pki = Path(pki).resolve()
    path = AgentConfig(
        path=folder / "agent.toml", department=department, project=project, coordinator=address,
        extract=Path(extract).resolve(), secret_file=Path(secret).resolve(),
        ref_key_file=folder / f"{department}.refkey", state_dir=folder / "state",
        audit_key=(log_key or vkey_path(Path(work).resolve() / "log" / "audit-signing.key")),
        witnesses=Path(witnesses or party_folder(pki, f"agent-{department}") / WITNESSES_FILE).resolve(),
        witness_key=register_witness(pki, f"agent-{department}"), batch_size=batch_size, retries=retries,
        tls=credentials_for(pki, f"agent-{department}")).write()
    if not (folder / f"{department}.refkey").exists():
        new_key(folder / f"{department}.refkey")
    return path


def wait_for(predicate, what: str, limit: float = 120, every: float = 0.005):
    """Poll until predicate() is truthy (bounded, so a broken run fails instead of hanging)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def agent_folder(work: Path, department: str, extract: Path, address: str, pki: Path, secret: Path, *,
                 log_key: Path, project: str = "pilot", batch_size: int = 2000) -> Path:
    """A department's folder in the bench layout (pki link, project secret, agent TOML
    pinning the log key `log_key`, a fresh reference key); returns the TOML's path."""
    from agents.refs import new_key
    from bench.harness import write_agent_config

    work.mkdir(parents=True)
    (work / "pki").symlink_to(pki)
    (work / "project.secret").write_text(Path(secret).read_text())
    path = write_agent_config(work, department, extract, address, {}, project=project, batch_size=batch_size,
                              log_key=log_key)
    new_key(work / "agents" / f"{department}.refkey")
    return path
