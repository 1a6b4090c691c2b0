"""An agent's own files after power cuts and local damage, with a real
coordinator: a worklist is replaced whole or not at all (a kill -9 or a
failure while writing leaves the previous one intact); a torn last line of
the tree-head file is skipped with a warning; garbage, or a saved head that no
longer verifies, is named as this machine's damage (file, line, how to
repair), never blamed on the coordinator, and never a traceback."""
from __future__ import annotations

import json
import logging
import random
import signal
import subprocess
import time

import pytest

from agents.client import Agent
from agents.config import load_config
from agents.refs import new_key
from conftest import REFERENCE_DATE
from fedlink.audit import StateFileError
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


def heads_file(config):
    return load_config(config).state_dir / "tree-heads.jsonl"


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


def test_a_torn_last_line_of_the_head_file_is_skipped_with_a_warning(delivered, caplog):
    path = heads_file(delivered)
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines) + "\n" + lines[-1][: len(lines[-1]) // 2])  # a power cut mid-append
    with caplog.at_level(logging.WARNING, logger="fedlink.audit"), \
            Agent(load_config(delivered), show_progress=False) as agent:
        agent.check_log()
        agent.check_log()  # the next append starts on a line of its own
    assert any("last line is incomplete" in r.getMessage() and str(path) in r.getMessage() for r in caplog.records)
    assert json.loads(path.read_text().splitlines()[-1])["tree_size"] >= json.loads(lines[-1])["tree_size"]


def test_garbage_in_the_head_file_is_named_with_its_repair(delivered):
    path = heads_file(delivered)
    path.write_text("not json at all\n" + '{"tree_size": 3}\n')
    done = agent_cli("upload", "--config", str(delivered), "--quiet")
    said = " ".join(done.stderr.split())
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"{path} line 1 is not a tree head" in said and f"move {path} aside" in said


def test_a_locally_damaged_saved_head_is_not_blamed_on_the_coordinator(delivered):
    path = heads_file(delivered)
    lines = path.read_text().splitlines()
    head = json.loads(lines[-1])
    head["root_hash"] = "00" * 32  # a flipped block on this disk
    path.write_text("\n".join(lines[:-1] + [json.dumps(head)]) + "\n")
    with Agent(load_config(delivered), show_progress=False) as agent, pytest.raises(StateFileError) as e:
        agent.check_log()
    assert "damaged on this machine, not by the coordinator" in str(e.value) and str(path) in str(e.value)
    assert "history was rewritten" not in str(e.value)


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
