"""Digests both sides compute over what crosses the wire, so that a batch is
identified by its content (a re-sent batch is recognised, a changed one is
refused) and an upload by its batches (an interrupted upload is found again)."""
from __future__ import annotations

import hashlib
from typing import Iterable, Sequence


def batch_digest(records: Iterable[tuple]) -> bytes:
    """Over (ref, clk, indicators) or (ref, clk, indicators, household token) per record."""
    parts = [b"fedlink/v1/batch\0"]
    encoded: dict[tuple, bytes] = {}  # a batch repeats few distinct indicator sets: each encoded once
    for ref, clk, indicators, *household in records:
        seen = tuple(indicators.items())
        ind = encoded.get(seen)
        if ind is None:
            ind = encoded[seen] = _indicators(indicators)
        if household and household[0]:
            # Tagged, so a record without a token digests as it always did; 0xFF
            # cannot start a reference's 4-byte length.
            parts.append(b"\xffH" + len(household[0]).to_bytes(2, "big") + household[0])
        parts += (len(ref).to_bytes(4, "big"), ref, len(clk).to_bytes(4, "big"), clk, ind)
    return hashlib.sha256(b"".join(parts)).digest()


def _indicators(indicators: dict) -> bytes:
    items = sorted(indicators.items())
    out = [len(items).to_bytes(4, "big")]
    for name, value in items:
        raw = name.encode()
        out.append(len(raw).to_bytes(4, "big") + raw + int(value).to_bytes(4, "big", signed=True))
    return b"".join(out)


def upload_digest(schema_digest: str, batch_digests: Sequence[bytes]) -> bytes:
    h = hashlib.sha256(b"fedlink/v1/upload\0" + schema_digest.encode())
    for d in batch_digests:
        h.update(d)
    return h.digest()


def project_to_pb(project):
    """The wire codec of a `Project`, for every side (coordinator, agents, operator)."""
    from fedlink.v1 import coordinator_pb2 as pb

    s = project.schema
    return pb.Project(
        project_id=project.project_id,
        schema=pb.LinkageSchema(
            filter_bits=s.filter_bits, threshold=s.threshold, hardening=s.hardening, auto_threshold=s.auto_threshold,
            comparison=s.comparison, id_segment_bits=s.id_segment_bits,
            fields=[pb.FieldSpec(name=f.name, hashes=f.hashes, qgram=f.qgram, kind=f.kind, column=f.column,
                                 segment_bits=f.segment_bits, group=f.group)
                    for f in s.fields]),
        departments=[pb.DepartmentSpec(name=d, indicators=list(ind)) for d, ind in project.departments.items()],
        reference_date=project.reference_date,
        rules_toml=project.rules_toml,
        schema_digest=project.digest(),
        suppression_floor=project.suppression_floor,
    )


def project_from_pb(msg):
    """A project from the wire. Only `hardening`, `comparison` and `id_segment_bits` can be told
    absent (proto3 has no presence for numbers and booleans, save an `optional` one, and an empty
    field list or a zero size is refused by validation, not filled in): absent, it is the schema's
    default. FieldSpec fills an empty kind and column itself."""
    from fedlink.schema import DEFAULT_SUPPRESSION_FLOOR, FieldSpec, LinkageSchema, Project

    schema = LinkageSchema(
        filter_bits=msg.schema.filter_bits,
        fields=tuple(FieldSpec(f.name, f.hashes, f.qgram, f.kind, f.column, f.segment_bits, f.group)
                     for f in msg.schema.fields),
        threshold=msg.schema.threshold,
        auto_threshold=msg.schema.auto_threshold,
        hardening=msg.schema.hardening or LinkageSchema.hardening,
        comparison=msg.schema.comparison or LinkageSchema.comparison,
        id_segment_bits=(msg.schema.id_segment_bits if msg.schema.HasField("id_segment_bits")
                         else LinkageSchema.id_segment_bits),
    )
    return Project(msg.project_id, {d.name: tuple(d.indicators) for d in msg.departments}, schema,
                   msg.reference_date, msg.rules_toml, msg.suppression_floor or DEFAULT_SUPPRESSION_FLOOR)
