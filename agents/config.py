"""An agent's configuration: one TOML file per department.

    department = "medical_insurance"
    project = "pilot-2025"
    coordinator = "coordinator.example.gov:50051"
    extract = "extracts/medical_insurance.csv"   # .csv, .parquet, or "sql" with [sql]
    secret_file = "project.secret"              # the project secret, shared out of band
    ref_key_file = "medical_insurance.refkey"   # this department's own key (fedlink agent keygen)
    state_dir = "state"                         # this agent's witness key and state (audit-log consistency)
    audit_key = "pki/audit-signing.vkey"        # the coordinator's log key, pinned (from the bundle)
    witnesses = "pki/witnesses.toml"            # the project's witnesses and quorum (from the bundle)
    batch_size = 1000
    retries = 5                                 # reconnect attempts, with backoff, when the coordinator is away

    [tls]                                       # mutual TLS (fedlink pki init)
    cert = "pki/agent-medical_insurance.pem"
    key = "pki/agent-medical_insurance.key"
    ca = "pki/ca.pem"

    [columns]                                   # optional: schema column = file column
    name = "full_name"

    [sql]                                       # optional: read the extract from a database
    url = "postgresql://..."
    query = "SELECT ... FROM ..."

`audit_key` is required: without it an agent would believe whatever log key
the coordinator offers. `trust_on_first_use = true` instead pins the key the
coordinator offers at first contact (state_dir/audit-key.vkey), for a test
set-up only. `witness_key` (default state_dir/witness.key) is this agent's
own cosigning key, made on first use; `fedlink agent witness-key` prints the
line to send to the CA operator for the witnesses file.

Relative paths are relative to the config file. `load_config` reads this
file and `AgentConfig.write` writes it: a configuration read back is the one
written.
"""
from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from fedlink.pki import Credentials
from fedlink.schema import DEPARTMENTS


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class AgentConfig:
    path: Path
    department: str
    project: str
    coordinator: str
    extract: Path | str
    secret_file: Path
    ref_key_file: Path
    state_dir: Path
    batch_size: int = 1000
    tls: Credentials | None = None
    insecure: bool = False
    columns: dict[str, str] = field(default_factory=dict)
    sql: dict[str, str] = field(default_factory=dict)
    audit_key: Path | None = None  # the pinned log key; None only with trust_on_first_use
    trust_on_first_use: bool = False
    witnesses: Path | None = None  # the project's witnesses file
    witness_key: Path | None = None  # default: state_dir/witness.key
    retries: int = 5

    @property
    def witness_key_path(self) -> Path:
        return self.witness_key or self.state_dir / "witness.key"

    def secret(self) -> bytes:
        try:
            raw = self.secret_file.read_bytes().strip()
        except FileNotFoundError:
            raise ConfigError(f"{self.path}: secret_file {self.secret_file} not found") from None
        if len(raw) < 16:
            raise ConfigError(f"{self.secret_file}: the project secret is shorter than 16 bytes")
        return raw

    def to_toml(self) -> str:
        """This configuration as the TOML `load_config` reads. Paths are written as
        they are: absolute ones stay absolute, relative ones are then relative to
        the file."""
        lines = [f"{key} = {_toml_value(getattr(self, key))}" for key in _SCALARS]
        for key in ("audit_key", "witnesses", "witness_key"):
            if getattr(self, key) is not None:
                lines.append(f"{key} = {_toml_value(getattr(self, key))}")
        if self.trust_on_first_use:
            lines.append("trust_on_first_use = true")
        if self.insecure:
            lines.append("insecure = true")
        tables = {"tls": {"cert": self.tls.cert, "key": self.tls.key, "ca": self.tls.ca} if self.tls else {},
                  "columns": self.columns, "sql": self.sql}
        for name, table in tables.items():
            if table:
                lines += ["", f"[{name}]"] + [f"{key} = {_toml_value(value)}" for key, value in table.items()]
        return "\n".join(lines) + "\n"

    def write(self) -> Path:
        """Write `to_toml()` to this configuration's path; return the path."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(self.to_toml(), encoding="utf-8")
        return self.path


# Written as `key = value` before the tables, in this order.
_SCALARS = ("department", "project", "coordinator", "extract", "secret_file", "ref_key_file", "state_dir",
            "batch_size", "retries")


def _toml_value(value: str | Path | int) -> str:
    if isinstance(value, int):
        return str(value)
    # A JSON string is a TOML basic string, once DEL (which TOML forbids raw) is escaped too.
    return json.dumps(str(value), ensure_ascii=False).replace("\x7f", "\\u007f")


_KEYS = {"department", "project", "coordinator", "extract", "secret_file", "ref_key_file", "state_dir",
         "batch_size", "tls", "insecure", "columns", "sql", "audit_key", "trust_on_first_use", "witnesses",
         "witness_key", "retries"}


def load_config(path: Path) -> AgentConfig:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    unknown = set(data) - _KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown keys {sorted(unknown)}; known: {sorted(_KEYS)}")
    for key in ("department", "project", "coordinator", "extract", "secret_file", "ref_key_file"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise ConfigError(f"{path}: {key} is required (a string)")
    if data["department"] not in DEPARTMENTS:
        raise ConfigError(f"{path}: department {data['department']!r} is not one of {', '.join(DEPARTMENTS)}")
    batch_size = data.get("batch_size", 1000)
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or not 1 <= batch_size <= 50_000:
        raise ConfigError(f"{path}: batch_size must be an integer in 1..50000")
    retries = data.get("retries", 5)
    if not isinstance(retries, int) or isinstance(retries, bool) or not 0 <= retries <= 20:
        raise ConfigError(f"{path}: retries must be an integer in 0..20")
    base = path.parent
    rel = lambda p: (base / p).resolve()  # noqa: E731
    tls = data.get("tls")
    insecure = bool(data.get("insecure", False))
    creds = None
    if tls:
        missing = {"cert", "key", "ca"} - set(tls)
        if missing:
            raise ConfigError(f"{path}: [tls] lacks {sorted(missing)}")
        creds = Credentials(rel(tls["cert"]), rel(tls["key"]), rel(tls["ca"]))
    elif not insecure:
        raise ConfigError(f"{path}: [tls] cert/key/ca are required (or insecure = true for a loopback test)")
    trust_on_first_use = data.get("trust_on_first_use", False)
    if not isinstance(trust_on_first_use, bool):
        raise ConfigError(f"{path}: trust_on_first_use must be true or false")
    for key in ("audit_key", "witnesses", "witness_key"):
        if key in data and (not isinstance(data[key], str) or not data[key]):
            raise ConfigError(f"{path}: {key} must be a file path (a string)")
    if not data.get("audit_key") and not trust_on_first_use:
        raise ConfigError(f"{path}: audit_key is required: the coordinator's log key (audit-signing.vkey, in "
                          "the bundle the CA operator sends), or trust_on_first_use = true for a test set-up")
    if not data.get("witnesses"):
        raise ConfigError(f"{path}: witnesses is required: the project's witnesses file (witnesses.toml, in the "
                          "bundle the CA operator sends)")
    optional = {key: rel(data[key]) if data.get(key) else None for key in ("audit_key", "witnesses", "witness_key")}
    extract = data["extract"]
    return AgentConfig(
        path=path, department=data["department"], project=data["project"], coordinator=data["coordinator"],
        extract=extract if extract == "sql" else rel(extract), secret_file=rel(data["secret_file"]),
        ref_key_file=rel(data["ref_key_file"]), state_dir=rel(data.get("state_dir", f"state-{data['department']}")),
        batch_size=batch_size, tls=creds, insecure=insecure, columns=dict(data.get("columns", {})),
        sql=dict(data.get("sql", {})),
        trust_on_first_use=trust_on_first_use, retries=retries, **optional,
    )
