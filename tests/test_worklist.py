"""The worklist a caseworker opens, from a real run: the columns in English
or Chinese (the agent TOML's `language`), explanations as plain sentences
without raw rule terms, each match score labelled by the department it links
to, as CSV or .xlsx by the --out suffix."""
from __future__ import annotations

import re
import subprocess
from dataclasses import replace

import openpyxl
import pandas as pd
import pytest

from agents.client import Agent
from agents.config import load_config
from agents.worklist import COLUMNS
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


def test_an_english_csv_worklist_explains_in_sentences_and_labels_scores(pilot_run, tmp_path):
    run, configs = pilot_run
    out = tmp_path / "population.csv"
    done = subprocess.run([*FEDLINK, "agent", "flags", "--config", str(configs["population"]), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    wl = pd.read_csv(out, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    assert list(wl.columns[-len(COLUMNS):]) == [en for _, en, _ in COLUMNS]
    assert len(wl) > 5 and set(wl["need"]) >= {"school_dropout_risk", "elderly_alone"}
    for text in wl["explanation"]:
        assert not RAW.search(text), text
        assert text.endswith(".") and "Found: " in text
    linked = wl[wl["departments_linked"].astype(int) > 1]
    assert len(linked)
    for scores in linked["match_scores"]:
        for part in scores.split("; "):
            department, score = part.rsplit(" ", 1)
            assert department in DEPARTMENTS and department != "population" and 0.5 < float(score) <= 1, scores
    dropout = wl[wl["need"] == "school_dropout_risk"]["explanation"]
    assert dropout.str.startswith("Of compulsory-school age in the population register but not on the school roll "
                                  "(tier 1). Found: compulsory school age (population register); ").all()
    assert dropout.str.contains("; no record in education|; a record in education; not enrolled \\(education\\)").all()


def test_a_chinese_xlsx_worklist_has_chinese_columns_and_sentences(pilot_run, tmp_path):
    run, configs = pilot_run
    config = load_config(configs["population"])
    replace(config, language="zh").write()
    out = tmp_path / "户籍待核查.xlsx"
    with Agent(load_config(configs["population"]), show_progress=False) as agent:
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
        for part in filter(None, (row[scores] or "").split("；")):
            department, score = part.rsplit(" ", 1)
            assert department in ("民政", "医保", "人社", "教育", "住建") and float(score) > 0.5
    assert any("不在学籍名册上" in r[explanation] for r in rows[1:])


def test_a_worklist_with_another_suffix_is_refused_with_the_reason(pilot_run, tmp_path):
    run, configs = pilot_run
    done = subprocess.run([*FEDLINK, "agent", "flags", "--config", str(configs["housing"]), "--out",
                           str(tmp_path / "w.txt")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "a worklist is written as .csv or .xlsx" in " ".join(done.stderr.split())
