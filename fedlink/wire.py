"""Digests both sides compute over what crosses the wire, so that a batch is
identified by its content (a re-sent batch is recognised, a changed one is
refused) and an upload by its batches (an interrupted upload is found again)."""
from __future__ import annotations

import hashlib
from typing import Iterable, Mapping, Sequence


def batch_digest(records: Iterable[tuple[bytes, bytes, Mapping[str, int]]]) -> bytes:
    h = hashlib.sha256(b"fedlink/v1/batch\0")
    for ref, clk, indicators in records:
        h.update(len(ref).to_bytes(4, "big") + ref)
        h.update(len(clk).to_bytes(4, "big") + clk)
        items = sorted(indicators.items())
        h.update(len(items).to_bytes(4, "big"))
        for name, value in items:
            raw = name.encode()
            h.update(len(raw).to_bytes(4, "big") + raw + int(value).to_bytes(4, "big", signed=True))
    return h.digest()


def upload_digest(schema_digest: str, batch_digests: Sequence[bytes]) -> bytes:
    h = hashlib.sha256(b"fedlink/v1/upload\0" + schema_digest.encode())
    for d in batch_digests:
        h.update(d)
    return h.digest()


def project_to_pb(project):
    from fedlink.v1 import coordinator_pb2 as pb

    s = project.schema
    return pb.Project(
        project_id=project.project_id,
        schema=pb.LinkageSchema(
            filter_bits=s.filter_bits, threshold=s.threshold, hardening=s.hardening,
            fields=[pb.FieldSpec(name=f.name, hashes=f.hashes, qgram=f.qgram) for f in s.fields]),
        departments=[pb.DepartmentSpec(name=d, indicators=list(ind)) for d, ind in project.departments.items()],
        reference_date=project.reference_date,
        rules_toml=project.rules_toml,
        schema_digest=project.digest(),
    )


def project_from_pb(msg):
    from fedlink.schema import FieldSpec, LinkageSchema, Project

    schema = LinkageSchema(
        filter_bits=msg.schema.filter_bits,
        fields=tuple(FieldSpec(f.name, f.hashes, f.qgram) for f in msg.schema.fields),
        threshold=msg.schema.threshold,
        hardening=msg.schema.hardening or "none",
    )
    return Project(msg.project_id, {d.name: tuple(d.indicators) for d in msg.departments}, schema,
                   msg.reference_date, msg.rules_toml)
