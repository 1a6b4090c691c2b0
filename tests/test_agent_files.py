"""An agent's own files after power cuts and local damage, with a real
coordinator: a worklist is replaced whole or not at all (a kill -9 or a
failure while writing leaves the previous one intact); a torn last line of
the tree-head file is skipped with a warning; garbage, or a saved head that no
longer verifies, is named as this machine's damage (file, line, how to
repair), never blamed on the coordinator, and never a traceback."""
from __future__ import annotations

import random
import signal
import subprocess
import time

import pytest

from agents.client import Agent
from agents.config import load_config
from agents.refs import new_key
from conftest import REFERENCE_DATE
from procs import FEDLINK

DEPARTMENTS = ("population", "civil_affairs", "medical_insurance")


@pytest.fixture
def delivered(agent_config, operator, project):
    """Every department uploaded and a run done; the civil affairs agent's config (the policy routes it flags)."""
    configs = {d: agent_config(d) for d in DEPARTMENTS}
    for config in configs.values():
        with Agent(load_config(config), show_progress=False) as agent:
            agent.upload()
    assert operator.watch(operator.start_run("pilot", REFERENCE_DATE)) == "done"
    return configs["civil_affairs"]


def witness_state(config):
    return load_config(config).state_dir / "witness.json"


def agent_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*FEDLINK, "agent", *args], capture_output=True, text=True, timeout=timeout)


def test_a_failed_worklist_write_keeps_the_previous_worklist(delivered, tmp_path):
    out = tmp_path / "worklist.csv"
    first = agent_cli("flags", "--config", str(delivered), "--out", str(out))
    assert first.returncode == 0, first.stderr
    complete = out.read_bytes()
    assert complete.count(b"\n") > 2
    # The reference key replaced: no flag decrypts, and writing fails at the first row.
    key = load_config(delivered).ref_key_file
    key.unlink()
    new_key(key)
    failed = agent_cli("flags", "--config", str(delivered), "--out", str(out))
    assert failed.returncode != 0
    assert out.read_bytes() == complete  # not a header-only or half worklist


def test_kill_9_while_writing_the_worklist_leaves_a_whole_one(delivered, tmp_path):
    out = tmp_path / "worklist.csv"
    assert agent_cli("flags", "--config", str(delivered), "--out", str(out)).returncode == 0
    complete = out.read_bytes()
    rng = random.Random(19)
    for _ in range(5):
        agent = subprocess.Popen([*FEDLINK, "agent", "flags", "--config", str(delivered), "--out", str(out)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.5, 3.0))
        agent.send_signal(signal.SIGKILL)
        agent.wait(30)
        assert out.read_bytes() == complete


def test_a_damaged_witness_state_is_named_with_its_repair(delivered):
    """The agent's memory of the log (its witness state, written whole by temp file and rename, so a power
    cut leaves the old one) damaged on this disk: the agent stops naming the file and the repair, never
    starting afresh (that would cosign any history) and never with a traceback."""
    path = witness_state(delivered)
    assert path.exists()
    path.write_text("not json at all\n")
    done = agent_cli("upload", "--config", str(delivered), "--quiet")
    said = " ".join(done.stderr.split())
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"{path}: the witness state is unreadable" in said and "restore it from a backup" in said


def test_rows_whose_record_left_the_extract_are_marked(agent_config, operator, project, scenario, tmp_path):
    import csv

    extract = tmp_path / "population.csv"
    extract.write_bytes((scenario / "population.csv").read_bytes())
    configs = {d: agent_config(d, extract=extract if d == "population" else None) for d in DEPARTMENTS}
    for config in configs.values():
        with Agent(load_config(config), show_progress=False) as agent:
            agent.upload()
    assert operator.watch(operator.start_run("pilot", REFERENCE_DATE)) == "done"
    out = tmp_path / "worklist.csv"
    with Agent(load_config(configs["population"]), show_progress=False) as agent:
        agent.write_worklist(out)
    with out.open(encoding="utf-8-sig") as fh:
        before = list(csv.DictReader(fh))
    assert before and {r["in_extract"] for r in before} == {"yes"}
    gone = before[0]["record_id"]
    with extract.open(encoding="utf-8", newline="") as fh:  # the department's register drops that record
        rows = list(csv.reader(fh))
    with extract.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows([r for r in rows if r[0] != gone])
    assert len(rows) > 2 and rows[0][0] == "record_id"
    with Agent(load_config(configs["population"]), show_progress=False) as agent:
        agent.write_worklist(out)
    with out.open(encoding="utf-8-sig") as fh:
        after = {r["record_id"]: r for r in csv.DictReader(fh)}
    assert after[gone]["in_extract"].startswith("no: the record is not in the current extract")
    assert all(r["in_extract"] == "yes" for k, r in after.items() if k != gone)
