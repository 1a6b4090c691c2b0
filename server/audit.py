"""The coordinator's side of the audit log: the Merkle tree over the stored
events, signed tree heads, and proofs.

Events are appended by `Store.audit` inside the transaction of what they
record; this module reads the committed ones, in sequence order, into an
in-memory tree (rebuilt from the database at start), so every head it signs
covers exactly what is stored.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Iterator

from sqlalchemy import select

from fedlink import merkle
from fedlink.audit import TreeHead, event_leaf, load_signing_key, new_signing_key, public_path, sign_tree_head
from server import store as t
from server.store import Store


# Every kind of event the coordinator writes (tests/test_errors.py checks each
# `audit(conn, actor, "kind", ...)` in server/ is here), for `audit log --kind`.
EVENT_KINDS = (
    "audit.read", "audit.read.repeated", "call.refused", "call.refused.repeated", "clock.stepped", "console.view", "flags.deliver",
    "linkage.update", "project.create", "project.key_check_pinned", "project.key_check_reset", "project.list",
    "project.read", "proposal.approve", "proposal.create", "proposal.expire", "proposal.reject",
    "proposal.superseded", "report.read", "retention.failed", "retention.purge", "review.outcome", "rules.update",
    "run.done", "run.failed", "run.list", "run.start", "run.watch", "schedule.clear", "schedule.read",
    "schedule.set", "schedule.skipped", "upload.batch", "upload.batches", "upload.begin", "upload.commit",
    "upload.expired", "upload.health", "upload.resume",
)


class AuditLog:
    def __init__(self, store: Store, key_path: Path):
        key_path = Path(key_path)
        if not key_path.exists():
            new_signing_key(key_path)
        self.store = store
        self._key = load_signing_key(key_path)
        self.public_pem = public_path(key_path).read_text()
        self._tree = merkle.MerkleTree()
        self._lock = threading.Lock()
        self._latest_ms = 0  # no head is signed with a time before an event it covers or a head before it

    def _sync(self) -> None:
        with self.store.read() as conn:
            rows = conn.execute(select(t.audit_events.c.seq, t.audit_events.c.body, t.audit_events.c.ts).where(
                t.audit_events.c.seq >= self._tree.size).order_by(t.audit_events.c.seq)).all()
        for seq, body, ts in rows:
            if seq != self._tree.size:
                break  # a gap: an event still being written; the next head covers it
            self._tree.append_leaf_hash(event_leaf(body))
            self._latest_ms = max(self._latest_ms, int(ts * 1000))

    def tree_head(self) -> TreeHead:
        with self._lock:
            self._sync()
            size = self._tree.size
            # A clock that stepped back (reported by the store's EventClock) never dates a head backwards.
            self._latest_ms = max(self._latest_ms, int(time.time() * 1000))
            return sign_tree_head(self._key, size, self._tree.root(size), self._latest_ms)

    def consistency(self, old_size: int, new_size: int) -> list[bytes]:
        with self._lock:
            self._sync()
            if not 0 < old_size <= new_size <= self._tree.size:
                raise ValueError(f"no consistency proof from {old_size} to {new_size}: the log has "
                                 f"{self._tree.size} events and proofs need 0 < old <= new")
            return self._tree.consistency_proof(old_size, new_size)

    def inclusion(self, index: int, size: int) -> list[bytes]:
        with self._lock:
            self._sync()
            if not 0 <= index < size <= self._tree.size:
                raise ValueError(f"no inclusion proof for event {index} in a tree of {size}: the log has "
                                 f"{self._tree.size} events")
            return self._tree.inclusion_proof(index, size)

    def kinds(self) -> list[str]:
        """The kinds an officer may filter on: every kind written, and any older one the log holds."""
        with self.store.read() as conn:
            stored = conn.execute(select(t.audit_events.c.kind).distinct()).scalars().all()
        return sorted({*EVENT_KINDS, *stored})

    def events(self, start: int = 0, end: int = 0, *, actor: str = "", kind: str = "", department: str = "",
               since: float = 0.0, until: float = 0.0) -> Iterator[tuple[int, str]]:
        c = t.audit_events.c
        q = select(c.seq, c.body).where(c.seq >= start)
        if end:
            q = q.where(c.seq < end)
        for column, value in ((c.actor, actor), (c.kind, kind), (c.department, department)):
            if value:
                q = q.where(column == value)
        if since:
            q = q.where(c.ts >= since)
        if until:
            q = q.where(c.ts < until)
        with self.store.read() as conn:
            for row in conn.execute(q.order_by(c.seq)):
                yield row.seq, row.body
