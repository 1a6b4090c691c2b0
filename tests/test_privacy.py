"""Raw identifiers never leave an agent: capture every message that reaches
the coordinator's servicer, every log line, and the coordinator's database
file, and look for each identifier of the extract in them."""
from __future__ import annotations

import logging

import grpc
import pandas as pd

from agents.client import Agent
from agents.config import load_config
from agents.normalise import normalise_record
from fedlink.schema import DEPARTMENTS

from conftest import log_key_for
from dbutil import new_database, stored_bytes
from fedlink.audit import vkey_path


class Capture(grpc.ServerInterceptor):
    """Records the serialised bytes of every request message a handler receives."""

    def __init__(self):
        self.messages: list[bytes] = []

    def intercept_service(self, continuation, details):
        handler = continuation(details)
        if handler is None:
            return None

        def unary(behaviour):
            return lambda request, context: behaviour(self._keep(request), context)

        def streamed(behaviour):
            return lambda requests, context: behaviour((self._keep(r) for r in requests), context)

        return handler._replace(
            unary_unary=handler.unary_unary and unary(handler.unary_unary),
            unary_stream=handler.unary_stream and unary(handler.unary_stream),
            stream_unary=handler.stream_unary and streamed(handler.stream_unary),
            stream_stream=handler.stream_stream and streamed(handler.stream_stream),
        )

    def _keep(self, message):
        self.messages.append(message.SerializeToString())
        return message


def identifiers(frame: pd.DataFrame) -> set[str]:
    """Every raw identifying value of the extract, as written and as normalised."""
    values = set()
    for row in frame.to_dict("records"):
        norm = normalise_record(row)
        for col in ("name", "resident_id", "birth_date", "address", "phone"):
            values.update(v for v in (row[col], norm[col]) if len(v) >= 4)
        if len(norm["name_pinyin"]) >= 6:
            values.add(norm["name_pinyin"])
    return values


def test_nothing_identifying_crosses_the_wire_or_reaches_logs_or_the_store(pki, tmp_path, scenario, secret_file,
                                                                          caplog):
    from agents.extract import read_extract
    from procs import agent_folder
    from fedlink.operator import Operator
    from fedlink.pki import credentials_for
    from fedlink.schema import Project
    from server.serve import start

    capture = Capture()
    db = new_database(tmp_path)
    running = start("127.0.0.1:0", db, credentials=credentials_for(pki, "coordinator"), interceptors=(capture,),
                    audit_key=log_key_for(tmp_path), witnesses=pki / "coordinator" / "witnesses.toml")
    address = f"127.0.0.1:{running.port}"
    caplog.set_level(logging.DEBUG)
    try:
        with Operator.connect(address, pki) as op:
            op.create_project(Project.default("pilot", reference_date="2025-06-30"))
        raw = set()
        for d in DEPARTMENTS:
            config = agent_folder(tmp_path / d, d, scenario / f"{d}.csv", address, pki, secret_file,
                                  log_key=vkey_path(log_key_for(tmp_path)))
            with Agent(load_config(config), show_progress=False) as agent:
                agent.upload()
            raw |= identifiers(read_extract(scenario / f"{d}.csv", d))
        with Operator.connect(address, pki) as op:
            run_id = op.start_run("pilot")
            assert op.watch(run_id) == "done"
    finally:
        running.stop(grace=2)

    wire = b"\x00".join(capture.messages)
    assert len(capture.messages) > 10 and len(raw) > 1000
    leaked = sorted(v for v in raw if v.encode() in wire)
    assert not leaked, f"raw identifiers on the wire: {leaked[:5]}"
    logs = "\n".join(r.getMessage() for r in caplog.records)
    assert not [v for v in raw if v in logs], "a log line carries a raw identifier"
    stored = stored_bytes(db)  # every value of every table, and SQLite's files themselves
    assert not [v for v in raw if v.encode() in stored], "the coordinator's store holds a raw identifier"


class Responses(grpc.ServerInterceptor):
    """Records the serialised bytes of every response message a handler sends, by who called."""

    def __init__(self):
        self.sent: dict[str, list] = {}

    def intercept_service(self, continuation, details):
        handler = continuation(details)
        if handler is None:
            return None

        def single(behaviour):
            def call(request, context):
                return self._keep(context, behaviour(request, context))
            return call

        def streamed(behaviour):
            def call(request, context):
                for response in behaviour(request, context):
                    yield self._keep(context, response)
            return call

        return handler._replace(
            unary_unary=handler.unary_unary and single(handler.unary_unary),
            unary_stream=handler.unary_stream and streamed(handler.unary_stream),
            stream_unary=handler.stream_unary and single(handler.stream_unary),
            stream_stream=handler.stream_stream and streamed(handler.stream_stream),
        )

    def _keep(self, context, response):
        from fedlink.identity import identity_from_grpc_context

        who = identity_from_grpc_context(context)
        self.sent.setdefault(who.department or who.role, []).append(response)
        return response


def test_a_department_never_receives_another_departments_filters_or_scores(pki, tmp_path, scenario, secret_file):
    """Every response sent to each agent over a whole flow (upload, run, flags): no filter
    bytes of any department, and no Dice score of a link between two other departments' records."""
    from sqlalchemy import select

    from agents.encoding import dice
    from procs import agent_folder
    from fedlink.operator import Operator
    from fedlink.pki import credentials_for
    from fedlink.schema import LinkageSchema, Project
    from server import store as t
    from server.serve import start

    ID_BYTES = LinkageSchema().id_segment_words() * 8  # the ID segment ends every filter
    blank_id = lambda clk: not any(clk[-ID_BYTES:])  # noqa: E731

    responses = Responses()
    running = start("127.0.0.1:0", new_database(tmp_path), credentials=credentials_for(pki, "coordinator"),
                    interceptors=(responses,), audit_key=log_key_for(tmp_path), witnesses=pki / "coordinator" / "witnesses.toml")
    address = f"127.0.0.1:{running.port}"
    try:
        with Operator.connect(address, pki) as op:
            op.create_project(Project.default("pilot", reference_date="2025-06-30"))
        configs = {}
        for d in DEPARTMENTS:
            config = agent_folder(tmp_path / d, d, scenario / f"{d}.csv", address, pki, secret_file,
                                  log_key=vkey_path(log_key_for(tmp_path)))
            configs[d] = load_config(config)
            with Agent(configs[d], show_progress=False) as agent:
                agent.upload()
        with Operator.connect(address, pki) as op:
            run_id = op.start_run("pilot")
            assert op.watch(run_id) == "done"
        for d in DEPARTMENTS:
            with Agent(configs[d], show_progress=False) as agent:
                agent.pull_flags(run_id)
        with running.coordinator.store.read() as conn:
            stored = conn.execute(
                select(t.uploads.c.department, t.records.c.ref, t.records.c.clk, t.links.c.person)
                .join(t.records, t.records.c.upload_id == t.uploads.c.upload_id)
                .join(t.links, t.links.c.record_id == t.records.c.id)
                .where(t.links.c.run_id == run_id)).all()
    finally:
        running.stop(grace=2)

    # Every 16-byte aligned piece of every filter: a filter anywhere in a response contains one.
    pieces = {r.clk[i:i + 16] for r in stored for i in range(0, len(r.clk), 16)} - {bytes(16)}
    members: dict[int, list] = {}
    for r in stored:
        members.setdefault(r.person, []).append(r)
    own_links = other_links = 0
    for d in DEPARTMENTS:
        sent = responses.sent[d]
        blob = b"\x00".join(m.SerializeToString() for m in sent)
        assert not any(blob[i:i + 16] in pieces for i in range(len(blob) - 15)), f"{d} received filter bytes"
        flags = [m for m in sent if m.DESCRIPTOR.name == "Flag"]
        for f in flags:
            person = next(members[r.person] for r in stored if r.department == d and r.ref == f.ref)
            mine = next(r for r in person if r.department == d)
            # A pair where either ID segment is blank carries the Dice of the rest (server/pipeline/presence.py).
            allowed = [dice(mine.clk, x.clk) if not blank_id(mine.clk) and not blank_id(x.clk)
                       else dice(mine.clk[:-ID_BYTES], x.clk[:-ID_BYTES]) for x in person if x is not mine]
            others = [dice(a.clk, b.clk) for i, a in enumerate(person) for b in person[i + 1:]
                      if mine not in (a, b)]
            own_links += len(f.match_scores)
            other_links += len(others)
            assert len(f.match_scores) <= len(allowed)
            for s in f.match_scores:
                assert any(abs(s - a) < 1e-4 for a in allowed), f"{d} got a score of a link not to its record"
                assert not any(abs(s - o) < 1e-4 for o in others if all(abs(o - a) >= 1e-4 for a in allowed)), \
                    f"{d} got the score of a link between two other departments' records"
    # The flow must have had flags whose person spans three or more departments, or the test would not bite.
    assert own_links and other_links, "no flagged person linked across three departments"
