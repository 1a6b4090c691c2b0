"""Shared fixtures: a real PKI, a real coordinator on loopback with mutual TLS
over a real database (a SQLite file; PostgreSQL when FEDLINK_TEST_DATABASE
names a server, see tests/dbutil.py), real agents, and a small synthetic
scenario."""
from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from fedlink.schema import DEPARTMENTS, Project

SMALL_PERSONS = 400
REFERENCE_DATE = "2025-06-30"


def pytest_report_header(config):
    from dbutil import BACKEND, SERVER

    return f"coordinator database: {BACKEND}" + (f" ({SERVER.split('@')[-1]})" if SERVER else " (a file per test)")


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> Path:
    from fedlink.pki import init_pki

    d = tmp_path_factory.mktemp("pki")
    init_pki(d, DEPARTMENTS)
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


@pytest.fixture
def coordinator(pki, database):
    from fedlink.pki import credentials_for
    from server.serve import start

    running = start("127.0.0.1:0", database, credentials=credentials_for(pki, "coordinator"))
    running.address = f"127.0.0.1:{running.port}"
    running.database = database
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
    from procs import agent_folder

    def make(department: str, *, extract: Path | None = None, secret: Path | None = None, project: str = "pilot",
             batch_size: int = 2000, party_pki: Path | None = None) -> Path:
        return agent_folder(tmp_path / f"agent-{department}-{secrets.token_hex(3)}", department,
                            extract or scenario / f"{department}.csv", coordinator.address, party_pki or pki,
                            secret or secret_file, project=project, batch_size=batch_size)

    return make
