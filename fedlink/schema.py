"""The schema model both sides share: the extract contract of DATA_FORMAT.md,
the linkage schema agents encode with, and a project's settings as plain data.

A project is written by an operator as TOML (see `Project.from_toml`), sent to
the coordinator, and read back by every agent, which encodes with exactly that
schema. The schema digest binds an upload to the schema it was encoded with.
"""
from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

IDENTITY_COLUMNS = ("record_id", "name", "sex", "birth_date", "resident_id", "address", "phone")

# Department columns, as DATA_FORMAT.md lists them.
DEPARTMENT_COLUMNS: dict[str, tuple[str, ...]] = {
    "population": ("household_id", "household_size", "region_code"),
    "civil_affairs": ("household_id", "household_size", "household_monthly_income", "dibao", "region_code"),
    "medical_insurance": ("out_of_pocket_12m", "major_illness", "inpatient_days_12m"),
    "human_resources": ("employment_status", "months_since_job_loss", "monthly_wage"),
    "education": ("enrolled", "school_level", "absence_days_term"),
    "housing": ("properties_owned", "housing_subsidy"),
}
DEPARTMENTS = tuple(DEPARTMENT_COLUMNS)

# The indicators each department derives locally and may send by default:
# the minimum the default rule pack needs (agents/indicators.py defines them).
DEFAULT_INDICATORS: dict[str, tuple[str, ...]] = {
    "population": ("compulsory_school_age", "elderly", "lives_alone"),
    "civil_affairs": ("dibao", "below_subsistence_line", "near_subsistence_line"),
    "medical_insurance": ("catastrophic_medical_expense", "major_illness"),
    "human_resources": ("unemployed", "recent_job_loss", "wage_above_line"),
    "education": ("enrolled", "chronic_absence"),
    "housing": ("multiple_properties",),
}


class SchemaError(ValueError):
    """A project or schema that cannot be used; the message names the field."""


@dataclass(frozen=True)
class FieldSpec:
    """One identifying feature and how it is hashed into the filter."""

    name: str
    hashes: int  # bits set per token: the field's weight in the filter
    qgram: int = 2  # q-gram length; 0 means whole tokens


# Feature names the agent's normaliser produces (agents/normalise.py).
FEATURES = ("name", "name_pinyin", "sex", "birth_date", "resident_id", "address", "phone")

DEFAULT_FIELDS = (
    FieldSpec("name", hashes=12, qgram=1),
    FieldSpec("name_pinyin", hashes=8, qgram=2),
    FieldSpec("sex", hashes=4, qgram=0),
    FieldSpec("birth_date", hashes=10, qgram=0),
    FieldSpec("resident_id", hashes=6, qgram=2),
    FieldSpec("address", hashes=3, qgram=2),
)


@dataclass(frozen=True)
class LinkageSchema:
    filter_bits: int = 1024
    fields: tuple[FieldSpec, ...] = DEFAULT_FIELDS
    threshold: float = 0.75
    hardening: str = "none"

    def validate(self) -> None:
        if self.filter_bits <= 0 or self.filter_bits % 64:
            raise SchemaError(f"schema.filter_bits: {self.filter_bits} is not a positive multiple of 64")
        if not 0.0 < self.threshold <= 1.0:
            raise SchemaError(f"schema.threshold: {self.threshold} is not in (0, 1]")
        if not self.fields:
            raise SchemaError("schema.fields: at least one field is needed")
        seen = set()
        for f in self.fields:
            where = f"schema.fields[{f.name!r}]"
            if f.name not in FEATURES:
                raise SchemaError(f"{where}: unknown feature; known: {', '.join(FEATURES)}")
            if f.name in seen:
                raise SchemaError(f"{where}: listed twice")
            seen.add(f.name)
            if not 1 <= f.hashes <= 64:
                raise SchemaError(f"{where}.hashes: {f.hashes} is not in 1..64")
            if not 0 <= f.qgram <= 4:
                raise SchemaError(f"{where}.qgram: {f.qgram} is not in 0..4")

    @property
    def filter_bytes(self) -> int:
        return self.filter_bits // 8


@dataclass(frozen=True)
class Project:
    project_id: str
    departments: dict[str, tuple[str, ...]]  # department -> declared indicators
    schema: LinkageSchema = field(default_factory=LinkageSchema)
    reference_date: str = ""  # ISO date; ages and periods are taken at it
    rules_toml: str = ""  # the rule pack; empty means the default pack

    def validate(self) -> None:
        if not self.project_id or not all(c.isalnum() or c in "-_." for c in self.project_id):
            raise SchemaError(f"project_id: {self.project_id!r} must be non-empty letters, digits, '-', '_' or '.'")
        if not self.departments:
            raise SchemaError("departments: at least one department takes part")
        for dept, indicators in self.departments.items():
            if dept not in DEPARTMENT_COLUMNS:
                raise SchemaError(f"departments[{dept!r}]: unknown department; known: {', '.join(DEPARTMENTS)}")
            unknown = set(indicators) - set(DEFAULT_INDICATORS[dept])
            if unknown:
                raise SchemaError(
                    f"departments[{dept!r}].indicators: {sorted(unknown)} are not indicators of {dept}; "
                    f"known: {', '.join(DEFAULT_INDICATORS[dept])}"
                )
        self.schema.validate()

    def digest(self) -> str:
        """SHA-256 over what determines an encoding: the project id and the schema."""
        canon = json.dumps({"project_id": self.project_id, "schema": asdict(self.schema)}, sort_keys=True)
        return hashlib.sha256(canon.encode()).hexdigest()

    @classmethod
    def default(cls, project_id: str, departments=DEPARTMENTS, **kw) -> "Project":
        return cls(project_id, {d: DEFAULT_INDICATORS[d] for d in departments}, **kw)

    @classmethod
    def from_toml(cls, path: Path) -> "Project":
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as e:
            raise SchemaError(f"{path}: {e}") from e
        try:
            return cls.from_dict(data)
        except SchemaError as e:
            raise SchemaError(f"{path}: {e}") from e

    @classmethod
    def from_dict(cls, data: dict) -> "Project":
        known = {"project_id", "departments", "schema", "reference_date", "rules"}
        extra = set(data) - known
        if extra:
            raise SchemaError(f"unknown keys {sorted(extra)}; known: {sorted(known)}")
        depts = data.get("departments", list(DEPARTMENTS))
        if isinstance(depts, list):
            depts = {d: DEFAULT_INDICATORS.get(d, ()) for d in depts}
        else:
            depts = {d: tuple(v.get("indicators", DEFAULT_INDICATORS.get(d, ()))) for d, v in depts.items()}
        s = data.get("schema", {})
        schema = LinkageSchema()
        if "fields" in s:
            schema = replace(schema, fields=tuple(FieldSpec(**f) for f in s["fields"]))
        for key in ("filter_bits", "threshold", "hardening"):
            if key in s:
                schema = replace(schema, **{key: s[key]})
        rules = data.get("rules", "")
        if rules:
            rules = Path(rules).read_text(encoding="utf-8")
        project = cls(str(data.get("project_id", "")), depts, schema, str(data.get("reference_date", "")), rules)
        project.validate()
        return project
