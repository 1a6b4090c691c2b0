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
    from agents.refs import new_key
    from bench.harness import write_agent_config
    from fedlink.operator import Operator
    from fedlink.pki import credentials_for
    from fedlink.schema import Project
    from server.serve import start

    capture = Capture()
    db = tmp_path / "coordinator.sqlite"
    running = start("127.0.0.1:0", db, credentials=credentials_for(pki, "coordinator"), interceptors=(capture,))
    address = f"127.0.0.1:{running.port}"
    caplog.set_level(logging.DEBUG)
    try:
        with Operator.connect(address, pki) as op:
            op.create_project(Project.default("pilot", reference_date="2025-06-30"))
        raw = set()
        for d in DEPARTMENTS:
            work = tmp_path / d
            work.mkdir()
            (work / "pki").symlink_to(pki)
            (work / "project.secret").write_text(secret_file.read_text())
            config = write_agent_config(work, d, scenario / f"{d}.csv", address, {})
            config.write_text(config.read_text().replace('"bench"', '"pilot"'))
            new_key(load_config(config).ref_key_file)
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
    stored = db.read_bytes() + (db.with_suffix(".sqlite-wal").read_bytes() if db.with_suffix(".sqlite-wal").exists()
                                else b"")
    assert not [v for v in raw if v.encode() in stored], "the coordinator's store holds a raw identifier"
