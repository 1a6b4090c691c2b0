"""Turn an extract into what may leave the department: filters, encrypted
references and declared indicators, cut into numbered batches with digests,
frame by frame as the extract is read (agents.extract.Extract), so the agent's
memory does not grow with the extract: the upload's digest needs every batch's,
so the extract is read and encoded once for the digests (32 bytes a batch are
kept) and again as the batches are sent.

Everything here is deterministic for a given extract, project and keys, so a
restarted upload produces the same batches and the coordinator recognises the
ones it already stored.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date

import pandas as pd

from agents.extract import CHUNK, ExtractError
from agents.hardening import HardenedEncoder
from agents.households import household_key, household_tokens
from agents.indicators import IndicatorError, derive
from agents.normalise import feature_columns, parse_resident_ids
from agents.quality import QualitySummary
from agents.refs import RefCipher
from fedlink.rules import load_rulepack
from fedlink.schema import DEFAULT_SCRIPT, HOUSEHOLD_DEPARTMENTS, Project
from fedlink.wire import batch_digest, upload_digest

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


class ExtractChanged(ExtractError):
    """The extract read while sending is not the one read before BeginUpload."""


class Batches:
    """An upload's batches, made again from the extract each time they are iterated
    (`source(skip)` reads it anew and encodes only the batches not in `skip`), so no
    more than one frame and one batch is held at a time. Each batch is checked
    against the digest the first reading gave: a file changed in between is refused
    instead of sending a mixture."""

    def __init__(self, source: Callable[[frozenset[int]], Iterator[Batch]], digests: Sequence[bytes],
                 sizes: Sequence[int], where: str = "extract"):
        self._source, self.digests, self.sizes, self._where = source, tuple(digests), tuple(sizes), where

    @classmethod
    def held(cls, batches: Sequence[Batch]) -> "Batches":
        """Batches already in memory (a test's or a bench's altered copy)."""
        return cls(lambda skip: (b for b in batches if b.seq not in skip), [b.digest for b in batches],
                   [len(b) for b in batches])

    def __len__(self) -> int:
        return len(self.sizes)

    def __iter__(self) -> Iterator[Batch]:
        return self.without(frozenset())

    def __getitem__(self, at: int | slice) -> Batch | list[Batch]:
        wanted = range(len(self))[at]
        picked = list(self.without(frozenset(range(len(self))) - set(wanted if isinstance(at, slice) else [wanted])))
        return picked if isinstance(at, slice) else picked[0]

    def without(self, skip: Iterable[int]) -> Iterator[Batch]:
        """The batches whose seq is not in `skip`, in order."""
        skip = frozenset(skip)
        for b in self._source(skip):
            if b.seq >= len(self.digests) or b.digest != self.digests[b.seq]:
                raise ExtractChanged(f"{self._where}: the extract changed while it was being uploaded (batch {b.seq} "
                                     "differs from when it was read); run the upload again once the file is final")
            yield b


@dataclass(frozen=True)
class PreparedUpload:
    department: str
    batches: Batches
    digest: bytes
    schema_digest: str
    quality: QualitySummary | None = None  # the extract's data-quality summary (agents/quality.py), sent along

    @property
    def record_count(self) -> int:
        return sum(self.batches.sizes)


def reference_date(project: Project) -> date:
    return date.fromisoformat(project.reference_date) if project.reference_date else date.today()


def _births_for_age(features: dict[str, list[str]], birth_field: str, id_field: str, n: int) -> list[str]:
    births = features[birth_field] if birth_field else [""] * n
    if not id_field:
        return births
    ids = parse_resident_ids(features[id_field])
    return [r.birth_date if r.valid else b for r, b in zip(ids, births)]


class Encoding:
    """What turns a frame of the extract into what may leave the department: filters,
    encrypted references, declared indicators and household tokens, one per record."""

    def __init__(self, department: str, project: Project, secret: bytes, ref_key: bytes,
                 source: str = "extract", script: str = DEFAULT_SCRIPT):
        # The project's hardening (agents/hardening.py) applies before anything leaves the department.
        self.encoder = HardenedEncoder(project.schema, secret, project.project_id)
        self.fields = [(f.name, f.kind, f.column) for f in project.schema.fields]
        # Ages for the indicators: the birth date inside a valid resident ID (its
        # check character vouches for it), else the schema's (first) birth-date
        # field, which has no check: a typed 2011 for 2019 made a five-year-old
        # "of compulsory-school age" and flagged him as missing from school.
        self.birth_field = next((f.name for f in project.schema.fields if f.kind == "date"), "")
        self.id_field = next((f.name for f in project.schema.fields if f.kind == "resident_id"), "")
        self.cipher = RefCipher(ref_key, project.project_id, department)
        self.pack = load_rulepack(project.rules_toml, source=f"project {project.project_id} rules")
        self.department, self.declared = department, project.departments[department]
        self.as_of, self.source, self.script = reference_date(project), source, script
        # Household tokens go only where the pack evaluates households, and only from a household register.
        self.hh_key = (household_key(ref_key, project.project_id, department)
                       if department in HOUSEHOLD_DEPARTMENTS and self.pack.household_indicators else None)

    def records(self, chunk: pd.DataFrame) -> list[tuple]:
        """(ref, clk, indicators, household token or None) per row."""
        features = feature_columns(chunk, self.fields, self.script)
        births = pd.Series(_births_for_age(features, self.birth_field, self.id_field, len(chunk)),
                           index=chunk.index, dtype=object)
        try:
            ind = derive(self.department, chunk, births, self.pack, self.as_of, self.declared)
        except IndicatorError as e:
            raise IndicatorError(f"{self.source}: {e}") from None
        clks = [row.tobytes() for row in self.encoder.encode(features)]
        refs = [self.cipher.encrypt(rid) for rid in chunk["record_id"]]
        indicators = [{k: int(v) for k, v in d.items()} for d in ind.to_dict("records")]
        if self.hh_key is None:
            households = [None] * len(chunk)
        else:
            households = household_tokens(chunk["household_id"] if "household_id" in chunk
                                          else pd.Series("", index=chunk.index), self.hh_key)
        return list(zip(refs, clks, indicators, households))


def batches(frames: Iterable[pd.DataFrame], encoding: Encoding, batch_size: int, skip: frozenset[int] = frozenset(),
            progress: Callable[[int], None] | None = None) -> Iterator[Batch]:
    """The frames' records cut into numbered batches of `batch_size`; a frame whose
    records all fall in batches of `skip` is counted, not encoded (a resumed upload)."""
    pending: list = []
    seq = position = 0
    for frame in frames:
        n = len(frame)
        touched = range(position // batch_size, (position + n - 1) // batch_size + 1)
        pending.extend([None] * n if all(s in skip for s in touched) else encoding.records(frame))
        position += n
        while len(pending) >= batch_size:
            if seq not in skip:
                yield _batch(seq, pending[:batch_size], encoding.hh_key is not None)
            del pending[:batch_size]
            seq += 1
        if progress:
            progress(n)
    if pending and seq not in skip:
        yield _batch(seq, pending, encoding.hh_key is not None)


def _batch(seq: int, records: list[tuple], households: bool) -> Batch:
    refs, clks, indicators, tokens = (list(c) for c in zip(*records))
    if not households:
        return Batch(seq, refs, clks, indicators, batch_digest(zip(refs, clks, indicators)))
    return Batch(seq, refs, clks, indicators, batch_digest(zip(refs, clks, indicators, tokens)), tokens)


def prepare(frames: Callable[[], Iterable[pd.DataFrame]] | pd.DataFrame, department: str, project: Project,
            secret: bytes, ref_key: bytes, batch_size: int, source: str = "extract",
            progress: Callable[[int], None] | None = None, script: str = DEFAULT_SCRIPT,
            observe: Callable[[pd.DataFrame], None] | None = None) -> PreparedUpload:
    """Read and encode the extract once for the upload's digests (holding only the
    digests), and return the upload, whose batches are made again as they are sent.
    `frames` gives the extract's frames anew at each call (or is a whole frame);
    `observe` sees each frame of that first reading (the quality summary's tally)."""
    if isinstance(frames, pd.DataFrame):
        whole = frames
        frames = lambda: (whole.iloc[i:i + CHUNK] for i in range(0, len(whole), CHUNK))  # noqa: E731
    encoding = Encoding(department, project, secret, ref_key, source, script)
    digests, sizes = [], []
    first = frames() if observe is None else (observe(f) or f for f in frames())
    for b in batches(first, encoding, batch_size, progress=progress):
        digests.append(b.digest)
        sizes.append(len(b))
    schema_digest = project.digest()
    made = Batches(lambda skip: batches(frames(), encoding, batch_size, skip), digests, sizes, source)
    return PreparedUpload(department, made, upload_digest(schema_digest, digests), schema_digest)
