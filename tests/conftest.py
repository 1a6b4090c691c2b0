"""Shared fixtures: a real PKI, a real coordinator on loopback with mutual TLS
over a real database (a SQLite file; PostgreSQL when FEDLINK_TEST_DATABASE
names a server, see tests/dbutil.py), real agents, and a small synthetic
scenario."""
from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from fedlink.schema import DEPARTMENTS, Project

SMALL_PERSONS = 400
REFERENCE_DATE = "2025-06-30"


def _touches_the_store(item) -> bool:
    """Whether a test reaches the coordinator's database: through the `database`
    fixture (every coordinator fixture needs it) or dbutil's own databases."""
    if "database" in getattr(item, "fixturenames", ()):
        return True
    source = _module_sources.setdefault(item.path, item.path.read_text(encoding="utf-8"))
    return "new_database(" in source or "database_on(" in source


_module_sources: dict = {}


def pytest_collection_modifyitems(config, items):
    """The PostgreSQL pass runs the tests that reach the database; the rest run the
    same code either way and ran in the SQLite pass (FEDLINK_TEST_EVERYTHING=1
    runs them here too)."""
    from dbutil import BACKEND

    if BACKEND != "postgresql" or os.environ.get("FEDLINK_TEST_EVERYTHING") == "1":
        return
    elsewhere = [item for item in items if not _touches_the_store(item)]
    if elsewhere:
        config.hook.pytest_deselected(items=elsewhere)
        items[:] = [item for item in items if _touches_the_store(item)]


def pytest_report_header(config):
    from dbutil import BACKEND, SERVER

    return f"coordinator database: {BACKEND}" + (f" ({SERVER.split('@')[-1]})" if SERVER else " (a file per test)")


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> Path:
    from bench.harness import deliver_witnesses
    from fedlink.pki import CA_FOLDER, WITNESSES_FILE, init_pki
    from fedlink.witnessing import Roster

    d = tmp_path_factory.mktemp("pki")
    init_pki(d, DEPARTMENTS)
    # Quorum 0: every agent still witnesses at every contact; the quorum itself is
    # tested where it is set (tests/test_witnessing.py).
    Roster(d / CA_FOLDER / WITNESSES_FILE, 0, ()).write()
    deliver_witnesses(d)
    return d


@pytest.fixture(scope="session")
def foreign_pki(tmp_path_factory) -> Path:
    """A second, unrelated CA with the same party names."""
    from fedlink.pki import init_pki

    d = tmp_path_factory.mktemp("foreign-pki")
    init_pki(d, DEPARTMENTS)
    return d


@pytest.fixture(scope="session")
def scenario(tmp_path_factory) -> Path:
    from bench.synth import write_scenario

    d = tmp_path_factory.mktemp("scenario")
    write_scenario(d, SMALL_PERSONS, seed=11, reference_date=REFERENCE_DATE)
    return d


@pytest.fixture
def database(tmp_path):
    """A fresh coordinator database: a SQLite file, or a PostgreSQL database when
    FEDLINK_TEST_DATABASE names a server (tests/dbutil.py)."""
    from dbutil import new_database

    return new_database(tmp_path)


def log_key_for(folder: Path) -> Path:
    """A coordinator's own audit key in a test's folder: one key per log, as in a deployment."""
    return Path(folder) / "log" / "audit-signing.key"


@pytest.fixture
def coordinator(pki, database, tmp_path):
    from fedlink.pki import WITNESSES_FILE, credentials_for, party_folder
    from server.serve import start

    running = start("127.0.0.1:0", database, credentials=credentials_for(pki, "coordinator"),
                    audit_key=log_key_for(tmp_path), witnesses=party_folder(pki, "coordinator") / WITNESSES_FILE)
    running.address = f"127.0.0.1:{running.port}"
    running.database = database
    running.audit_key = log_key_for(tmp_path)
    yield running
    running.stop(grace=2)


@pytest.fixture
def operator(coordinator, pki):
    from fedlink.operator import Operator

    with Operator.connect(coordinator.address, pki) as op:
        yield op


@pytest.fixture
def officer(coordinator, pki):
    from fedlink.officer import Officer

    with Officer.connect(coordinator.address, pki) as o:
        yield o


@pytest.fixture
def project(operator) -> Project:
    p = Project.default("pilot", reference_date=REFERENCE_DATE)
    operator.create_project(p)
    return p


@pytest.fixture
def secret_file(tmp_path) -> Path:
    from agents.secret import new_secret

    return new_secret(tmp_path / "project.secret")


@pytest.fixture
def agent_config(tmp_path, pki, coordinator, scenario, secret_file):
    """Write an agent TOML for a department; returns its path."""
    from fedlink.audit import vkey_path
    from procs import agent_folder

    def make(department: str, *, extract: Path | None = None, secret: Path | None = None, project: str = "pilot",
             batch_size: int = 2000, party_pki: Path | None = None) -> Path:
        return agent_folder(tmp_path / f"agent-{department}-{secrets.token_hex(3)}", department,
                            extract or scenario / f"{department}.csv", coordinator.address, party_pki or pki,
                            secret or secret_file, log_key=vkey_path(coordinator.audit_key), project=project,
                            batch_size=batch_size)

    return make
