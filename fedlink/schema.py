"""The schema model both sides share: the extract contract of docs/data-format.md,
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

# Department columns, as docs/data-format.md lists them.
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

# Departments whose extract numbers households (a household_id column). Their
# agents may send a keyed household token with each record (agents/households.py)
# when the rule pack has household indicators; the coordinator refuses one from
# any other department.
HOUSEHOLD_DEPARTMENTS = tuple(d for d, cols in DEPARTMENT_COLUMNS.items() if "household_id" in cols)
HOUSEHOLD_TOKEN_BYTES = 16


class SchemaError(ValueError):
    """A project or schema that cannot be used; the message names the field."""


# How a field's value is normalised and cut into tokens (agents/normalise.py,
# agents/encoding.py). The first seven are the Chinese extract contract's;
# "text" (Latin names, street names, places) and "digits" (house numbers,
# postcodes, other ID numbers) serve data sets written in other conventions.
# "syllables" (the name's pinyin syllables in any order), "phonetic" (a coarse
# key of each part of a transliterated name), "permit" (Hong Kong, Macau and
# Taiwan residents' documents) and "document_region" (HK, MO or TW, from either
# their residence or their travel permit) serve the realities of China's registers.
KINDS = ("name", "pinyin", "sex", "date", "resident_id", "address", "phone", "text", "digits",
         "syllables", "phonetic", "permit", "document_region")

# The kinds read from the identity document a record holds (a resident ID, a Hong Kong,
# Macau or Taiwan permit): a record-level schema's ID segment (LinkageSchema.id_fields).
DOCUMENT_KINDS = ("resident_id", "permit", "document_region")

# The OpenCC conversions a department may name for its register's script (agent
# TOML `script`, agents/normalise/unicode_forms.py): t2s for standard traditional
# characters, hk2s and tw2s where the register uses Hong Kong or Taiwan variant
# forms (衞, 綫, 裡). Each leaves simplified text as it is, so a register of mixed
# script is converted whole; every department's output is simplified.
SCRIPTS = ("t2s", "hk2s", "tw2s")
DEFAULT_SCRIPT = "t2s"

# The features of the extract contract: name -> (kind, extract column).
BUILTIN_FEATURES: dict[str, tuple[str, str]] = {
    "name": ("name", "name"),
    "name_pinyin": ("pinyin", "name"),
    "sex": ("sex", "sex"),
    "birth_date": ("date", "birth_date"),
    "resident_id": ("resident_id", "resident_id"),
    "address": ("address", "address"),
    "phone": ("phone", "phone"),
    "name_syllables": ("syllables", "name"),
    "name_phonetic": ("phonetic", "name"),
    "permit": ("permit", "resident_id"),
    "document_region": ("document_region", "resident_id"),
}
# Feature names the agent's normaliser produces for a standard extract.
FEATURES = tuple(BUILTIN_FEATURES)


@dataclass(frozen=True)
class FieldSpec:
    """One identifying feature and how it is hashed into the filter.

    A built-in feature (FEATURES) needs only its weights; any other name is a
    field of the project's own, read from `column` (default: its name) and
    normalised as `kind`, so a data set with other columns (FEBRL's
    given_name, surname, suburb, ...) is described as data, not code.
    """

    name: str
    hashes: int  # bits set per token: the field's weight in the filter
    qgram: int = 2  # q-gram length; 0 means whole tokens
    kind: str = ""  # one of KINDS; default: the built-in feature's
    column: str = ""  # extract column(s) it is read from ("a+b" joins two); default: the built-in's, else the name
    # comparison = "segments": the field's own segment of the filter, a multiple of 64
    # bits; fields naming the same `group` share one segment (default: its own).
    segment_bits: int = 0
    group: str = ""

    def __post_init__(self):
        kind, column = BUILTIN_FEATURES.get(self.name, ("", self.name))
        # Frozen: defaults are filled once here so every reader sees the resolved spec.
        object.__setattr__(self, "kind", self.kind or kind)
        object.__setattr__(self, "column", self.column or column)
        object.__setattr__(self, "group", self.group or self.name)


DEFAULT_FIELDS = (
    FieldSpec("name", hashes=12, qgram=1),
    FieldSpec("name_pinyin", hashes=8, qgram=2),
    FieldSpec("sex", hashes=4, qgram=0),
    FieldSpec("birth_date", hashes=10, qgram=0),
    FieldSpec("resident_id", hashes=6, qgram=2),
    FieldSpec("address", hashes=3, qgram=2),
    # A Hong Kong, Macau or Taiwan resident's travel permit, and where their document was
    # issued: with the resident ID in the ID segment (LinkageSchema.id_fields). The permit
    # number makes two registers that hold it agree there; the region is what a residence
    # permit (an ID, 810000...) and a travel permit (H...) of one person share, so the
    # pair is no longer a blank ID against a higher threshold nor two numbers that differ
    # (docs/quality.md, "Married names and Hong Kong, Macau and Taiwan documents"). Blank
    # for everyone else: a mainland record's filter is as before.
    FieldSpec("permit", hashes=6, qgram=2),
    FieldSpec("document_region", hashes=30, qgram=0),
)


# The segmented layout (comparison = "segments", server/pipeline/segments.py): each
# group of fields hashed into its own part of the filter, blank groups marked in a
# presence word, so a blank field is no evidence either way and each group's
# agreement is weighed by how telling it is (Fellegi-Sunter weights fitted by EM at
# the coordinator). 1024 bits: six segments and the 64-bit presence word.
SEGMENT_FIELDS = (
    FieldSpec("name", hashes=12, qgram=1, segment_bits=192),
    FieldSpec("name_syllables", hashes=10, qgram=0, segment_bits=192, group="pinyin"),
    FieldSpec("name_pinyin", hashes=6, qgram=2, segment_bits=192, group="pinyin"),
    FieldSpec("name_phonetic", hashes=10, qgram=0, segment_bits=128),
    FieldSpec("sex", hashes=8, qgram=0, segment_bits=64),
    FieldSpec("birth_date", hashes=10, qgram=0, segment_bits=128),
    FieldSpec("resident_id", hashes=6, qgram=2, segment_bits=128, group="document"),
    FieldSpec("permit", hashes=10, qgram=2, segment_bits=128, group="document"),
    FieldSpec("address", hashes=5, qgram=2, segment_bits=128),
)
COMPARISONS = ("record", "segments")
PRESENCE_BITS = 64


@dataclass(frozen=True)
class Segment:
    """One group's part of a segmented filter: words [start, start + words) of the packed uint64 row."""

    group: str
    fields: tuple[str, ...]
    start: int
    words: int


# Hardening options agents apply to their filters (agents/hardening.py; the
# measured choice is in docs/hardening.md). "blip-R" flips bits with probability R;
# "diffuse-T" makes every position the XOR of T of them.
HARDENINGS = ("none", "salt", "balance", "xor", "blip-R", "twin", "diffuse-T")


def hardening_option(value: str) -> tuple[str, float]:
    """(option, its parameter: the BLIP flip rate or the diffusion width T) of a schema's `hardening`; SchemaError says what is accepted."""
    name, _, rate = value.partition("-")
    if name in HARDENINGS and not rate:
        return name, 0.0
    if name == "blip":
        try:
            r = float(rate)
        except ValueError:
            r = -1.0
        if 0.0 < r < 0.5:
            return name, r
    if name == "diffuse" and rate.isdigit() and 2 <= int(rate) <= 8:
        return name, float(rate)
    raise SchemaError(f"schema.hardening: {value!r} is not one of {', '.join(HARDENINGS)} "
                      "(R a flip rate between 0 and 0.5, e.g. blip-0.02; T 2 to 8, e.g. diffuse-3)")


@dataclass(frozen=True)
class LinkageSchema:
    filter_bits: int = 1024
    fields: tuple[FieldSpec, ...] = DEFAULT_FIELDS
    # The least Dice at which two records link. With auto_threshold the
    # coordinator raises it for each department pair to where the pair's own
    # score distribution puts the non-matches (server/threshold.py): no
    # department has the truth to tune it on. 0.6 sits above unrelated
    # records in every encoding measured (docs/quality.md).
    threshold: float = 0.6
    auto_threshold: bool = True
    hardening: str = "twin"  # chosen on measured evidence: docs/hardening.md
    comparison: str = "record"  # "record": one Dice per record pair; "segments": see SEGMENT_FIELDS
    # comparison = "record": the last id_segment_bits of the filter hold the resident ID
    # field(s) alone, hardened on their own and all zero where the ID is blank, so a pair
    # with a blank ID is scored on the rest of the filter (server/pipeline/presence.py).
    # 0, or a schema without a resident_id field: the ID is hashed with the other fields.
    id_segment_bits: int = 256

    def segments(self) -> tuple[Segment, ...]:
        """The groups of a segmented schema in field order, laid out from word 0; the
        presence word follows them (bit i of it: segment i is not blank)."""
        groups: dict[str, list[FieldSpec]] = {}
        for f in self.fields:
            groups.setdefault(f.group, []).append(f)
        out, start = [], 0
        for group, fields in groups.items():
            words = fields[0].segment_bits // 64
            out.append(Segment(group, tuple(f.name for f in fields), start, words))
            start += words
        return tuple(out)

    def id_fields(self) -> tuple[FieldSpec, ...]:
        """The fields read from the identity document (kinds resident_id, permit, document_region),
        which a record-level schema keeps in its ID segment."""
        return tuple(f for f in self.fields if f.kind in DOCUMENT_KINDS)

    def id_segment_words(self) -> int:
        """How many 64-bit words at the end of the filter are the ID segment (0: none). Not under
        `salt`, which salts every field by the birth year: the ID stays in the record filter."""
        if (self.comparison != "record" or not self.id_fields() or len(self.id_fields()) == len(self.fields)
                or hardening_option(self.hardening)[0] == "salt" or not 0 < self.id_segment_bits < self.filter_bits):
            return 0
        return self.id_segment_bits // 64

    def validate(self) -> None:
        if self.filter_bits <= 0 or self.filter_bits % 64:
            raise SchemaError(f"schema.filter_bits: {self.filter_bits} is not a positive multiple of 64")
        if not 0.0 < self.threshold <= 1.0:
            raise SchemaError(f"schema.threshold: {self.threshold} is not in (0, 1]")
        if not self.fields:
            raise SchemaError("schema.fields: at least one field is needed")
        hardening_option(self.hardening)
        if self.id_segment_bits < 0 or self.id_segment_bits % 128 or self.id_segment_bits >= self.filter_bits:
            raise SchemaError(f"schema.id_segment_bits: {self.id_segment_bits} is not 0 or a multiple of 128 "
                              f"below filter_bits ({self.filter_bits})")
        if self.comparison not in COMPARISONS:
            raise SchemaError(f"schema.comparison: {self.comparison!r} is not one of {', '.join(COMPARISONS)}")
        if self.comparison == "segments":
            self._validate_segments()
        seen = set()
        for f in self.fields:
            where = f"schema.fields[{f.name!r}]"
            if not f.name or not all(c.isalnum() or c == "_" for c in f.name):
                raise SchemaError(f"{where}: a field name is letters, digits and '_'")
            if f.kind not in KINDS:
                raise SchemaError(f"{where}.kind: {f.kind or '(none)'!r} is not one of {', '.join(KINDS)} "
                                  f"(a field other than {', '.join(FEATURES)} needs a kind)")
            if f.name in seen:
                raise SchemaError(f"{where}: listed twice")
            seen.add(f.name)
            if not 1 <= f.hashes <= 64:
                raise SchemaError(f"{where}.hashes: {f.hashes} is not in 1..64")
            if not 0 <= f.qgram <= 4:
                raise SchemaError(f"{where}.qgram: {f.qgram} is not in 0..4")

    def _validate_segments(self) -> None:
        groups: dict[str, int] = {}
        for f in self.fields:
            where = f"schema.fields[{f.name!r}].segment_bits"
            if f.segment_bits <= 0 or f.segment_bits % 64:
                raise SchemaError(f"{where}: {f.segment_bits} is not a positive multiple of 64 "
                                  "(comparison = \"segments\" gives every field a segment)")
            if groups.setdefault(f.group, f.segment_bits) != f.segment_bits:
                raise SchemaError(f"{where}: the fields of group {f.group!r} differ in segment_bits")
        if len(groups) > PRESENCE_BITS:
            raise SchemaError(f"schema.fields: at most {PRESENCE_BITS} segments")
        used = sum(groups.values()) + PRESENCE_BITS
        if used != self.filter_bits:
            raise SchemaError(f"schema.filter_bits: {self.filter_bits}, but the segments and the "
                              f"{PRESENCE_BITS}-bit presence word take {used}")
        if hardening_option(self.hardening)[0] in ("xor", "salt"):
            raise SchemaError(f"schema.hardening: {self.hardening!r} is not available with segments "
                              "(none, balance, twin, blip-R or diffuse-T)")

    @property
    def filter_bytes(self) -> int:
        return self.filter_bits // 8


def _field_spec(index: int, data: dict) -> FieldSpec:
    known = {"name", "hashes", "qgram", "kind", "column", "segment_bits", "group"}
    extra = set(data) - known
    if extra or "name" not in data or "hashes" not in data:
        raise SchemaError(f"schema.fields[{index}] ({data.get('name', '?')}): needs name and hashes; "
                          f"unknown keys {sorted(extra)}; known: {sorted(known)}")
    return FieldSpec(**data)


def schema_from_dict(s: dict) -> LinkageSchema:
    """A [schema] table (project TOML, a scenario's scenario.toml) over the defaults."""
    known = {"fields", "filter_bits", "threshold", "auto_threshold", "hardening", "comparison", "id_segment_bits"}
    extra = set(s) - known
    if extra:
        raise SchemaError(f"schema: unknown keys {sorted(extra)}; known: {sorted(known)}")
    schema = LinkageSchema()
    if s.get("comparison") == "segments":
        schema = replace(schema, fields=SEGMENT_FIELDS)
    if "fields" in s:
        schema = replace(schema, fields=tuple(_field_spec(i, f) for i, f in enumerate(s["fields"])))
    return replace(schema, **{k: v for k, v in s.items() if k != "fields"})


def schema_columns(schema: "LinkageSchema") -> tuple[str, ...]:
    """The extract columns an agent reads for this schema, in field order."""
    return tuple(dict.fromkeys(c for f in schema.fields for c in f.column.split("+")))


# Report cells of fewer people than k are withheld; k never goes below the
# project's floor, and no floor below 3.
DEFAULT_SUPPRESSION_FLOOR = 5
MIN_SUPPRESSION_FLOOR = 3


def _digested(schema: LinkageSchema) -> dict:
    """The schema as the digest sees it: the segment settings only where they are used,
    so a record-level project's digest is what it was before segments existed, and
    one without an ID segment what it was before ID segments existed."""
    data = asdict(schema)
    if not schema.id_segment_words():
        del data["id_segment_bits"]
    if schema.comparison == "record":
        del data["comparison"]
        for f in data["fields"]:
            del f["segment_bits"], f["group"]
    return data


@dataclass(frozen=True)
class Project:
    project_id: str
    departments: dict[str, tuple[str, ...]]  # department -> declared indicators
    schema: LinkageSchema = field(default_factory=LinkageSchema)
    reference_date: str = ""  # ISO date; ages and periods are taken at it
    rules_toml: str = ""  # the rule pack; empty means the default pack
    # The least suppression k the project's rule pack may ever set: fixed at
    # creation, so no later change (even an approved one) lowers it.
    suppression_floor: int = DEFAULT_SUPPRESSION_FLOOR

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
        if not isinstance(self.suppression_floor, int) or self.suppression_floor < MIN_SUPPRESSION_FLOOR:
            raise SchemaError(f"suppression_floor: {self.suppression_floor!r} is below {MIN_SUPPRESSION_FLOOR}: "
                              "report cells of fewer people than that could single someone out")
        self.schema.validate()

    def digest(self) -> str:
        """SHA-256 over what determines an encoding: the project id and the schema."""
        canon = json.dumps({"project_id": self.project_id, "schema": _digested(self.schema)}, sort_keys=True)
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
        known = {"project_id", "departments", "schema", "reference_date", "rules", "suppression_floor"}
        extra = set(data) - known
        if extra:
            raise SchemaError(f"unknown keys {sorted(extra)}; known: {sorted(known)}")
        depts = data.get("departments", list(DEPARTMENTS))
        if isinstance(depts, list):
            depts = {d: DEFAULT_INDICATORS.get(d, ()) for d in depts}
        else:
            depts = {d: tuple(v.get("indicators", DEFAULT_INDICATORS.get(d, ()))) for d, v in depts.items()}
        schema = schema_from_dict(data.get("schema", {}))
        rules = data.get("rules", "")
        if rules:
            rules = Path(rules).read_text(encoding="utf-8")
        project = cls(str(data.get("project_id", "")), depts, schema, str(data.get("reference_date", "")), rules,
                      data.get("suppression_floor", DEFAULT_SUPPRESSION_FLOOR))
        project.validate()
        return project
