"""The console against a real coordinator on loopback: the real `fedlink
console serve` with mutual TLS (who is let in, who is refused, each view an
audit event), and the pages driven by headless Chromium (Debian's chromium
and chromedriver, scripts/browser) on the data of a bench run: each page
loads, the charts are drawn, the progress page follows a run live, and no
page holds an identifier, a filter or a reference of the extracts (canaries
planted in them). FEDLINK_SCREENSHOTS=docs/console writes the screenshots
docs/console.md shows."""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest
from sqlalchemy import select

from bench.harness import PROJECT_ID, BenchSession
from browsers import open_browser
from console_plain import PlainConsole
from dbutil import new_database
from fedlink.audit import vkey_path
from fedlink.identity import Identity
from fedlink.officer import Officer
from fedlink.pki import credentials_for
from procs import FEDLINK, free_port, wait_for
from server.console.source import CoordinatorSource

CANARY = {"record_id": "CANARY0001", "name": "甄金丝雀", "phone": "19999999999"}
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bench(scenario, tmp_path_factory):
    """A bench run of the small scenario with canaries planted in the population extract."""
    work = tmp_path_factory.mktemp("console")
    planted = work / "scenario"
    shutil.copytree(scenario, planted)
    population = pd.read_csv(planted / "population.csv", dtype=str, keep_default_na=False)
    for column, value in CANARY.items():
        population.loc[0, column] = value
    population.to_csv(planted / "population.csv", index=False, encoding="utf-8")
    session = BenchSession(planted, work / "out", database=new_database(work))
    for department in session.departments:
        session.upload(department)
    run_id, report, _ = session.run()
    yield session, run_id, report, planted
    session.close()


@pytest.fixture(scope="module")
def source(bench):
    session = bench[0]
    src = CoordinatorSource(session.address, credentials_for(session.pki, "operator"),
                            credentials_for(session.pki, "officer"), credentials_for(session.pki, "console"),
                            vkey_path(session.audit_key),
                            session.pki / "officer" / "witnesses.toml")
    yield src
    src.close()


@pytest.fixture(scope="module")
def consoles(source):
    """Test-only plain listeners with a fixed operator and officer (tests/console_plain.py)."""
    operator = PlainConsole(source, Identity("operator", "operator"), free_port())
    officer = PlainConsole(source, Identity("officer", "officer"), free_port())
    yield {"operator": operator.url, "officer": officer.url}
    operator.stop()
    officer.stop()


@pytest.fixture(scope="module")
def served(bench, tmp_path_factory):
    """`fedlink console serve`, with client certificates required."""
    session = bench[0]
    port = free_port()
    log = tmp_path_factory.mktemp("console-log") / "console.log"
    with log.open("w") as out:
        proc = subprocess.Popen([*FEDLINK, "console", "serve", "--coordinator", session.address, "--pki",
                                 str(session.pki), "--log-key", str(vkey_path(session.audit_key)),
                                 "--listen", f"127.0.0.1:{port}"], stdout=out,
                                stderr=subprocess.STDOUT)
    url = f"https://localhost:{port}"
    wait_for(lambda: proc.poll() is not None or "Uvicorn running" in log.read_text()
             or "Application startup complete" in log.read_text(), "the console to start", limit=60, every=0.1)
    assert proc.poll() is None, log.read_text()
    yield url, session.pki, log
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module", params=["chromium", "firefox"])
def browser(request, tmp_path_factory):
    driver = open_browser(request.param, tmp_path_factory)
    yield driver
    driver.quit()


def _client(pki: Path, party: str | None) -> httpx.Client:
    import ssl

    context = ssl.create_default_context(cafile=str(credentials_for(pki, "operator").ca))  # the CA certificate
    if party:
        creds = credentials_for(pki, party)
        context.load_cert_chain(str(creds.cert), str(creds.key))
    return httpx.Client(verify=context, timeout=30, follow_redirects=False)


def test_people_sign_in_with_their_certificate_and_others_are_refused(served, bench):
    url, pki, _ = served
    run_id = bench[1]
    with _client(pki, "operator") as op:
        page = op.get(f"{url}/projects")
        assert page.status_code == 200 and PROJECT_ID in page.text and "operator:operator" in page.text
        assert op.get(f"{url}/runs/{run_id}").status_code == 200
        # An operator is not an officer.
        assert op.get(f"{url}/audit").status_code == 403
    with _client(pki, "officer") as officer:
        page = officer.get(f"{url}/audit")
        assert page.status_code == 200 and "console.view" in page.text
    with _client(pki, "agent-population") as agent:
        refused = agent.get(f"{url}/projects")
        assert refused.status_code == 403 and "operators and privacy officers" in refused.text
    # No certificate: the TLS handshake fails, no page is served.
    with _client(pki, None) as anonymous, pytest.raises(httpx.TransportError):
        anonymous.get(f"{url}/projects")


def test_each_page_view_is_an_audit_event_of_the_viewer(served, bench):
    url, pki, _ = served
    with _client(pki, "operator") as op:
        assert op.get(f"{url}/projects/{PROJECT_ID}").status_code == 200
    with Officer.connect(bench[0].address, pki) as officer:
        views = [json.loads(b) for _, b in officer.events(kind="console.view")]
    assert {"viewer": "operator:operator", "page": f"/projects/{PROJECT_ID}"} in [e["details"] for e in views]
    refused = [json.loads(b) for _, b in Officer.connect(bench[0].address, pki).events(kind="call.refused")]
    assert not [e for e in refused if e["details"]["method"] == "RecordView"]


def _pages(bench) -> dict[str, list[str]]:
    run_id = bench[1]
    return {"operator": ["/projects", f"/projects/{PROJECT_ID}", f"/runs/{run_id}", "/approvals?state="],
            "officer": ["/audit", "/audit?kind=report.read", "/audit/checkpoint", "/audit/inclusion?seq=3",
                        "/audit/access", f"/audit/access?run={run_id}", "/approvals"]}


def _shoot(driver, name: str, tmp_path: Path) -> None:
    if driver.name_ != "chromium":
        return  # docs/console.md shows Chromium's; Firefox draws the same pages
    folder = Path(os.environ.get("FEDLINK_SCREENSHOTS") or tmp_path)
    folder = folder if folder.is_absolute() else ROOT / folder
    folder.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.body.scrollHeight")
    driver.set_window_size(1366, min(max(height + 40, 700), 4000))
    driver.save_screenshot(str(folder / f"{name}.png"))
    driver.set_window_size(1366, 900)


def test_pages_load_draw_their_charts_and_hold_no_identifier(browser, consoles, bench, tmp_path):
    from selenium.webdriver.common.by import By

    session, run_id, report, planted = bench
    sources = {}
    for role, paths in _pages(bench).items():
        for path in paths:
            browser.get(consoles[role] + path)
            assert browser.find_element(By.ID, "viewer").text == f"{role}:{role}", path
            assert not browser.find_elements(By.CSS_SELECTOR, ".error"), (path, browser.page_source[:2000])
            sources[path] = browser.page_source
    # The run page: one histogram per department pair, its bars and threshold drawn.
    browser.get(f"{consoles['operator']}/runs/{run_id}")
    figures = browser.find_elements(By.CSS_SELECTOR, "#scores figure")
    assert len(figures) == len(report["linked_pairs_per_department_pair"]) == 15
    for figure in figures:
        assert figure.find_elements(By.CSS_SELECTOR, "rect.bar:not(.suppressed)")
        assert len(figure.find_elements(By.CSS_SELECTOR, "line.threshold")) == 1
    assert browser.find_elements(By.CSS_SELECTOR, "#links rect.bar")
    assert browser.find_elements(By.CSS_SELECTOR, "#health tbody tr")
    # Flags per need and tier over runs: the report's tier cells, each under its need, small ones withheld.
    browser.get(f"{consoles['operator']}/projects/{PROJECT_ID}")
    tiers = {row.find_element(By.TAG_NAME, "th").text: row.find_element(By.TAG_NAME, "td").text
             for row in browser.find_elements(By.CSS_SELECTOR, "#over-tiers tbody tr")}
    reported = {c["key"]: c for c in report["flags_per_need_tier"]}
    assert tiers and set(tiers) == set(reported)
    assert {k.rpartition("/")[0] for k in tiers} == {c["key"] for c in report["flags_per_need"]}
    for key, shown in tiers.items():
        assert shown == ("<k" if reported[key]["suppressed"] else str(reported[key]["count"])), key
    _shoot(browser, "run", tmp_path)
    for name, path, role in (("projects", "/projects", "operator"), ("project", f"/projects/{PROJECT_ID}", "operator"),
                             ("audit", "/audit", "officer"), ("checkpoint", "/audit/checkpoint", "officer"),
                             ("access", "/audit/access", "officer")):
        browser.get(consoles[role] + path)
        _shoot(browser, name, tmp_path)
    # The checkpoint's log signature and the witnesses' cosignatures verified; an event's inclusion proven.
    browser.get(f"{consoles['officer']}/audit/checkpoint")
    assert "ok" in browser.find_element(By.ID, "signature").get_attribute("class")
    assert "officer (size" in browser.find_element(By.ID, "cosignatures").text
    assert "/fedlink-audit\n" in browser.find_element(By.ID, "note").get_attribute("textContent")
    browser.get(f"{consoles['officer']}/audit/inclusion?seq=3")
    assert "ok" in browser.find_element(By.ID, "result").get_attribute("class")
    _assert_no_identifier(sources, session, planted)


def _assert_no_identifier(sources: dict[str, str], session, planted: Path) -> None:
    from server import store as t
    from server.store import connect

    secrets = set(CANARY.values())
    for csv in planted.glob("*.csv"):
        if csv.stem in ("truth", "needs"):
            continue
        frame = pd.read_csv(csv, dtype=str, keep_default_na=False).head(40)
        secrets |= {v for c in ("record_id", "resident_id", "phone") for v in frame[c] if len(v) >= 6}
        secrets |= {v for v in frame["name"] if len(v) >= 3}
    engine = connect(session.db)
    with engine.connect() as conn:
        for ref, clk in conn.execute(select(t.records.c.ref, t.records.c.clk).limit(200)):
            secrets |= {ref.hex(), base64.b64encode(ref).decode(), clk.hex()[:32], base64.b64encode(clk).decode()[:32]}
    engine.dispose()
    for path, html in sources.items():
        leaked = [s for s in secrets if s in html]
        assert not leaked, (path, leaked[:5])


def test_progress_page_follows_a_run_live(browser, consoles, bench, monkeypatch):
    from selenium.webdriver.common.by import By
    from fedlink.operator import Operator

    session = bench[0]
    # The run stops a few seconds on entering its cluster phase (server/faults.py; the coordinator is in process).
    monkeypatch.setenv("FEDLINK_FAULT_PAUSE", "run.cluster")
    monkeypatch.setenv("FEDLINK_FAULT_PAUSE_S", "6")
    with Operator.connect(session.address, session.pki) as op:
        run_id = op.start_run(PROJECT_ID, "2025-07-31")
    browser.get(f"{consoles['operator']}/runs/{run_id}/progress")
    wait_for(lambda: browser.find_element(By.ID, "phase").text == "cluster", "the cluster phase on the page",
             limit=60, every=0.1)
    assert browser.find_element(By.ID, "state").text == "running"
    assert not browser.find_element(By.ID, "done").is_displayed()
    # Without a reload, the page reaches the end of the run.
    wait_for(lambda: browser.find_element(By.ID, "state").text == "done", "the run's end on the page", limit=120,
             every=0.2)
    phases = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#phases li")]
    assert phases[:2] == ["queued", "load"] and "compare" in phases and phases[-1] == "done"
    assert browser.find_element(By.ID, "done").is_displayed()


def test_chinese_by_the_switch_and_keyboard_first(browser, consoles):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.get(f"{consoles['operator']}/projects")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Projects"
    browser.find_element(By.LINK_TEXT, "中文").click()
    assert browser.find_element(By.TAG_NAME, "h1").text == "项目"
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "zh-CN"
    # The first Tab reaches the skip link, Enter moves focus to the content.
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
    active = browser.switch_to.active_element
    assert active.get_attribute("class") == "skip"
    active.send_keys(Keys.ENTER)
    assert browser.switch_to.active_element.get_attribute("id") == "main"
    browser.find_element(By.LINK_TEXT, "English").click()
    assert browser.find_element(By.TAG_NAME, "h1").text == "Projects"


def test_a_person_signs_in_with_the_browser_file_of_pki_p12(served, tmp_path):
    """`fedlink pki p12` makes the file a browser imports; its certificate opens the officer's pages."""
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, pkcs12
    import ssl

    url, pki, _ = served
    folder = tmp_path / "pki"
    shutil.copytree(pki, folder)
    done = subprocess.run([*FEDLINK, "pki", "p12", str(folder), "officer"], capture_output=True, text=True,
                          env={**os.environ, "FEDLINK_P12_PASSWORD": "s3cret"})
    assert done.returncode == 0, done.stderr
    key, cert, cas = pkcs12.load_key_and_certificates((folder / "officer.p12").read_bytes(), b"s3cret")
    with pytest.raises(ValueError):
        pkcs12.load_key_and_certificates((folder / "officer.p12").read_bytes(), b"wrong")
    (tmp_path / "c.pem").write_bytes(cert.public_bytes(Encoding.PEM))
    (tmp_path / "k.pem").write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    (tmp_path / "ca.pem").write_bytes(cas[0].public_bytes(Encoding.PEM))
    context = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    context.load_cert_chain(str(tmp_path / "c.pem"), str(tmp_path / "k.pem"))
    with httpx.Client(verify=context, timeout=30) as client:
        page = client.get(f"{url}/audit/checkpoint")
    assert page.status_code == 200 and "officer:officer" in page.text


def _submit(browser, button: str) -> None:
    """Click a form's button and wait for the page it leads to (the old page's elements go stale)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.wait import WebDriverWait

    old = browser.find_element(By.ID, button)
    old.click()
    WebDriverWait(browser, 30).until(expected_conditions.staleness_of(old))


def _proposals(session, source) -> tuple[str, str]:
    """The demo's widening (to be rejected: the rules stay as they are for the next browser) and a
    threshold a hundredth higher (to be approved)."""
    from bench.demo import wider_routing
    from fedlink.operator import Operator
    from fedlink.rules import default_text

    project = next(p for p in source.projects() if p["project_id"] == PROJECT_ID)
    with Operator.connect(session.address, session.pki) as op:
        wider = op.propose_rules(PROJECT_ID, wider_routing(session.project.rules_toml or default_text()),
                                 reason="population asks to follow up major illness")
        higher = op.propose_linkage(PROJECT_ID, round(project["threshold"] + 0.01, 4), project["auto_threshold"],
                                    reason="fewer wrong-person links")
    return wider.proposal_id, higher.proposal_id


def test_approvals_shown_to_both_roles_and_decided_by_the_officer_signed_in(browser, consoles, bench, source,
                                                                           tmp_path):
    """An operator sees the pending proposal and its diff, not a form; an officer who did not propose it
    rejects or approves it on the page, the coordinator recording the decision as that officer's (via the
    console); the officer who proposed it (by name) gets no form, and a POST without the CSRF token is refused."""
    from selenium.webdriver.common.by import By

    session = bench[0]
    rejected, approved = _proposals(session, source)
    browser.get(f"{consoles['operator']}/projects/{PROJECT_ID}")
    assert rejected in browser.find_element(By.ID, "approvals").text
    browser.get(f"{consoles['operator']}/approvals/{rejected}")
    assert browser.find_element(By.ID, "state").text == "pending"
    diff = browser.find_element(By.ID, "diff").text
    assert "major_illness_to_population" in diff and "WIDENS" in diff
    assert "population would receive medical_hardship flags" in browser.find_element(By.ID, "newly-disclosed").text
    assert not browser.find_elements(By.ID, "approve")  # an operator does not decide
    wang = PlainConsole(source, Identity("officer", "wang"), free_port())
    same_name = PlainConsole(source, Identity("officer", "operator"), free_port())  # the proposer's name
    try:
        browser.get(f"{same_name.url}/approvals/{rejected}")
        assert browser.find_element(By.ID, "own-proposal").is_displayed() and not browser.find_elements(By.ID, "approve")
        # A form posted from elsewhere carries no token: refused before the coordinator is asked.
        forged = httpx.post(f"{wang.url}/approvals/decide", data={"proposal_id": rejected, "verdict": "approve"})
        assert forged.status_code == 403 and "csrf" in forged.text.lower()
        browser.get(f"{wang.url}/approvals/{rejected}")
        _shoot(browser, "proposal", tmp_path)
        browser.find_element(By.NAME, "note").send_keys("not needed")
        _submit(browser, "reject")
        assert browser.find_element(By.ID, "state").text == "rejected"
        assert browser.find_element(By.ID, "decided-by").text.startswith("officer:wang")
        browser.get(f"{wang.url}/approvals/{approved}")
        _submit(browser, "approve")
        assert browser.find_element(By.ID, "state").text == "approved"
    finally:
        wang.stop()
        same_name.stop()
    # Audited like the CLI's decision, with the officer as actor and the console's certificate as `via`.
    with Officer.connect(session.address, session.pki) as officer:
        decided = {json.loads(b)["details"]["proposal_id"]: json.loads(b)
                   for _, b in officer.events(kind="proposal.reject") + officer.events(kind="proposal.approve")}
        assert officer.proposal(approved).decided_by == "officer:wang"
    for pid, kind in ((rejected, "proposal.reject"), (approved, "proposal.approve")):
        assert decided[pid]["kind"] == kind and decided[pid]["actor"] == "officer:wang"
        assert decided[pid]["details"]["via"] == "console:console"
    assert decided[rejected]["details"]["note"] == "not needed"


@pytest.fixture(scope="module")
def reviewed(bench, tmp_path_factory):
    """Caseworkers' reviews of the bench run, through each department's agent: the two rules with the most
    flags (a 400-person run has 5 or 6 each; each cell must reach k = 5 to be shown), one reviewed all
    wrong person, the other all confirmed."""
    session, run_id = bench[0], bench[1]
    folder = tmp_path_factory.mktemp("worklists")
    by_rule: dict[str, list[tuple[str, str, str]]] = {}
    for department in session.departments:
        with session.agent(department) as agent:
            agent.write_worklist(folder / f"{department}.csv", run_id)
        rows = pd.read_csv(folder / f"{department}.csv", dtype=str, keep_default_na=False, encoding="utf-8-sig")
        for _, row in rows.iterrows():
            by_rule.setdefault(row["reasons"].split(":")[0], []).append((department, row["record_id"], row["need"]))
    high, low = sorted(by_rule, key=lambda r: -len(by_rule[r]))[:2]
    assert len(by_rule[low]) >= 5, {r: len(f) for r, f in by_rule.items()}
    plan = [(f, "wrong_person") for f in by_rule[high][:5]] + [(f, "confirmed") for f in by_rule[low][:5]]
    for department in session.departments:
        with session.agent(department) as agent:
            for (_, record_id, need), outcome in [(f, o) for f, o in plan if f[0] == department]:
                agent.record_outcome(record_id, need, outcome, run_id)
    return high, low


def test_a_rule_whose_reviews_often_find_the_wrong_person_is_shown_in_red(browser, consoles, bench, reviewed):
    from selenium.webdriver.common.by import By

    high, low = reviewed
    browser.get(f"{consoles['operator']}/runs/{bench[1]}")
    rows = {r.find_element(By.TAG_NAME, "th").text: r for r in browser.find_elements(By.CSS_SELECTOR,
                                                                                      "#outcomes tbody tr")}
    assert "alert" in rows[high].get_attribute("class") and "100%" in rows[high].text
    assert rows[high].value_of_css_property("background-color") in ("rgb(253, 236, 234)", "rgba(253, 236, 234, 1)")
    assert "alert" not in (rows[low].get_attribute("class") or "") and "0%" in rows[low].text
    assert rows[low].value_of_css_property("background-color") != rows[high].value_of_css_property("background-color")


def test_the_wrong_person_mark_starts_at_a_fifth():
    """The line the run page draws (views.WRONG_PERSON_ALERT): 20% is marked, just under it is not, a rule
    with a withheld cell has no share at all."""
    from server.console.views import outcomes_per_rule

    def cells(rule, wrong, other, suppressed=False):
        return [{"key": f"{rule}/wrong_person", "count": wrong, "suppressed": suppressed},
                {"key": f"{rule}/confirmed", "count": other, "suppressed": False}]

    found = {r["rule"]: r for r in outcomes_per_rule({"outcomes_per_rule": [
        *cells("at", 5, 20), *cells("under", 5, 21), *cells("withheld", 0, 30, suppressed=True)]})}
    assert found["at"]["alert"] and found["at"]["share"] == 0.2
    assert not found["under"]["alert"] and found["under"]["share"] < 0.2
    assert found["withheld"]["share"] is None and not found["withheld"]["alert"]
