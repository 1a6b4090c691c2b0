"""An agent's configuration: one TOML file per department.

    department = "medical_insurance"
    project = "pilot-2025"
    coordinator = "coordinator.example.gov:50051"
    extract = "extracts/medical_insurance.csv"   # or .xlsx (first sheet; sheet = "..."), .parquet, or "sql"
    encoding = "gb18030"                        # optional: a CSV's encoding, if detection should not decide
    language = "zh"                             # the worklist's language: "zh" or "en" (default)
    script = "hk2s"                             # traditional characters to simplified: t2s (default), hk2s, tw2s
    secret_file = "project.secret"              # the project secret (fedlink secret new), shared out of band
    ref_key_file = "medical_insurance.refkey"   # this department's own key (fedlink agent keygen)
    state_dir = "state"                         # this agent's witness key and state (audit-log consistency),
                                                # and its copies of its last uploads' rows, for worklists
    audit_key = "pki/audit-signing.vkey"        # the coordinator's log key, pinned (from the bundle)
    witnesses = "pki/witnesses.toml"            # the project's witnesses and quorum (from the bundle)
    batch_size = 1000
    retries = 5                                 # reconnect attempts, with backoff, when the coordinator is away
    coordinator_health = "http://coordinator.example.gov:8081/healthz"  # optional: its plain /healthz, whose
                                                # Date names the coordinator's clock when it refuses our certificate
    max_removed_share = 0.2                     # refuse an upload removing more of the current records
    max_unreadable_share = 0.05                 # refuse a field with more unreadable values than this
    max_blank_share = 0.5                       # refuse a name, date or ID field blank in more records

    [tls]                                       # mutual TLS (fedlink pki init)
    cert = "pki/agent-medical_insurance.pem"
    key = "pki/agent-medical_insurance.key"
    ca = "pki/ca.pem"
    server_name = "coordinator.example.gov"     # optional: the name to check the coordinator's certificate for

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

from agents.secret import read_secret
from fedlink.pki import Credentials
from fedlink.schema import DEFAULT_SCRIPT, DEPARTMENTS, SCRIPTS


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
    witnesses: Path | None = None  # the project's witnesses file
    witness_key: Path | None = None  # default: state_dir/witness.key
    retries: int = 5
    encoding: str | None = None  # a CSV's encoding; None: UTF-8 (BOM or not), else GB18030
    sheet: str | None = None     # a workbook's sheet; None: the first
    language: str = "en"         # the worklist's: "en" or "zh"
    script: str = DEFAULT_SCRIPT  # the OpenCC conversion the register's traditional characters need
    # The upload guards (agents/guards.py); `agent upload --force` overrides them.
    max_removed_share: float = 0.2
    max_unreadable_share: float = 0.05
    max_blank_share: float = 0.5
    trust_on_first_use: bool = False
    server_name: str = ""  # [tls] server_name: check the coordinator's certificate for this name
    coordinator_health: str | None = None  # the coordinator's GET /healthz (http:// or https://)

    @property
    def witness_key_path(self) -> Path:
        return self.witness_key or self.state_dir / "witness.key"

    def secret(self) -> bytes:
        """The project secret's 256 bits; a file not in the fedlink-secret-v1 form is refused (agents/secret.py)."""
        return read_secret(self.secret_file)

    def to_toml(self) -> str:
        """This configuration as the TOML `load_config` reads. Paths are written as
        they are: absolute ones stay absolute, relative ones are then relative to
        the file."""
        lines = [f"{key} = {_toml_value(getattr(self, key))}" for key in _SCALARS]
        lines += [f"{key} = {_toml_value(getattr(self, key))}" for key in _OPTIONAL if getattr(self, key) is not None]
        for key in ("audit_key", "witnesses", "witness_key"):
            if getattr(self, key) is not None:
                lines.append(f"{key} = {_toml_value(getattr(self, key))}")
        if self.trust_on_first_use:
            lines.append("trust_on_first_use = true")
        if self.insecure:
            lines.append("insecure = true")
        tls = {"cert": self.tls.cert, "key": self.tls.key, "ca": self.tls.ca} if self.tls else {}
        if tls and self.server_name:
            tls["server_name"] = self.server_name
        tables = {"tls": tls,
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
            "batch_size", "retries", "language", "script", "max_removed_share", "max_unreadable_share", "max_blank_share")
_OPTIONAL = ("encoding", "sheet", "coordinator_health")
LANGUAGES = ("en", "zh")
_SHARES = ("max_removed_share", "max_unreadable_share", "max_blank_share")


def _toml_value(value: str | Path | int | float) -> str:
    if isinstance(value, (int, float)):
        return repr(value)
    # A JSON string is a TOML basic string, once DEL (which TOML forbids raw) is escaped too.
    return json.dumps(str(value), ensure_ascii=False).replace("\x7f", "\\u007f")


_KEYS = {"department", "project", "coordinator", "extract", "secret_file", "ref_key_file", "state_dir",
         "batch_size", "tls", "insecure", "columns", "sql", "audit_key", "witnesses", "witness_key", "retries",
         "encoding", "sheet", "language", "trust_on_first_use", "script", "coordinator_health", *_SHARES}


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
    for key in ("encoding", "sheet"):
        if key in data and (not isinstance(data[key], str) or not data[key]):
            raise ConfigError(f"{path}: {key} must be a non-empty string")
    health = data.get("coordinator_health")
    if health is not None and (not isinstance(health, str) or not health.startswith(("http://", "https://"))):
        raise ConfigError(f"{path}: coordinator_health must be an http:// or https:// URL (the coordinator's "
                          f"--health-port /healthz), not {health!r}")
    language = data.get("language", "en")
    if language not in LANGUAGES:
        raise ConfigError(f"{path}: language must be one of {', '.join(LANGUAGES)}, not {language!r}")
    script = data.get("script", DEFAULT_SCRIPT)
    if script not in SCRIPTS:
        raise ConfigError(f"{path}: script must be one of {', '.join(SCRIPTS)}, not {script!r}")
    shares = {}
    for key in _SHARES:
        value = data.get(key, getattr(AgentConfig, key))
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
            raise ConfigError(f"{path}: {key} must be a share between 0 and 1")
        shares[key] = float(value)
    base = path.parent
    rel = lambda p: (base / p).resolve()  # noqa: E731
    tls = data.get("tls")
    insecure = bool(data.get("insecure", False))
    creds, server_name = None, ""
    if tls:
        missing = {"cert", "key", "ca"} - set(tls)
        if missing:
            raise ConfigError(f"{path}: [tls] lacks {sorted(missing)}")
        creds = Credentials(rel(tls["cert"]), rel(tls["key"]), rel(tls["ca"]))
        server_name = tls.get("server_name", "")
        if not isinstance(server_name, str):
            raise ConfigError(f"{path}: [tls] server_name must be a string (a host name)")
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
        retries=retries, encoding=data.get("encoding"), sheet=data.get("sheet"), language=language,
        script=script, **shares, trust_on_first_use=trust_on_first_use, server_name=server_name,
        coordinator_health=health, **optional,
    )
