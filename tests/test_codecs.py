"""One codec for a Project per boundary, each with the schema model's defaults:
the store's (server/queries.py) and the wire's (fedlink/wire.py) give back the
project they were given, and a setting left out decodes to the default of
fedlink/schema.py."""
from __future__ import annotations

import pytest

from fedlink.schema import FieldSpec, LinkageSchema, Project
from fedlink.v1 import coordinator_pb2 as pb
from fedlink.wire import project_from_pb, project_to_pb

DEFAULT = Project.default("defaults", reference_date="2025-06-30")
# Every setting off its default, and a field of the project's own (kind and column given).
CUSTOM = Project(
    "custom", {"population": ("elderly",), "housing": ("multiple_properties",)},
    LinkageSchema(filter_bits=512, threshold=0.72, auto_threshold=False, hardening="blip-0.02", id_segment_bits=0,
                  fields=(FieldSpec("surname", hashes=9, qgram=3, kind="text", column="surname"),
                          FieldSpec("birth_date", hashes=5, qgram=0))),
    reference_date="2024-01-31", rules_toml="# a pack of its own\n")


@pytest.fixture
def store(tmp_path):
    from server.store import Store

    s = Store(tmp_path / "codecs.sqlite")
    yield s
    s.engine.dispose()


@pytest.mark.parametrize("project", [DEFAULT, CUSTOM], ids=["defaults", "custom"])
def test_store_round_trip_is_identity(store, project):
    from server import queries as q

    with store.write() as conn:
        q.insert_project(conn, project, "operator:test")
    with store.read() as conn:
        assert q.project(conn, project.project_id) == project


@pytest.mark.parametrize("project", [DEFAULT, CUSTOM], ids=["defaults", "custom"])
def test_wire_round_trip_is_identity(project):
    msg = project_to_pb(project)
    assert project_from_pb(pb.Project.FromString(msg.SerializeToString())) == project
    assert msg.schema_digest == project.digest()


def test_a_stored_row_without_a_setting_takes_the_schema_default(store):
    from sqlalchemy import update

    from server import queries as q
    from server import store as t

    with store.write() as conn:
        q.insert_project(conn, CUSTOM, "operator:test")
        spec = q.project_to_row(CUSTOM)["spec"]
        for key in ("auto_threshold", "hardening", "threshold", "filter_bits"):
            del spec["schema"][key]
        conn.execute(update(t.projects).where(t.projects.c.project_id == "custom").values(spec=spec))
    with store.read() as conn:
        schema = q.project(conn, "custom").schema
    defaults = LinkageSchema()
    assert (schema.auto_threshold, schema.hardening, schema.threshold, schema.filter_bits) == (
        defaults.auto_threshold, defaults.hardening, defaults.threshold, defaults.filter_bits)
    assert schema.fields == CUSTOM.schema.fields


def test_a_project_stored_before_the_id_segment_keeps_its_encoding(store):
    from sqlalchemy import update

    from server import queries as q
    from server import store as t

    with store.write() as conn:
        q.insert_project(conn, DEFAULT, "operator:test")
        spec = q.project_to_row(DEFAULT)["spec"]
        del spec["schema"]["id_segment_bits"]  # a row written before the setting existed
        conn.execute(update(t.projects).where(t.projects.c.project_id == "defaults").values(spec=spec))
    with store.read() as conn:
        old = q.project(conn, "defaults")
    # It was encoded with the ID in the record filter: that stays, and so does its digest.
    assert old.schema.id_segment_bits == 0 and old.schema.id_segment_words() == 0
    assert old.digest() != DEFAULT.digest() and DEFAULT.schema.id_segment_bits == 256
    # A wire message without the field (an older operator's) is a new project: the default.
    msg = project_to_pb(DEFAULT)
    msg.schema.ClearField("id_segment_bits")
    assert project_from_pb(msg).schema.id_segment_bits == 256


def test_an_empty_wire_field_decodes_to_the_schema_default():
    msg = project_to_pb(CUSTOM)
    msg.schema.hardening = ""
    msg.schema.fields[0].kind = ""
    msg.schema.fields[1].column = ""
    decoded = project_from_pb(msg)
    assert decoded.schema.hardening == LinkageSchema().hardening
    assert decoded.schema.fields[1] == FieldSpec("birth_date", hashes=5, qgram=0)  # kind and column of the built-in
    assert decoded.schema.fields[0].kind == FieldSpec("surname", 9).kind
    empty = project_from_pb(pb.Project(project_id="x"))
    assert (empty.reference_date, empty.rules_toml) == (Project("x", {}).reference_date, Project("x", {}).rules_toml)
