"""Everyday mistakes, typed as a user types them (each command a real
process, against a real coordinator on loopback mTLS): no traceback, the
documented exit code (fedlink/cli/base.py, README "Exit codes"), and a
message naming the thing that is wrong. Then the conventions: results on
stdout, times in ISO 8601 with their zone, tables whole when piped, and a
second, different review that says what it replaced."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from agents.client import Agent
from agents.config import load_config
from conftest import REFERENCE_DATE

FEDLINK = [sys.executable, "-m", "fedlink.cli"]
# What an install with only the agent extra lacks (pyproject.toml, coordinator extra).
COORDINATOR_ONLY = ("numba", "sqlalchemy", "alembic", "psycopg", "grpc_health", "grpc_reflection",
                    "prometheus_client", "dask", "distributed")


def fedlink(*args, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*FEDLINK, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env=env)


@pytest.fixture
def site(tmp_path, pki, coordinator, project, agent_config, scenario):
    """A working folder: the session's PKI, a project file for the existing
    project, an agent TOML, an extract in a format no reader takes, a tampered
    audit export."""
    (tmp_path / "pki").symlink_to(pki)
    (tmp_path / "project.toml").write_text(
        f'project_id = "pilot"\nreference_date = "{REFERENCE_DATE}"\n'
        'departments = ["population", "education"]\n[schema]\nthreshold = 0.75\n')
    (tmp_path / "extract.dbf").write_bytes(b"\x03not a format fedlink reads")
    config = agent_config("population", extract=tmp_path / "extract.dbf")
    export = tmp_path / "export"
    done = fedlink("audit", "export", export, "--coordinator", coordinator.address, "--pki", "pki", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = (export / "events.jsonl").read_text(encoding="utf-8").splitlines()
    first = json.loads(lines[0])
    first["body"] = first["body"].replace('"operator:operator"', '"operator:someone-else"')
    (export / "events.jsonl").write_text("\n".join([json.dumps(first)] + lines[1:]) + "\n", encoding="utf-8")
    return tmp_path, coordinator.address, config


def mistakes(address: str, config: Path, log_key: Path):
    c = ("--coordinator", address, "--pki", "pki")
    return [
        # (what a user typed, exit code, what the one message names)
        (("project", "create", "project.toml", *c), 3, ["ALREADY_EXISTS", "'pilot' already exists"]),
        (("project", "create", "no-such.toml", *c), 2, ["no-such.toml", "no such file"]),
        (("run", "start", "no-such-project", *c), 3, ["NOT_FOUND", "'no-such-project'"]),
        (("run", "report", "no-such-run", *c), 3, ["NOT_FOUND", "run 'no-such-run'"]),
        (("run", "watch", "no-such-run", *c), 3, ["NOT_FOUND", "run 'no-such-run'"]),
        (("project", "schedule", "no-such-project", *c), 3, ["NOT_FOUND", "'no-such-project'"]),
        (("run", "start", "pilot", *c, "--party", "agent-population"), 3,
         ["PERMISSION_DENIED", "needs the operator role", "says agent"]),
        (("audit", "log", *c, "--party", "operator"), 3, ["PERMISSION_DENIED", "officer role"]),
        (("run", "start", "pilot", "--coordinator", address, "--pki", "no-pki"), 2,
         ["PKI folder no-pki does not exist"]),
        (("run", "start", "pilot", *c, "--party", "nobody"), 2, ["pki/nobody.pem", "fedlink pki request"]),
        (("agent", "review", "--config", "no-such.toml", "--record-id", "x", "--need", "elderly_alone", "--run",
          "r", "--outcome", "confirmed"), 2, ["no-such.toml: no such config file"]),
        (("agent", "upload", "--config", config, "--quiet"), 2, ["extract.dbf", ".dbf is not one"]),
        (("audit", "log", *c, "--kind", "bogus"), 3, ["kind 'bogus' is not a kind", "upload.commit, "]),
        (("audit", "log", *c, "--since", "yesterday"), 2, ["--since 'yesterday' is not an ISO 8601"]),
        (("audit", "verify", "no-such-export", "--log-key", log_key, "--witnesses", "pki/officer/witnesses.toml", "--state", "officer-state"), 2,
         ["no-such-export/checkpoint"]),
        (("audit", "verify", "export", "--log-key", "no-such.vkey", "--witnesses", "pki/officer/witnesses.toml", "--state", "officer-state"), 2,
         ["no-such.vkey: no such log key"]),
        (("audit", "verify", "export", "--log-key", log_key, "--witnesses", "pki/officer/witnesses.toml", "--state", "officer-state"), 4,
         ["audit log does NOT verify", "event 0"]),
        (("coordinator", "serve", "--listen", address, "--pki", "pki", "--database", "other.sqlite"), 2,
         [f"cannot listen on {address}: the port is in use"]),
        (("run", "start", "pilot", "--coordinator", "127.0.0.1:9", "--pki", "pki"), 5,
         ["coordinator unavailable", "127.0.0.1:9 did not answer"]),
    ]


def test_every_common_mistake_is_one_message_and_its_exit_code(site, coordinator):
    folder, address, config = site
    wrong = []
    from fedlink.audit import vkey_path

    log_key = vkey_path(coordinator.audit_key)  # this log's key, pinned
    for args, code, says in mistakes(address, config, log_key):
        done = fedlink(*args, cwd=folder)
        # One line of ours; gRPC's C core may say something first, in its own format.
        # The coordinator's own operations log (timestamped lines) is on stderr too, by design.
        ours = [line for line in done.stderr.splitlines()
                if line and not re.match(r"[IWEF]\d{4} |\d{4}-\d\d-\d\dT", line)]
        err = ours[0] if len(ours) == 1 else done.stderr
        if ("Traceback" in done.stderr or done.returncode != code or not all(s in err for s in says)
                or not err.startswith("error: ")):
            wrong.append(f"fedlink {' '.join(map(str, args))}: exit {done.returncode} (not {code}): {done.stderr}")
    assert not wrong, "\n".join(wrong)


def test_an_agent_only_install(tmp_path):
    """The coordinator's dependencies made unimportable, as in `pip install fedlink[agent]`:
    `coordinator serve` names the extra, the agent's commands still run."""
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(f"import sys\nfor m in {COORDINATOR_ONLY!r}:\n    sys.modules[m] = None\n")
    env = {"PYTHONPATH": str(shim), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    serve = fedlink("coordinator", "serve", "--pki", "pki", cwd=tmp_path, env=env)
    assert serve.returncode == 2 and "Traceback" not in serve.stderr
    assert serve.stderr.strip() == "error: `coordinator serve` needs the coordinator extra: " \
                                   "pip install 'fedlink[coordinator]'"
    keygen = fedlink("agent", "keygen", "--config", "a.toml", cwd=tmp_path, env=env)
    assert keygen.returncode == 2 and keygen.stderr.strip() == "error: a.toml: no such config file"
    version = fedlink("--version", cwd=tmp_path, env=env)
    assert version.returncode == 0 and version.stdout.startswith("fedlink ")


def test_results_on_stdout_times_with_a_zone_tables_whole_when_piped(site):
    folder, address, _ = site
    c = ("--coordinator", address, "--pki", "pki")
    table = fedlink("audit", "log", *c, cwd=folder)
    assert table.returncode == 0 and "events" in table.stderr
    digest = json.loads(fedlink("audit", "log", *c, "--json", "--kind", "project.create", cwd=folder).stdout)
    assert digest["details"]["schema_digest"] in table.stdout  # 64 characters, not cut at 80 columns
    assert max(len(line) for line in table.stdout.splitlines()) > 120
    assert datetime.fromisoformat(digest["time"]).utcoffset() is not None
    access = json.loads(fedlink("audit", "access", *c, cwd=folder).stdout)
    assert all(datetime.fromisoformat(a["last"]).utcoffset() is not None for a in access["actors"].values())
    synth = fedlink("synth", folder / "scenario", "--persons", "30", cwd=folder)
    assert json.loads(synth.stdout)["persons"] == 30


def test_a_second_different_review_says_what_it_replaces(tmp_path, agent_config, operator, project):
    configs = {d: agent_config(d) for d in ("population", "education", "civil_affairs")}
    for config in configs.values():
        with Agent(load_config(config), show_progress=False) as agent:
            agent.upload()
    run_id = operator.start_run("pilot", REFERENCE_DATE)
    assert operator.watch(run_id) == "done"
    with Agent(load_config(configs["civil_affairs"]), show_progress=False) as agent:  # where the policy routes
        agent.write_worklist(tmp_path / "worklist.csv", run_id)
    flag = pd.read_csv(tmp_path / "worklist.csv", dtype=str, keep_default_na=False, encoding="utf-8-sig").iloc[0]

    def review(outcome: str) -> subprocess.CompletedProcess:
        return fedlink("agent", "review", "--config", configs["civil_affairs"], "--record-id", flag["record_id"],
                       "--need", flag["need"], "--run", run_id, "--outcome", outcome, cwd=tmp_path)

    first = review("confirmed")
    assert first.returncode == 0 and "outcome confirmed recorded" in first.stdout and not first.stderr
    second = review("wrong_person")
    err = " ".join(second.stderr.split())
    assert second.returncode == 0 and "outcome wrong_person recorded" in second.stdout
    assert f"this replaces the earlier review of {flag['record_id']}" in err and "confirmed, recorded" in err
    assert f"on run {run_id}" in err


def test_every_audit_kind_the_coordinator_writes_is_listed():
    """`audit log --kind` checks against server.audit.EVENT_KINDS: each literal
    kind passed to `audit(conn, actor, "kind", ...)` in server/ must be there."""
    import ast

    from server.audit import EVENT_KINDS

    written = set()
    for path in Path("server").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "audit"
                    and len(node.args) >= 3):
                kind = node.args[2]
                if isinstance(kind, ast.Constant):
                    written.add(kind.value)
                elif isinstance(kind, ast.JoinedStr):  # f"run.{final}": its final states
                    written |= {"run.done", "run.failed"}
    assert len(written) > 15 and written <= set(EVENT_KINDS), sorted(written - set(EVENT_KINDS))


def test_the_upload_bar_is_not_full_before_the_commit_succeeds(tmp_path, agent_config, project, scenario):
    """An extract of one identity repeated: every batch is sent, and the commit
    is refused (one filter shared by every record). The bars, as written to a
    pipe, show the records sent and the commit step not done."""
    rows = (scenario / "population.csv").read_text(encoding="utf-8").splitlines()
    header, first = rows[0].split(","), rows[1].split(",")
    same = [",".join([f"R{i:05d}"] + first[1:]) for i in range(60)]
    extract = tmp_path / "population.csv"
    extract.write_text("\n".join([",".join(header)] + same) + "\n", encoding="utf-8")
    done = fedlink("agent", "upload", "--config", agent_config("population", extract=extract, batch_size=20),
                   cwd=tmp_path)
    assert done.returncode == 3 and "not committed" in done.stderr and "Traceback" not in done.stderr
    bars = [line for line in done.stderr.splitlines() if line.startswith(("sending", "committing"))]
    assert bars[0].startswith("sending population") and "60/60" in bars[0]
    assert bars[1].startswith("committing") and "0/1" in bars[1]
    assert not done.stdout  # nothing was uploaded, so no result
