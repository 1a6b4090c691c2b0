"""The agent configuration has one writer and one reader: what is written is what is read."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.config import AgentConfig, ConfigError, load_config
from fedlink.pki import Credentials
from fedlink.schema import DEPARTMENTS


def full_config(folder: Path) -> AgentConfig:
    folder = folder.resolve()
    return AgentConfig(
        path=folder / "population.toml", department="population", project="pilot-2025",
        coordinator="coordinator.example.gov:50051", extract=folder / "extracts" / "population.csv",
        secret_file=folder / "project.secret", ref_key_file=folder / "population.refkey",
        state_dir=folder / "state", batch_size=750,
        tls=Credentials(folder / "pki" / "agent-population.pem", folder / "pki" / "agent-population.key",
                        folder / "pki" / "ca.pem"),
        columns={"name": "full_name", "address": "addr"}, audit_key=folder / "pki" / "audit-signing.vkey",
        witnesses=folder / "pki" / "witnesses.toml", witness_key=folder / "witness.key", retries=2,
        server_name="coordinator.example.gov.cn")


def test_a_written_config_reads_back_identical(tmp_path):
    config = full_config(tmp_path)
    assert load_config(config.write()) == config


def test_an_insecure_sql_config_without_optional_keys_reads_back_identical(tmp_path):
    config = replace(full_config(tmp_path), extract="sql", tls=None, insecure=True, columns={},
                     sql={"url": "postgresql://u@db/x", "query": 'SELECT "name" FROM t WHERE a = \'\\n\''},
                     audit_key=None, trust_on_first_use=True, witness_key=None, server_name="")
    assert load_config(config.write()) == config


def test_the_audit_key_is_required_unless_trust_on_first_use_is_said(tmp_path):
    config = replace(full_config(tmp_path), audit_key=None)
    with pytest.raises(ConfigError, match="audit_key is required.*bundle"):
        load_config(config.write())
    assert load_config(replace(config, trust_on_first_use=True).write()).audit_key is None
    with pytest.raises(ConfigError, match="witnesses is required"):
        load_config(replace(full_config(tmp_path), witnesses=None).write())


def test_relative_paths_are_relative_to_the_file(tmp_path):
    written = replace(full_config(tmp_path), path=tmp_path / "agents" / "a.toml", secret_file=Path("project.secret"))
    assert load_config(written.write()).secret_file == (tmp_path / "agents" / "project.secret").resolve()


@settings(max_examples=50, deadline=None)
@given(department=st.sampled_from(DEPARTMENTS), project=st.text(min_size=1), coordinator=st.text(min_size=1),
       batch_size=st.integers(1, 50_000), retries=st.integers(0, 20),
       columns=st.dictionaries(st.from_regex(r"[a-z_]{1,12}", fullmatch=True), st.text(), max_size=3))
def test_any_valid_config_reads_back_identical(tmp_path_factory, department, project, coordinator, batch_size,
                                               retries, columns):
    config = replace(full_config(tmp_path_factory.mktemp("cfg")), department=department, project=project,
                     coordinator=coordinator, batch_size=batch_size, retries=retries, columns=columns)
    assert load_config(config.write()) == config
