"""The commands a user types, as real processes: pki init, coordinator serve,
project create, agent keygen/upload/flags, run start/report, audit verify;
Ctrl-C on the coordinator in the middle of an upload; the exit codes and the
one-line message of a side whose dependencies are not installed."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from dbutil import db_errors, dbapi

FEDLINK = [sys.executable, "-m", "fedlink.cli"]


def fedlink(*args, cwd: Path, check: bool = True, timeout: int = 120) -> subprocess.CompletedProcess:
    done = subprocess.run([*FEDLINK, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(cwd: Path, port: int, grace: float = 10.0, database: str | Path = "coordinator.sqlite",
          *extra: str, env: dict | None = None) -> subprocess.Popen:
    proc = subprocess.Popen([*FEDLINK, "coordinator", "serve", "--listen", f"127.0.0.1:{port}", "--pki", "pki",
                             "--database", str(database), "--grace", str(grace), *extra], cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    from fedlink.pki import credentials_for
    from server.serve import wait_serving

    if wait_serving(f"127.0.0.1:{port}", credentials_for(cwd / "pki", "officer"), 30, alive=lambda: proc.poll() is None):
        return proc
    proc.kill()
    raise AssertionError(f"coordinator did not start: {proc.stderr.read()}")


def agent_toml(work: Path, department: str, port: int, extract: Path, batch_size: int = 500) -> Path:
    from agents.config import AgentConfig
    from fedlink.pki import credentials_for

    work = work.resolve()
    return AgentConfig(
        path=work / f"{department}.toml", department=department, project="pilot", coordinator=f"127.0.0.1:{port}",
        extract=Path(extract).resolve(), secret_file=work / "project.secret",
        ref_key_file=work / f"{department}.refkey", state_dir=work / f"state-{department}", batch_size=batch_size,
        tls=credentials_for(work / "pki", f"agent-{department}"),
        audit_key=work / "pki" / f"agent-{department}" / "audit-signing.vkey",
        witnesses=work / "pki" / f"agent-{department}" / "witnesses.toml").write()


OFFICER = ("--log-key", "pki/officer/audit-signing.vkey", "--witnesses", "pki/officer/witnesses.toml",
           "--state", "officer-state")


def witness_ceremony(site: Path, configs: list[Path], address: str) -> None:
    """What the README's operator section says: every agent and the officer send their
    witness key, the CA operator lists them (quorum 1) and delivers the file again with
    each party's bundle, the officer witnesses first."""
    keys = [fedlink("agent", "witness-key", "--config", c, cwd=site).stdout.strip() for c in configs]
    keys.append(fedlink("audit", "witness-key", "--state", "officer-state", cwd=site).stdout.strip())
    listed = fedlink("audit", "witnesses", "pki/ca/witnesses.toml", "--quorum", "1",
                     *[arg for key in keys for arg in ("--add", key)], cwd=site)
    assert "quorum 1" in listed.stderr and "agent-population" in listed.stderr
    for party in ["coordinator", "officer", *(f"agent-{c.stem}" for c in configs)]:
        fedlink("pki", "bundle", f"pki/{party}/{party}.pem", "--ca", "pki/ca", "--out", f"pki/{party}", cwd=site)
    witnessed = fedlink("audit", "witness", *OFFICER, "--coordinator", address, "--pki", "pki", cwd=site)
    assert "cosigned" in witnessed.stderr


@pytest.fixture
def site(tmp_path, scenario, database):
    """A working folder with a PKI, a project secret and project.toml; the
    coordinator's database is database_of(site) (tests/dbutil.py)."""
    departments = "population,civil_affairs,medical_insurance,education"
    fedlink("pki", "init", "pki", "--departments", departments, cwd=tmp_path)
    fedlink("secret", "new", "--out", "project.secret", cwd=tmp_path)
    (tmp_path / "project.toml").write_text(
        f'project_id = "pilot"\nreference_date = "2025-06-30"\ndepartments = [{", ".join(repr(d) for d in departments.split(","))}]\n'
        '[schema]\nthreshold = 0.75\n'.replace("'", '"'))
    _site_database[tmp_path] = database
    return tmp_path


_site_database: dict[Path, str | Path] = {}


def database_of(site: Path) -> str | Path:
    return _site_database[site]


def test_the_commands_of_the_readme_work_end_to_end(site, scenario):
    port = free_port()
    coordinator = serve(site, port, database=database_of(site))
    try:
        address = f"127.0.0.1:{port}"
        fedlink("project", "create", "project.toml", "--coordinator", address, "--pki", "pki", cwd=site)
        departments = ("population", "civil_affairs", "medical_insurance", "education")
        configs = [agent_toml(site, d, port, scenario / f"{d}.csv") for d in departments]
        witness_ceremony(site, configs, address)
        for config in configs:
            fedlink("agent", "keygen", "--config", config, cwd=site)
            out = fedlink("agent", "upload", "--config", config, "--quiet", cwd=site)
            assert "uploaded and committed" in out.stdout  # results on stdout, progress and logs on stderr
        run = fedlink("run", "start", "pilot", "--coordinator", address, "--pki", "pki", cwd=site)
        run_id = run.stdout.strip().splitlines()[-1]
        report = fedlink("run", "report", run_id, "--json", "--coordinator", address, "--pki", "pki", cwd=site)
        assert '"state": "done"' in report.stdout
        flags = fedlink("agent", "flags", "--config", site / "population.toml", "--out", "worklist.csv", cwd=site)
        assert "flags written" in flags.stdout and (site / "worklist.csv").exists()
        verify = fedlink("audit", "verify", *OFFICER, "--pki", "pki", "--coordinator", address, cwd=site)
        assert "audit log verifies" in verify.stderr and "agent-population" in verify.stderr
        log = fedlink("audit", "log", "--json", "--kind", "upload.commit", "--coordinator", address, "--pki", "pki",
                      cwd=site)
        lines = [json.loads(line) for line in log.stdout.splitlines()]
        assert len(lines) == 4 and all(datetime.fromisoformat(e["time"]).tzinfo for e in lines)
        assert all(isinstance(e["details"]["records"], int) for e in lines)
    finally:
        coordinator.send_signal(signal.SIGINT)
        coordinator.wait(timeout=30)
    assert coordinator.returncode == 0


def test_ctrl_c_mid_upload_loses_nothing_and_the_agent_resumes(site, scenario):
    port = free_port()
    total = len((scenario / "population.csv").read_text(encoding="utf-8").splitlines()) - 1
    # The coordinator holds batch total//4 a moment (server/faults.py), so the Ctrl-C lands mid-upload
    # however fast the agent sends and the store commits.
    cut, reached = total // 4, site / "reached"
    coordinator = serve(site, port, grace=0.2, database=database_of(site),  # a short grace cuts the stream
                        env={"FEDLINK_FAULT_PAUSE": f"upload.batch.{cut}", "FEDLINK_FAULT_PAUSE_ONCE": "1",
                             "FEDLINK_FAULT_PAUSE_S": "1", "FEDLINK_FAULT_FILE": str(reached)})
    address = f"127.0.0.1:{port}"
    fedlink("project", "create", "project.toml", "--coordinator", address, "--pki", "pki", cwd=site)
    config = agent_toml(site, "population", port, scenario / "population.csv", batch_size=1)
    witness_ceremony(site, [config], address)
    fedlink("agent", "keygen", "--config", config, cwd=site)
    agent = subprocess.Popen([*FEDLINK, "agent", "upload", "--config", str(config), "--quiet"], cwd=site,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def stored() -> int:
        try:
            with dbapi(database_of(site)) as db:
                return db.execute("select count(*) from records").fetchone()[0]
        except db_errors():
            return 0

    deadline = time.time() + 60
    while time.time() < deadline and not (reached.exists() and stored() >= cut):
        time.sleep(0.005)
    coordinator.send_signal(signal.SIGINT)  # Ctrl-C: the batch being stored commits, then it stops
    coordinator.wait(timeout=30)
    assert coordinator.returncode == 0
    at_stop = stored()
    assert 0 < at_stop < total
    coordinator = serve(site, port, database=database_of(site))  # back within the agent's retry backoff
    try:
        out, err = agent.communicate(timeout=120)
        assert agent.returncode == 0, err
        assert "retrying" in err and "resumes" in err
        assert stored() == total
        with dbapi(database_of(site)) as db:
            refs = db.execute("select count(distinct ref) from records").fetchone()[0]
        assert refs == total
    finally:
        coordinator.send_signal(signal.SIGINT)
        coordinator.wait(timeout=30)


def without(module: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`fedlink ARGS` in an install that lacks `module` (as if its extra were not installed)."""
    code = f"import sys; sys.modules[{module!r}] = None; sys.argv = ['fedlink', *{list(args)!r}]; " \
           "from fedlink.cli import main; main()"
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("module, args, says", [
    ("sqlalchemy", ("coordinator", "serve"), "`coordinator serve` needs the coordinator extra: "
                                             "pip install 'fedlink[coordinator]'"),
    ("alembic", ("coordinator", "migrate", "--database", "x.sqlite"), "`coordinator migrate` needs the coordinator "
                                                                      "extra: pip install 'fedlink[coordinator]'"),
    ("pandas", ("agent", "upload", "--config", "a.toml"), "`agent upload` needs the agent extra: "
                                                          "pip install 'fedlink[agent]'"),
])
def test_a_side_not_installed_says_which_extra_in_one_line(tmp_path, module, args, says):
    done = without(module, *args, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: {says}"


def test_known_errors_exit_with_their_code_and_one_line(tmp_path):
    missing = fedlink("agent", "keygen", "--config", "nope.toml", cwd=tmp_path, check=False)
    assert missing.returncode == 2 and missing.stderr.strip() == "error: nope.toml: no such config file"
    fedlink("pki", "init", "pki", "--departments", "population", cwd=tmp_path)
    again = fedlink("pki", "init", "pki", "--departments", "population", cwd=tmp_path, check=False)
    assert again.returncode == 2 and "refusing to overwrite" in again.stderr and "Traceback" not in again.stderr
    down = fedlink("run", "start", "pilot", "--pki", "pki", "--coordinator", f"127.0.0.1:{free_port()}",
                   cwd=tmp_path, check=False)
    assert down.returncode == 5 and "coordinator unavailable: UNAVAILABLE" in down.stderr
    (tmp_path / "bad.toml").write_text('project_id = "p"\ndepartments = []\n')
    bad = fedlink("project", "create", "bad.toml", "--pki", "pki", cwd=tmp_path, check=False)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
