"""The coordinator's side of the audit log: the Merkle tree over the stored
events, the checkpoints it signs, the witnesses' cosignatures it holds, and
proofs; and the coordinator checking itself.

Events are appended by `Store.audit` inside the transaction of what they
record; this module reads the committed ones, in sequence order, into an
in-memory tree, so every checkpoint it signs covers exactly what is stored.

The database is not trusted to stay as signed. Every checkpoint signed is
also written beside the audit key (`audit-signing.checkpoint`, atomically,
0600) with the leaf hash of every event it covers (`audit-signing.leaves`).
At start, the events in the database are checked against both; while
running, every new checkpoint first re-reads the whole log and compares it
with the tree already signed. A deleted, edited, reordered or re-chained
event stops the coordinator from signing or serving: `LogTampered` names the
first bad event, is logged as CRITICAL, recorded as an `audit.alarm` event
and answered to every later call, until the operator restores the database.
"""
from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from sqlalchemy import JSON, cast, select, type_coerce

from fedlink import files, merkle
from fedlink.audit import (AuditError, check_roots, event_leaf, log_signing_key, new_signing_key, walk_chain,
                           write_vkey)
from fedlink.checkpoint import Checkpoint, CheckpointError, cosigners, open_checkpoint, sign_checkpoint
from fedlink.note import Note, NoteError, parse
from fedlink.witnessing import Roster
from server import faults
from server import store as t
from server.store import Store

log = logging.getLogger("fedlink.coordinator")


class LogTampered(AuditError):
    """The stored log is not the one this coordinator signed; nothing is signed or served until it is restored."""


class LogKeyMismatch(ValueError):
    """The database's log is signed with another audit key than this coordinator's."""


@dataclass(frozen=True)
class Served:
    """A checkpoint as served: the note (log signature and cosignatures held on it) and the witnesses' latest."""

    checkpoint: Note
    witnessed: tuple[Note, ...]


# Every kind of event the coordinator writes (tests/test_errors.py checks each
# `audit(conn, actor, "kind", ...)` in server/ is here), for `audit log --kind`.
EVENT_KINDS = (
    "audit.alarm", "audit.cosign", "audit.cosign.repeated", "audit.read", "audit.read.repeated", "call.refused",
    "clock.stepped",
    "call.refused.repeated", "console.view", "flags.deliver",
    "linkage.update", "project.create", "project.key_check_pinned", "project.key_check_reset", "project.list",
    "project.read", "proposal.approve", "proposal.create", "proposal.expire", "proposal.reject",
    "proposal.superseded", "report.read", "retention.failed", "retention.purge", "review.outcome", "rules.update",
    "run.done", "run.failed", "run.list", "run.start", "run.watch", "schedule.clear", "schedule.read",
    "schedule.set", "schedule.skipped", "upload.batch", "upload.batches", "upload.begin", "upload.commit",
    "upload.expired", "upload.health", "upload.purged", "upload.resume",
)


class AuditLog:
    def __init__(self, store: Store, key_path: Path, origin: str, witnesses: Path | None = None,
                 on_alarm: Callable[[str], None] | None = None):
        key_path = Path(key_path)
        if not key_path.exists():
            new_signing_key(key_path)
        self.store = store
        self._key = log_signing_key(key_path, origin)
        self.log_key = self._key.verifier()
        write_vkey(key_path, origin)
        self._checkpoint_path = key_path.with_suffix(".checkpoint")
        self._leaves_path = key_path.with_suffix(".leaves")
        self._state_lock = key_path.with_suffix(".lock")
        self._claim(key_path)
        self.roster = Roster.watch(witnesses) if witnesses else None  # None: keeps no cosignature
        self.on_alarm = on_alarm
        self.alarm: str | None = None
        self._lock = threading.Lock()
        self._tree = merkle.MerkleTree()
        self._signed = 0  # the size of the last checkpoint on file
        self._fork = faults.fork()
        self._check_at_start()

    @property
    def origin(self) -> str:
        return self.log_key.name

    def _claim(self, key_path: Path) -> None:
        """One log, one signing key. Coordinators sharing a PostgreSQL database sign
        one log, so agents pinning its key verify whichever instance answers; the
        first one records its key, and one started with another key is refused."""
        vkey = self.log_key.encode()
        with self.store.write() as conn:
            held = conn.execute(select(t.log_signers.c.vkey)).scalars().all()
            if not held:
                conn.execute(t.log_signers.insert().values(vkey=vkey, recorded_at=time.time()))
            elif vkey not in held:
                raise LogKeyMismatch(
                    f"this database's audit log is signed by {held[0].split('+')[0]} with key "
                    f"{held[0].split('+')[1]}, this coordinator's audit key {key_path} is "
                    f"{self.origin} {vkey.split('+')[1]}: every coordinator of one database signs with the same "
                    "key and origin; copy the first coordinator's audit key (and its .checkpoint and .leaves "
                    "beside it) here, or give --audit-key and --log-origin as on the first")

    # -- checking itself ---------------------------------------------------------

    def _rows(self) -> list[tuple[int, str]]:
        c = t.audit_events.c
        with self.store.read() as conn:
            return [(seq, body) for seq, body in conn.execute(select(c.seq, c.body).order_by(c.seq))]

    def _check_at_start(self) -> None:
        """The stored log, against the last checkpoint signed and the leaves it covered."""
        try:
            tree = walk_chain(self._rows())
        except AuditError as e:
            self._raise_alarm(f"the stored audit log is broken: {e}")
        with self._locked_state():  # another coordinator sharing this folder may be writing it
            last = self._last_signed()
            signed = self._signed_leaves(last) if last is not None else b""
        if last is not None:
            self._compare(tree, signed, last)
        elif tree.size:
            log.warning("no checkpoint of this log on file beside the audit key (%s): the %d stored events are "
                        "taken as they are; from now on every checkpoint is kept there", self._checkpoint_path,
                        tree.size)
        self._tree = tree
        self._record(tree.size, rewrite=True)

    def _last_signed(self) -> Checkpoint | None:
        try:
            text = self._checkpoint_path.read_text()
        except FileNotFoundError:
            return None
        try:
            checkpoint, _ = open_checkpoint(text, self.log_key)
        except (CheckpointError, NoteError) as e:
            self._raise_alarm(f"{self._checkpoint_path} is not a checkpoint this audit key signed ({e})")
        return checkpoint

    def _signed_leaves(self, last: Checkpoint) -> bytes:
        data = self._leaves_path.read_bytes() if self._leaves_path.exists() else b""
        covered = data[:last.size * merkle.HASH_SIZE]
        if len(covered) != last.size * merkle.HASH_SIZE or merkle.root_from_leaf_hashes(
                [covered[i:i + merkle.HASH_SIZE] for i in range(0, len(covered), merkle.HASH_SIZE)]) != last.root:
            self._raise_alarm(f"{self._leaves_path} does not hold the {last.size} events of the checkpoint "
                              f"signed last ({self._checkpoint_path})")
        return covered

    def _compare(self, tree: merkle.MerkleTree, signed: bytes, checkpoint: Checkpoint) -> None:
        """The first event whose leaf differs from the one signed, by name."""
        for seq in range(min(tree.size, checkpoint.size)):
            if tree.leaf_hash_at(seq) != signed[seq * merkle.HASH_SIZE:(seq + 1) * merkle.HASH_SIZE]:
                self._raise_alarm(f"event {seq} in the database is not the event {seq} this coordinator signed "
                                  f"(checkpoint of size {checkpoint.size}): it was edited, reordered or replaced, "
                                  "and the events after it re-chained")
        try:
            check_roots(tree, [checkpoint], "last signed")
        except AuditError as e:
            self._raise_alarm(str(e))

    def _sync(self) -> None:
        """Re-read the whole log: what was signed must be unchanged, new events must extend the chain."""
        if self.alarm:
            raise LogTampered(self.alarm)
        rows = self._rows()
        signed = self._tree.size
        for position, (seq, body) in enumerate(rows[:signed]):
            if seq != position:
                self._raise_alarm(f"event {position} is missing from the database (event {seq} stands in its "
                                  "place): deleted after it was signed")
            if event_leaf(body) != self._tree.leaf_hash_at(seq):
                self._raise_alarm(f"event {seq} in the database is not the event {seq} this coordinator signed: "
                                  "it was edited or replaced after it was signed")
        if len(rows) < signed:
            self._raise_alarm(f"the database holds {len(rows)} events, {signed} were signed: events "
                              f"{len(rows)}.. were deleted")
        fresh = []
        for seq, body in rows[signed:]:
            if seq != signed + len(fresh):
                break  # a gap: an event still being written; the next checkpoint covers it
            fresh.append((seq, body))
        if not fresh:
            return
        try:
            walk_chain(fresh, self._tree)  # the new events chain on from the last signed one
        except AuditError as e:
            self._raise_alarm(f"a new event does not extend the signed log: {e}")
        self._record(signed)

    def _record(self, signed_before: int, rewrite: bool = False) -> None:
        """Keep the new checkpoint and its leaves beside the audit key: leaves first, so a
        crash between the two leaves more leaves than the checkpoint covers, never fewer.
        Coordinators sharing the key's folder take turns (a file lock), and the file
        never goes back: one that signed less than is on file leaves it as it is."""
        size = self._tree.size
        if size == self._signed and not rewrite:
            return
        with self._locked_state():
            on_file = self._size_on_file()
            if on_file > size or (on_file == size and not rewrite):
                self._signed = size
                return
            start = 0 if rewrite else min(signed_before, on_file)
            leaves = b"".join(self._tree.leaf_hash_at(i) for i in range(start, size))
            if rewrite:
                files.write_atomic(self._leaves_path, leaves)
            else:
                with self._leaves_path.open("r+b") as f:
                    f.truncate(start * merkle.HASH_SIZE)
                    f.seek(start * merkle.HASH_SIZE)
                    f.write(leaves)
                    f.flush()
                    os.fsync(f.fileno())
            note = sign_checkpoint(Checkpoint(self.origin, size, self._tree.root(size)), self._key)
            files.write_atomic(self._checkpoint_path, str(note).encode())
        self._signed = size

    @contextmanager
    def _locked_state(self):
        with open(self._state_lock, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _size_on_file(self) -> int:
        """The size of the checkpoint on file (0 when none); its signature was checked at start."""
        try:
            first = self._checkpoint_path.read_text().split("\n")
        except FileNotFoundError:
            return 0
        return int(first[1]) if len(first) > 1 and first[1].isdigit() else 0

    def _raise_alarm(self, reason: str):
        """Stop signing and serving, loudly: a CRITICAL log line, an audit event, and the reason to every caller."""
        first = self.alarm is None
        self.alarm = reason
        if first:
            log.critical("AUDIT ALARM: %s. The coordinator signs and serves nothing until the database is "
                         "restored from a backup that matches %s.", reason, self._checkpoint_path)
            try:
                with self.store.write() as conn:
                    self.store.audit(conn, "coordinator", "audit.alarm", reason=reason[:500])
            except Exception:  # the alarm is already in the log; a broken database must not hide it
                log.exception("the audit alarm could not be recorded in the database")
            if self.on_alarm:
                self.on_alarm(reason)
        raise LogTampered(reason)

    # -- serving -------------------------------------------------------------------

    def _tree_for(self, department: str) -> merkle.MerkleTree:
        return self._fork.view(self._tree, department) if self._fork else self._tree

    def checkpoint(self, department: str = "") -> Served:
        """The latest checkpoint with the cosignatures held on it, and each witness's latest."""
        with self._lock:
            self._sync()
            tree = self._tree_for(department)
            witnessed = self._witnessed()  # read before the latest is signed: the latest is never smaller
            latest = sign_checkpoint(Checkpoint(self.origin, tree.size, tree.root(tree.size)), self._key)
        held = next((n for n in witnessed if n.text == latest.text), None)
        return Served(held or latest, witnessed)

    def _witnessed(self) -> tuple[Note, ...]:
        c = t.cosignatures.c
        with self.store.read() as conn:
            rows = conn.execute(select(c.checkpoint, c.line).order_by(c.size, c.witness)).all()
        notes: dict[str, Note] = {}
        for text, line in rows:
            note = notes.get(text) or Note(text, (self._key.sign(text),))
            notes[text] = Note(text, note.signatures + parse(f"{text}\n{line}\n").signatures)
        return tuple(notes.values())

    def add_cosignature(self, message: str) -> list[str]:
        """Keep each known witness's cosignature on a checkpoint of this log (its latest only)."""
        if self.roster is None:
            raise ValueError("this coordinator has no witnesses file (coordinator serve --witnesses): it keeps "
                             "no cosignatures")
        roster = self.roster.current()
        try:
            cosigned = cosigners(message, self.log_key, roster.keys)
            _, note = open_checkpoint(message, self.log_key)
        except (CheckpointError, NoteError) as e:
            raise ValueError(f"not a cosigned checkpoint of {self.origin}: {e}") from None
        if not cosigned.cosigners:
            raise ValueError(f"the checkpoint carries no cosignature by a witness in {roster.path}; the project's "
                             "witnesses file lists who may cosign (fedlink audit witnesses)")
        kept = []
        with self.store.write() as conn:
            for name, _ in cosigned.cosigners:
                key = roster.by_name(name)
                line = next(s for s in note.signatures if s.by(key)).line()
                kept += [name] if self.store.keep_cosignature(conn, key.encode(), cosigned.checkpoint.size,
                                                              note.text, line.rstrip("\n")) else []
        return kept

    def consistency(self, old_size: int, new_size: int, department: str = "") -> list[bytes]:
        with self._lock:
            self._sync()
            tree = self._tree_for(department)
            if not 0 < old_size <= new_size <= tree.size:
                raise ValueError(f"no consistency proof from {old_size} to {new_size}: the log has "
                                 f"{tree.size} events and proofs need 0 < old <= new")
            return tree.consistency_proof(old_size, new_size)

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

    @property
    def size(self) -> int:
        with self._lock:
            self._sync()
            return self._tree.size

    def events(self, start: int = 0, end: int = 0, *, actor: str = "", kind: str = "", department: str = "",
               since: float = 0.0, until: float = 0.0, run_id: str = "",
               kinds: tuple[str, ...] = ()) -> Iterator[tuple[int, str]]:
        c = t.audit_events.c
        q = select(c.seq, c.body).where(c.seq >= start)
        if end:
            q = q.where(c.seq < end)
        for column, value in ((c.actor, actor), (c.kind, kind), (c.department, department)):
            if value:
                q = q.where(column == value)
        if kinds:
            q = q.where(c.kind.in_(kinds))
        if since:
            q = q.where(c.ts >= since)
        if until:
            q = q.where(c.ts < until)
        with self.store.read() as conn:
            if run_id:
                q = q.where(_details_run(c.body, conn.dialect.name) == run_id)
            for row in conn.execute(q.order_by(c.seq)):
                yield row.seq, row.body


def _details_run(body, dialect: str):
    """The event's details.run_id, read in the database: the body is canonical JSON text (what the
    leaf commits to), which PostgreSQL reads as JSON only when cast and SQLite's JSON functions read as is."""
    document = cast(body, JSON) if dialect == "postgresql" else type_coerce(body, JSON)
    return document[("details", "run_id")].as_string()
