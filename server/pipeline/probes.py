"""Signals of probing: a department's extract cannot be verified, so what a
probe must do is made visible. Per department and run: records first seen
in its latest upload (since the previous run), records that appeared in one
upload and were gone in the next (counted at commit, server/domain/uploads.py),
flags resting on its new records, and flags held back on them
(pipeline/disclosure.py). They count records, and are not suppressed: a
probe of three rows must show as three."""
from __future__ import annotations

import json

import numpy as np
from sqlalchemy import select

from server import queries as q
from server import store as t
from server.pipeline.link import DepartmentRecords

SIGNALS = ("records_first_seen", "records_short_lived", "flags_on_first_seen_records", "flags_held")


def previous_run_uploads(conn, project_id: str, run_id: str) -> dict[str, str]:
    """The upload of each department that the project's previous finished run used."""
    row = q.previous_done_run(conn, project_id, run_id)
    return dict(row.uploads or {}) if row is not None else {}


def first_seen(conn, dept: DepartmentRecords, baseline: str | None, current: str) -> np.ndarray:
    """Mask over the department's records: its reference was not in the upload
    the previous run used. The first run is the baseline: nothing is new."""
    if baseline is None or baseline == current:
        return np.zeros(len(dept.refs), dtype=bool)
    before = set(conn.execute(select(t.records.c.ref).where(t.records.c.upload_id == baseline)).scalars())
    return np.fromiter((r not in before for r in dept.refs), dtype=bool, count=len(dept.refs))


def short_lived_records(conn, project_id: str, run_id: str) -> dict[str, int]:
    """Per department: records that appeared in one upload and were gone in
    the next, over the uploads committed since the previous run started."""
    this = q.run(conn, run_id)
    previous = q.previous_done_run(conn, project_id, run_id)
    since = previous.created_at if previous is not None else 0.0
    out: dict[str, int] = {}
    for body in q.audit_bodies(conn, project_id, "upload.commit"):
        e = json.loads(body)
        if since < e["ts"] <= this.created_at:
            out[e["department"]] = out.get(e["department"], 0) + int(e["details"].get("records_short_lived", 0))
    return out


def probe_signals(order: list[str], new_records: dict[str, np.ndarray], short_lived: dict[str, int],
                  flag_rows: list[dict]) -> dict[str, dict[str, int]]:
    out = {d: {"records_first_seen": int(np.count_nonzero(new_records.get(d, ()))),
               "records_short_lived": short_lived.get(d, 0), "flags_on_first_seen_records": 0, "flags_held": 0}
           for d in order}
    for r in flag_rows:
        if r["person"] < 0:
            continue  # a previous run's flag carried on
        if r["status"] == "held":
            out[r["department"]]["flags_held"] += 1
        for source in r["detail"].get("first_seen", []):
            out[source]["flags_on_first_seen_records"] += 1
    return out
