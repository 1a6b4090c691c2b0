"""Safe uploads, as a department's operator meets them: `fedlink agent check`
and `fedlink agent upload` as real processes against a real coordinator with
mutual TLS. An extract that would remove most of the department, or whose
IDs are missing or unreadable, is refused with the reason and `--force`;
every upload's data-quality summary (counts only) is printed, sent and shown
in the operator's run report."""
from __future__ import annotations

import subprocess
from datetime import date
from pathlib import Path

import pandas as pd

from procs import FEDLINK


def agent(*args, check_rc: int | None = 0) -> tuple[int, str]:
    done = subprocess.run([*FEDLINK, "agent", *map(str, args)], capture_output=True, text=True, timeout=180)
    said = " ".join((done.stdout + done.stderr).split())  # one line, whatever the console wraps
    if check_rc is not None:
        assert done.returncode == check_rc, said
    assert "Traceback" not in said
    return done.returncode, said


def variant(scenario: Path, tmp_path: Path, department: str, name: str, change) -> Path:
    frame = pd.read_csv(scenario / f"{department}.csv", dtype=str, keep_default_na=False)
    path = tmp_path / f"{department}-{name}.csv"
    change(frame).to_csv(path, index=False)
    return path


def _run_report(operator) -> dict:
    run = operator.start_run("pilot")
    assert operator.watch(run) == "done"
    return operator.report(run)


def test_a_header_only_extract_is_refused_and_removes_nothing_until_forced(project, operator, agent_config,
                                                                          scenario, tmp_path):
    config = agent_config("population")
    agent("upload", "--config", config, "--quiet")
    empty = variant(scenario, tmp_path, "population", "empty", lambda f: f.iloc[:0])
    text = config.read_text(encoding="utf-8").replace(str(scenario / "population.csv"), str(empty))
    config.write_text(text, encoding="utf-8")

    rc, said = agent("upload", "--config", config, "--quiet", check_rc=2)
    n = len(pd.read_csv(scenario / "population.csv", dtype=str))
    assert "0 records: the extract holds no rows" in said
    assert "upload refused" in said and f"it would remove {n} of the {n} records" in said
    assert "max_removed_share 0.2" in said and "--force" in said
    report = _run_report(operator)  # the population's records are still the current upload
    assert {c["key"]: int(c["count"]) for c in report["records_per_department"]}["population"] == n

    rc, said = agent("upload", "--config", config, "--quiet", "--force")
    assert "0 records uploaded" in said and f"0 records kept, 0 added, {n} removed" in said


def _uploads(coordinator, department: str) -> list[str]:
    from sqlalchemy import select

    from server import store as t

    with coordinator.coordinator.store.read() as conn:
        return [r.state for r in conn.execute(select(t.uploads.c.state).where(t.uploads.c.department == department))]


def test_an_extract_without_ids_is_refused_before_anything_is_sent(project, coordinator, agent_config, scenario,
                                                                   tmp_path):
    def no_ids(f):
        f["resident_id"] = ""
        return f

    def unreadable_ids(f):
        f["resident_id"] = "N/A"
        return f

    n = len(pd.read_csv(scenario / "civil_affairs.csv", dtype=str))
    for change, why in ((no_ids, f"field resident_id: blank in {n} of {n} records (100.0%), over max_blank_share 0.5"),
                        (unreadable_ids, f"field resident_id: {n} of {n} values unreadable (100.0%), over "
                                         "max_unreadable_share 0.05")):
        config = agent_config("civil_affairs", extract=variant(scenario, tmp_path, "civil_affairs",
                                                               change.__name__, change))
        rc, said = agent("check", "--config", config, "--quiet", check_rc=2)
        assert why in said and "nothing was sent" in said
        rc, said = agent("upload", "--config", config, "--quiet", check_rc=2)
        assert why in said and "upload refused (nothing was sent)" in said
    # Nothing reached the coordinator: not even an open upload.
    assert _uploads(coordinator, "civil_affairs") == []
    rc, said = agent("upload", "--config", config, "--quiet", "--force")
    assert f"{n} records uploaded" in said


def test_excel_serial_birth_dates_are_read_counted_and_shown_to_the_operator(project, operator, agent_config,
                                                                             scenario, tmp_path):
    def serials(f):
        days = pd.to_datetime(f["birth_date"], errors="coerce")
        serial = (days - pd.Timestamp("1899-12-30")).dt.days
        f["birth_date"] = serial.map(lambda d: "" if pd.isna(d) else str(int(d)))
        return f

    medical = variant(scenario, tmp_path, "medical_insurance", "serials", serials)
    readable = int((pd.read_csv(medical, dtype=str, keep_default_na=False)["birth_date"] != "").sum())
    config = agent_config("medical_insurance", extract=medical)
    rc, said = agent("upload", "--config", config, "--quiet")
    assert "birth_date: " in said and f"{readable} converted from another form" in said
    for d in ("population",):
        agent("upload", "--config", agent_config(d), "--quiet")
    report = _run_report(operator)
    [quality] = [u for u in report["upload_quality"] if u["department"] == "medical_insurance"]
    [birth] = [f for f in quality["fields"] if f["column"] == "birth_date"]
    assert int(birth["converted"]) == readable and int(birth["unreadable"]) == 0
    # The dates link: nearly every insured person is found in the population register.
    pairs = {c["key"]: int(c["count"]) for c in report["linked_pairs_per_department_pair"]}
    assert pairs["population~medical_insurance"] >= 0.9 * int(quality["records"])


def test_a_year_alone_is_not_an_excel_serial():
    from agents.extract.values import excel_date

    assert excel_date("1985") == "1985"
    assert excel_date(str((date(1985, 3, 7) - date(1899, 12, 30)).days)) == "1985-03-07"
