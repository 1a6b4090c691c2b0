"""The link phase's bulk read of a department's upload returns exactly the records
the store holds, row for row, on SQLite and PostgreSQL."""
from __future__ import annotations

import numpy as np
from sqlalchemy import select

from agents.client import Agent
from agents.config import load_config
from server import store as t
from server.matching import pack_filters
from server.pipeline.link import household_numbers, load_department


def test_load_department_returns_the_stored_records(project, agent_config, coordinator):
    for department in ("housing", "population"):
        with Agent(load_config(agent_config(department, batch_size=97)), show_progress=False) as agent:
            agent.upload()
    with coordinator.coordinator.store.read() as conn:
        uploads = dict(conn.execute(select(t.uploads.c.department, t.uploads.c.upload_id)).all())
        for department, upload_id in uploads.items():
            loaded = load_department(conn, department, upload_id, project)
            # The store's rows one by one, through SQLAlchemy's own types.
            rows = conn.execute(select(t.records).where(t.records.c.upload_id == upload_id)
                                .order_by(t.records.c.id)).all()
            assert len(rows) > 100
            assert loaded.ids.dtype == np.int64 and loaded.ids.tolist() == [r.id for r in rows]
            assert loaded.refs == [bytes(r.ref) for r in rows] and all(type(x) is bytes for x in loaded.refs)
            assert np.array_equal(loaded.filters, pack_filters([r.clk for r in rows], project.schema.filter_bits))
            names = project.departments[department]
            assert names and set(loaded.indicators) == set(names)
            for n in names:
                assert loaded.indicators[n].tolist() == [r.indicators.get(n, 0) for r in rows]
            assert any(v.any() for v in loaded.indicators.values())
            expected = household_numbers([r.household for r in rows])
            assert (loaded.households is None and expected is None) or np.array_equal(loaded.households, expected)
