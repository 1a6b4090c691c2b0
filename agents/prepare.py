"""Turn an extract into what may leave the department: filters, encrypted
references and declared indicators, cut into numbered batches with digests.

Everything here is deterministic for a given extract, project and keys, so a
restarted upload produces the same batches and the coordinator recognises the
ones it already stored.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Callable

import pandas as pd

from agents.hardening import HardenedEncoder
from agents.households import household_key, household_tokens
from agents.indicators import IndicatorError, derive
from agents.normalise import feature_columns, parse_resident_ids
from agents.quality import QualitySummary
from agents.refs import RefCipher
from fedlink.rules import load_rulepack
from fedlink.schema import DEFAULT_SCRIPT, HOUSEHOLD_DEPARTMENTS, Project
from fedlink.wire import batch_digest, upload_digest

CHUNK = 5000


@dataclass(frozen=True)
class Batch:
    seq: int
    refs: list[bytes]
    clks: list[bytes]
    indicators: list[dict[str, int]]
    digest: bytes
    households: list[bytes] | None = None  # keyed household tokens (agents/households.py), where sent

    def __len__(self) -> int:
        return len(self.refs)


@dataclass(frozen=True)
class PreparedUpload:
    department: str
    batches: list[Batch]
    digest: bytes
    schema_digest: str
    quality: QualitySummary | None = None  # the extract's data-quality summary (agents/quality.py), sent along

    @property
    def record_count(self) -> int:
        return sum(len(b) for b in self.batches)


def reference_date(project: Project) -> date:
    return date.fromisoformat(project.reference_date) if project.reference_date else date.today()


def _births_for_age(features: dict[str, list[str]], birth_field: str, id_field: str, n: int) -> list[str]:
    births = features[birth_field] if birth_field else [""] * n
    if not id_field:
        return births
    ids = parse_resident_ids(features[id_field])
    return [r.birth_date if r.valid else b for r, b in zip(ids, births)]


def prepare(frame: pd.DataFrame, department: str, project: Project, secret: bytes, ref_key: bytes,
            batch_size: int, source: str = "extract", progress: Callable[[int], None] | None = None,
            script: str = DEFAULT_SCRIPT) -> PreparedUpload:
    # The project's hardening (agents/hardening.py) applies before anything leaves the department.
    encoder = HardenedEncoder(project.schema, secret, project.project_id)
    fields = [(f.name, f.kind, f.column) for f in project.schema.fields]
    # Ages for the indicators: the birth date inside a valid resident ID (its
    # check character vouches for it), else the schema's (first) birth-date
    # field, which has no check: a typed 2011 for 2019 made a five-year-old
    # "of compulsory-school age" and flagged him as missing from school.
    birth_field = next((f.name for f in project.schema.fields if f.kind == "date"), "")
    id_field = next((f.name for f in project.schema.fields if f.kind == "resident_id"), "")
    cipher = RefCipher(ref_key, project.project_id, department)
    pack = load_rulepack(project.rules_toml, source=f"project {project.project_id} rules")
    declared = project.departments[department]
    as_of = reference_date(project)
    # Household tokens go only where the pack evaluates households, and only from a household register.
    hh_key = (household_key(ref_key, project.project_id, department)
              if department in HOUSEHOLD_DEPARTMENTS and pack.household_indicators else None)
    households: list[bytes] = []
    refs: list[bytes] = []
    clks: list[bytes] = []
    indicators: list[dict[str, int]] = []
    for start in range(0, len(frame), CHUNK):
        chunk = frame.iloc[start:start + CHUNK]
        features = feature_columns(chunk, fields, script)
        births = pd.Series(_births_for_age(features, birth_field, id_field, len(chunk)), index=chunk.index,
                           dtype=object)
        try:
            ind = derive(department, chunk, births, pack, as_of, declared)
        except IndicatorError as e:
            raise IndicatorError(f"{source}: {e}") from None
        packed = encoder.encode(features)
        clks.extend(row.tobytes() for row in packed)
        refs.extend(cipher.encrypt(rid) for rid in chunk["record_id"])
        indicators.extend(ind.to_dict("records"))
        if hh_key is not None:
            households.extend(household_tokens(chunk["household_id"] if "household_id" in chunk
                                               else pd.Series("", index=chunk.index), hh_key))
        if progress:
            progress(len(chunk))
    indicators = [{k: int(v) for k, v in d.items()} for d in indicators]
    batches = []
    for seq, start in enumerate(range(0, len(refs), batch_size)):
        part = slice(start, start + batch_size)
        b_refs, b_clks, b_ind = refs[part], clks[part], indicators[part]
        if hh_key is None:
            batches.append(Batch(seq, b_refs, b_clks, b_ind, batch_digest(zip(b_refs, b_clks, b_ind))))
        else:
            b_hh = households[part]
            batches.append(Batch(seq, b_refs, b_clks, b_ind, batch_digest(zip(b_refs, b_clks, b_ind, b_hh)), b_hh))
    schema_digest = project.digest()
    return PreparedUpload(department, batches, upload_digest(schema_digest, [b.digest for b in batches]),
                          schema_digest)
