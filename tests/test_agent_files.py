"""An agent's own files after power cuts and local damage, with a real
coordinator: a worklist is replaced whole or not at all (a kill -9 or a
failure while writing leaves the previous one intact); a torn last line of
the tree-head file is skipped with a warning; garbage, or a saved head that no
longer verifies, is named as this machine's damage (file, line, how to
repair), never blamed on the coordinator, and never a traceback; only a
validly signed saved head that the coordinator's log does not extend is
"history was rewritten"."""
from __future__ import annotations

import json
import random
import signal
import subprocess
import time

import pytest

from agents.client import Agent
from agents.config import load_config
from agents.refs import new_key
from conftest import REFERENCE_DATE
from procs import FEDLINK, CoordinatorProcess, agent_toml

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


def witness_once(config) -> None:
    done = agent_cli("witness", "--config", str(config))
    assert done.returncode == 0, done.stderr


def _flip_saved(config, edit) -> tuple:
    path = witness_state(config)
    state = json.loads(path.read_text())
    (saved,) = state["logs"].values()
    edit(saved)
    path.write_text(json.dumps(state))
    return path, path.read_bytes()


@pytest.mark.parametrize("damage", ["signature", "torn"])
def test_a_saved_head_damaged_on_this_machine_is_not_blamed_on_the_coordinator(agent_config, project, damage):
    config = agent_config("population")
    witness_once(config)
    if damage == "signature":  # a flipped block in the saved checkpoint's signature line
        def flip(saved):
            text, _, signature = saved["checkpoint"].rpartition("\u2014 ")
            saved["checkpoint"] = f"{text}\u2014 {signature[:30]}{'B' if signature[30] == 'A' else 'A'}{signature[31:]}"
        path, before = _flip_saved(config, flip)
    else:  # a power cut on a disk that reorders writes: half a file
        path = witness_state(config)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        before = path.read_bytes()
    done = agent_cli("witness", "--config", str(config))
    said = " ".join(done.stderr.split())
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert f"{path}: the witness state is" in said and "restore it from a backup, never delete it" in said
    assert "on this machine, not by the coordinator" in said and "rewritten" not in said
    assert path.read_bytes() == before  # nothing cosigned over the damage


def test_a_validly_saved_head_the_coordinator_rewrote_is_history_rewritten(tmp_path, pki, database, scenario,
                                                                          secret_file):
    """An agent, its saved head intact, then shown a log whose first event differs (FEDLINK_FAULT_FORK)."""
    from fedlink.operator import Operator
    from fedlink.schema import Project

    site = CoordinatorProcess(tmp_path, pki, database)
    try:
        with Operator.connect(site.address, pki) as op:
            op.create_project(Project.default("pilot", reference_date=REFERENCE_DATE))
        config = agent_toml(tmp_path, pki, "population", site.address, scenario / "population.csv", secret_file)
        witness_once(config)
        site.kill()
        site.start(env={"FEDLINK_FAULT_FORK": "population:0"})
        saved = witness_state(config).read_bytes()
        done = agent_cli("witness", "--config", str(config))
    finally:
        site.kill()
    said = " ".join(done.stderr.split())
    assert done.returncode == 4 and "Traceback" not in done.stderr, done.stderr
    assert "history was rewritten" in said and str(witness_state(config)) in said
    assert "on this machine" not in said
    assert witness_state(config).read_bytes() == saved
