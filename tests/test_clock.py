"""A coordinator whose wall clock steps, with libfaketime (scripts/faketime)
preloaded into a real coordinator process and stepped while it runs.

Stepped back: runs are still ordered by their number, so agents get the
latest run's flags and the next run is compared with the run before it (its
flags continue, none is new again); the step is reported in the log and by
an audit event; audit times and signed tree heads never go back. Stepped
ahead: a schedule does not fire early (the scheduler keeps the time it has
counted since the start), and the step is reported."""
from __future__ import annotations

import json
import subprocess
import time
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import pytest

from agents.client import Agent
from agents.config import load_config
from conftest import REFERENCE_DATE
from dbutil import query
from fedlink.checkpoint import parse_checkpoint
from fedlink.officer import Officer
from fedlink.operator import Operator
from fedlink.schema import Project
from procs import CoordinatorProcess, agent_toml

ROOT = Path(__file__).resolve().parents[1]
DEPARTMENTS = ("population", "civil_affairs", "medical_insurance")


@pytest.fixture(scope="session")
def libfaketime() -> str:
    return subprocess.run([str(ROOT / "scripts" / "faketime")], check=True, capture_output=True, text=True,
                          timeout=600).stdout.strip()


@pytest.fixture
def stepped(tmp_path, pki, database, libfaketime):
    """A coordinator on a clock the test steps by writing an offset ("-240", "+40d") to `offset`."""
    offset = tmp_path / "clock-offset"
    offset.write_text("+0\n")
    env = {"LD_PRELOAD": libfaketime, "FAKETIME_TIMESTAMP_FILE": str(offset), "FAKETIME_NO_CACHE": "1",
           "FAKETIME_DONT_FAKE_MONOTONIC": "1"}  # a wall-clock step leaves the boot-time clock alone
    site = CoordinatorProcess(tmp_path, pki, database, env=env, args=("--schedule-poll", "0.3"))
    site.offset = offset
    yield site
    site.kill()


def events(database, kind: str) -> list[dict]:
    return [json.loads(b) for (b,) in query(database, "select body from audit_events where kind = :k order by seq",
                                            k=kind)]


def _checkpoint(officer):
    from fedlink.note import parse

    return parse_checkpoint(parse(officer.checkpoint().checkpoint).text)


def test_a_clock_stepped_back_orders_runs_by_number_and_is_reported(stepped, pki, database, scenario,
                                                                    secret_file, tmp_path):
    with Operator.connect(stepped.address, pki) as op:
        op.create_project(Project.default("pilot", reference_date=REFERENCE_DATE))
    configs = {}
    for d in DEPARTMENTS:
        configs[d] = agent_toml(tmp_path, pki, d, stepped.address, scenario / f"{d}.csv", secret_file,
                                batch_size=500)
        with Agent(load_config(configs[d]), show_progress=False) as agent:
            agent.upload()
    with Operator.connect(stepped.address, pki) as op, Officer.connect(stepped.address, pki) as officer:
        first = op.start_run("pilot", REFERENCE_DATE)
        assert op.watch(first) == "done"
        head_before = _checkpoint(officer)
        stepped.offset.write_text("-240\n")  # four minutes back (certificates are backdated five)
        time.sleep(0.2)
        second = op.start_run("pilot", "2025-07-31")  # a month on
        assert op.watch(second) == "done"
        head_after = _checkpoint(officer)
    (c1, n1), (c2, n2) = [query(database, "select created_at, number from runs where run_id = :r", r=r)[0]
                          for r in (first, second)]
    assert c2 < c1 and (n1, n2) == (1, 2)  # the clock did step: by time, the second run is older
    with Agent(load_config(configs["population"]), show_progress=False) as agent:
        pulled = agent.pull_flags()
    assert pulled and {f.run_id for f in pulled} == {second}
    statuses = set(query(database, "select status, since from flags where run_id = :r", r=second))
    assert statuses == {("continuing", REFERENCE_DATE)}  # compared with the first run, not with nothing
    # Both watchers of the clock report it: the store (against the last audit event) and the scheduler.
    reported = {e["actor"]: e["details"] for e in events(database, "clock.stepped")}
    assert set(reported) == {"coordinator", "coordinator:scheduler"}
    assert all(d["direction"] == "back" and -245 < d["seconds"] < -235 for d in reported.values())
    times = [ts for (ts,) in query(database, "select ts from audit_events order by seq")]
    assert times == sorted(times)
    assert head_after.size > head_before.size  # checkpoints carry no time: the log only grew
    assert "the clock is" in stepped.log.read_text() and "stepped back" in stepped.log.read_text()


def test_a_clock_stepped_ahead_does_not_fire_a_schedule_early(stepped, pki, database, scenario, secret_file,
                                                              tmp_path):
    with Operator.connect(stepped.address, pki) as op:
        op.create_project(Project.default("pilot", reference_date=REFERENCE_DATE))
    config = agent_toml(tmp_path, pki, "population", stepped.address, scenario / "population.csv", secret_file,
                        batch_size=500)
    with Agent(load_config(config), show_progress=False) as agent:
        agent.upload()
    today = date.today()
    start = (today.replace(day=1) + timedelta(days=32)).replace(day=1)  # the first of next month
    with Operator.connect(stepped.address, pki) as op:
        s = op.set_schedule("pilot", "1mo", day=1, at="02:00", start=start.isoformat())
        assert s.next_due == f"{start.isoformat()}T02:00:00Z"
        stepped.offset.write_text("+40d\n")  # past the occurrence, by a wrong clock
        time.sleep(3)  # ten scheduler polls
        assert op.schedule("pilot").next_due == s.next_due  # neither fired nor skipped
    assert events(database, "run.start") == []
    reported = events(database, "clock.stepped")
    assert [e["details"]["direction"] for e in reported] == ["ahead"]
    assert reported[0]["actor"] == "coordinator:scheduler" and reported[0]["details"]["seconds"] > 39 * 86400


def test_a_coordinator_clock_before_the_agents_certificate_is_named_to_the_agent(stepped, pki, database, scenario,
                                                                                secret_file, tmp_path):
    """The coordinator's clock stepped two days back: it refuses every agent's certificate during the TLS
    handshake, which gRPC shows the agent only as "unavailable". The agent, finding every certificate valid by
    its own clock, names its certificate, its validity and its clock, and the coordinator's clock as the
    likely cause (exit 5, no traceback)."""
    from procs import FEDLINK

    config = agent_toml(tmp_path, pki, "population", stepped.address, scenario / "population.csv", secret_file,
                        retries=1)
    stepped.offset.write_text("-2d\n")  # read at every handshake (FAKETIME_NO_CACHE)
    done = subprocess.run([*FEDLINK, "agent", "upload", "--quiet", "--config", str(config)], capture_output=True,
                          text=True, timeout=120)
    said = " ".join(done.stderr.split())
    cert = load_config(config).tls.cert
    assert done.returncode == 5 and "Traceback" not in done.stderr, done.stderr
    assert f"closed the connection once it had this party's certificate {cert} (valid from" in said
    assert "inside that window): the coordinator's clock is most likely outside that window" in said


def _reissued(pki: Path, party: str, out: Path, not_before, not_after) -> Path:
    """The party's certificate signed again by the project CA with another validity window."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    from fedlink.pki import credentials_for
    from fedlink.pki.issuing import CA_FOLDER

    creds = credentials_for(pki, party)
    cert = x509.load_pem_x509_certificate(creds.cert.read_bytes())
    ca_key = serialization.load_pem_private_key((pki / CA_FOLDER / "ca.key").read_bytes(), None)
    builder = (x509.CertificateBuilder().subject_name(cert.subject).issuer_name(cert.issuer)
               .public_key(cert.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(not_before).not_valid_after(not_after))
    for extension in cert.extensions:
        builder = builder.add_extension(extension.value, extension.critical)
    out.write_bytes(builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    return out


def test_an_expired_agent_certificate_is_named_with_its_date(coordinator, project, pki, scenario, secret_file,
                                                             tmp_path):
    """An agent certificate whose window ended yesterday: the coordinator refuses it in the handshake, and
    the agent says which file expired on which date, exit 5 (unreachable), at once, no traceback."""
    from datetime import datetime, timezone

    from procs import FEDLINK

    now = datetime.now(timezone.utc)
    expired = _reissued(pki, "agent-population", tmp_path / "expired.pem", now - timedelta(days=30),
                        now - timedelta(days=1))
    config = load_config(agent_toml(tmp_path, pki, "population", coordinator.address, scenario / "population.csv",
                                    secret_file, retries=1, log_key=coordinator.audit_key.with_suffix(".vkey")))
    path = replace(config, tls=replace(config.tls, cert=expired)).write()
    done = subprocess.run([*FEDLINK, "agent", "upload", "--quiet", "--config", str(path)], capture_output=True,
                          text=True, timeout=120)
    said = " ".join(done.stderr.split())
    assert done.returncode == 5 and "Traceback" not in done.stderr, done.stderr
    assert f"the certificate {expired} expired on {now - timedelta(days=1):%Y-%m-%d %H:%M} UTC" in said, said
    assert "renew it" in said


def test_the_agent_names_the_coordinators_clock_read_from_its_health_endpoint(tmp_path, pki, database, scenario,
                                                                            secret_file, libfaketime):
    """As above, with the coordinator's plain /healthz in the agent's config: the agent reads the
    coordinator's clock from its HTTP Date header (no certificate needed) and says it reads two days before
    the certificate's window, so the operator knows which clock to fix."""
    from datetime import datetime, timezone

    from procs import FEDLINK, free_port

    offset = tmp_path / "clock-offset"
    offset.write_text("+0\n")
    env = {"LD_PRELOAD": libfaketime, "FAKETIME_TIMESTAMP_FILE": str(offset), "FAKETIME_NO_CACHE": "1",
           "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
    health = free_port()
    site = CoordinatorProcess(tmp_path, pki, database, env=env, args=("--health-port", str(health)))
    try:
        config = load_config(agent_toml(tmp_path, pki, "population", site.address, scenario / "population.csv",
                                        secret_file, retries=1))
        url = f"http://127.0.0.1:{health}/healthz"
        path = replace(config, coordinator_health=url).write()
        offset.write_text("-2d\n")
        done = subprocess.run([*FEDLINK, "agent", "upload", "--quiet", "--config", str(path)], capture_output=True,
                              text=True, timeout=120)
    finally:
        site.kill()
    said = " ".join(done.stderr.split())
    assert done.returncode == 5 and "Traceback" not in done.stderr, done.stderr
    assert f"closed the connection once it had this party's certificate {config.tls.cert} (valid from" in said
    theirs = (datetime.now(timezone.utc) - timedelta(days=2)).strftime("%Y-%m-%d")
    assert f"the coordinator's clock reads {theirs}" in said and f"({url}), before that window" in said, said
    assert "set the coordinator's clock right (NTP)" in said
