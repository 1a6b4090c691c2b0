"""The worklist a caseworker opens, from a real run: the columns in English
or Chinese (the agent TOML's `language`), explanations as plain sentences
without raw rule terms, match scores labelled by the department they link to
where the disclosure policy shows departments (and only the weakest, bare,
where it does not), as CSV or .xlsx by the --out suffix."""
from __future__ import annotations

import json
import re
import stat
import subprocess
from dataclasses import replace

import openpyxl
import pandas as pd
import pytest

from agents.client import Agent
from agents.config import load_config
from agents.worklist import COLUMNS
from fedlink.rules import default_text
from fedlink.schema import DEPARTMENTS
from procs import FEDLINK

RAW = re.compile(r"[a-z]+_[a-z_]+|present:|absent:|\(\w+:\w+\)|  ")  # identifiers, raw terms, double spaces


@pytest.fixture
def pilot_run(project, operator, agent_config):
    configs = {d: agent_config(d) for d in DEPARTMENTS}
    for d, path in configs.items():
        with Agent(load_config(path), show_progress=False) as agent:
            agent.upload()
    run = operator.start_run("pilot")
    assert operator.watch(run) == "done"
    return run, configs


def _worklist(config, out):
    done = subprocess.run([*FEDLINK, "agent", "flags", "--config", str(config), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return pd.read_csv(out, dtype=str, keep_default_na=False, encoding="utf-8-sig")


def test_an_english_csv_worklist_explains_in_sentences(pilot_run, tmp_path):
    run, configs = pilot_run
    wl = _worklist(configs["civil_affairs"], tmp_path / "civil_affairs.csv")
    assert list(wl.columns[-len(COLUMNS):]) == [en for _, en, _ in COLUMNS]
    assert len(wl) > 5 and "elderly_alone" in set(wl["need"])
    for text in wl["explanation"]:
        assert not RAW.search(text), text
        assert text.endswith(".") and "Found: " in text
    # The default policy shows no department list: one bare score, the weakest link's.
    assert (wl["departments_linked"] == "0").all()
    for scores in wl["match_scores"]:
        assert scores == "" or 0.5 < float(scores) <= 1, scores
    alone = wl[wl["need"] == "elderly_alone"]["explanation"]
    assert alone.str.contains("elderly \\(population register\\)").all()
    dropout = _worklist(configs["education"], tmp_path / "education.csv")
    dropout = dropout[dropout["need"] == "school_dropout_risk"]["explanation"]
    assert len(dropout) and dropout.str.contains("(tier ", regex=False).all()
    assert not dropout.str.contains("Linked across").any()


def test_scores_are_labelled_by_department_where_the_policy_shows_departments(pilot_run, coordinator, tmp_path):
    from server import queries as q

    run, configs = pilot_run
    shown = default_text().replace('[disclosure.elderly_alone]\nrecipients = ["civil_affairs", "population"]\n',
                                   '[disclosure.elderly_alone]\nrecipients = ["civil_affairs", "population"]\n'
                                   'departments_linked = true\n')
    assert shown != default_text()
    with coordinator.coordinator.context.store.write() as conn:  # as an approved policy change would
        q.set_rules(conn, "pilot", shown)
    wl = _worklist(configs["civil_affairs"], tmp_path / "civil_affairs.csv")
    alone = wl[wl["need"] == "elderly_alone"]
    linked = alone[alone["departments_linked"].astype(int) > 1]
    assert len(linked) and linked["explanation"].str.contains("Linked across").all()
    for scores in linked["match_scores"]:
        for part in scores.split("; "):
            department, score = part.rsplit(" ", 1)
            assert department in DEPARTMENTS and department != "civil_affairs" and 0.5 < float(score) <= 1, scores
    others = wl[wl["need"] != "elderly_alone"]
    assert (others["departments_linked"] == "0").all()


def test_a_chinese_xlsx_worklist_has_chinese_columns_and_sentences(pilot_run, tmp_path):
    run, configs = pilot_run
    config = load_config(configs["civil_affairs"])
    replace(config, language="zh").write()
    out = tmp_path / "民政待核查.xlsx"
    with Agent(load_config(configs["civil_affairs"]), show_progress=False) as agent:
        n = agent.write_worklist(out, run)
        agent.write_worklist(tmp_path / "same.csv", run)
    sheet = openpyxl.load_workbook(out).active
    rows = list(sheet.iter_rows(values_only=True))
    assert len(rows) == n + 1
    header = list(rows[0])
    assert header[-len(COLUMNS):] == [zh for _, _, zh in COLUMNS]
    csv_rows = pd.read_csv(tmp_path / "same.csv", dtype=str, keep_default_na=False, encoding="utf-8-sig")
    assert list(csv_rows.columns) == header and len(csv_rows) == n
    explanation, scores, status = header.index("说明"), header.index("匹配分数"), header.index("状态")
    for row in rows[1:]:
        text = row[explanation]
        assert re.search(r"[\u4e00-\u9fff]", text) and not RAW.search(text) and text.endswith("。"), text
        assert "依据：" in text and row[status] in ("新发现", "持续", "渐退过渡期", "已解除")
        assert row[scores] in (None, "") or 0.5 < float(row[scores]) <= 1  # one bare score by default
    assert any("独居" in r[explanation] for r in rows[1:])


def test_a_worklist_with_another_suffix_is_refused_with_the_reason(pilot_run, tmp_path):
    run, configs = pilot_run
    done = subprocess.run([*FEDLINK, "agent", "flags", "--config", str(configs["housing"]), "--out",
                           str(tmp_path / "w.txt")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "a worklist is written as .csv or .xlsx" in " ".join(done.stderr.split())


def _rows(config, out, *extra):
    """The worklist by record_id, and what the agent said on stderr."""
    done = subprocess.run([*FEDLINK, "agent", "flags", "--config", str(config), "--out", str(out), *extra],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    wl = pd.read_csv(out, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    return {r["record_id"]: r for r in wl.to_dict("records")}, " ".join(done.stderr.split())


def test_a_worklist_shows_the_rows_of_the_upload_its_run_used(agent_config, operator, project, scenario, tmp_path):
    """Upload A, run, upload B that changes one flagged row and removes another: the run's worklist
    shows A's rows (from the agent's copy of A); with that copy gone it falls back to the current
    extract, says so once, and marks the row whose record left it."""
    extract = tmp_path / "civil_affairs.csv"
    extract.write_bytes((scenario / "civil_affairs.csv").read_bytes())
    configs = {d: agent_config(d, extract=extract if d == "civil_affairs" else None)
               for d in ("population", "civil_affairs", "medical_insurance")}
    for config in configs.values():
        with Agent(load_config(config), show_progress=False) as agent:
            agent.upload()
    run = operator.start_run("pilot")
    assert operator.watch(run) == "done"
    civil = configs["civil_affairs"]  # the default policy routes it flags
    a = pd.read_csv(extract, dtype=str, keep_default_na=False).set_index("record_id", drop=False)
    flagged, _ = _rows(civil, tmp_path / "a.csv", "--run", run)
    changed, gone = list(dict.fromkeys(flagged))[:2]
    b = a.drop(index=gone)
    b.loc[changed, "address"] = "moved away"
    b.to_csv(extract, index=False)
    with Agent(load_config(civil), show_progress=False) as agent:
        assert agent.upload().records_removed == 1

    rows, said = _rows(civil, tmp_path / "worklist.csv", "--run", run)
    assert set(rows) == set(flagged) and "no longer holds" not in said
    for record_id in (changed, gone):
        assert rows[record_id]["address"] == a.loc[record_id, "address"] != ""
        assert rows[record_id]["name"] == a.loc[record_id, "name"] and rows[record_id]["in_extract"] == "yes"

    uploads = load_config(civil).state_dir / "uploads"
    index = json.loads((uploads / "index.json").read_text())["uploads"]
    assert [stat.S_IMODE(p.stat().st_mode) for p in uploads.iterdir()] == [0o600] * 3  # two copies and the index
    (uploads / f"{index[0]['digest']}.parquet").unlink()  # A's copy, the one the run used
    rows, said = _rows(civil, tmp_path / "worklist.csv", "--run", run)
    assert said.count("no longer holds its copy of upload") == 1 and "current extract" in said
    assert rows[changed]["address"] == "moved away" and rows[changed]["in_extract"] == "yes"
    assert rows[gone]["in_extract"].startswith("no: the record is not in the current extract")
    assert rows[gone]["name"] == ""


def test_the_agent_keeps_the_last_uploads_copies_and_prunes_the_rest(scenario, tmp_path):
    """Copies of the last KEEP committed uploads stay; older ones, and one never committed, go."""
    from agents.extract import Extract
    from agents.uploads import KEEP, UploadCopies

    copies = UploadCopies(tmp_path / "state")
    source = lambda: Extract(scenario / "civil_affairs.csv", "civil_affairs", identity=None)  # noqa: E731
    for n in range(KEEP + 2):
        copies.save(f"{n:02x}", source())
        if n != KEEP:  # this upload's commit never happened
            copies.committed(f"upload-{n}", f"{n:02x}")
    held = sorted(p.name for p in copies.folder.glob("*.parquet"))
    assert held == [f"{n:02x}.parquet" for n in (1, 2, 4)]
    assert copies.rows("upload-0") is None
    rows = copies.rows("upload-4")
    whole = pd.read_csv(scenario / "civil_affairs.csv", dtype=str, keep_default_na=False)
    assert list(rows.columns) == list(whole.columns) and rows["name"].tolist() == whole["name"].tolist()
