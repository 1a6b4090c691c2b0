"""Audit-log verification, shared by privacy officers and agents.

The coordinator's audit log is an RFC 6962 Merkle tree over canonical JSON
events, each of which also names the leaf hash of the event before it (a hash
chain, so an edit is pinned to the event it touched). The coordinator signs
tree heads (size, root, time) with Ed25519. An agent keeps the heads it has
seen and checks, at every contact, that each new head is consistent with the
old ones; an officer verifies a whole exported log offline.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

from Crypto.PublicKey import ECC
from Crypto.Signature import eddsa

from fedlink import merkle
from fedlink.files import write_atomic

log = logging.getLogger("fedlink.audit")

TREE_HEAD_LABEL = b"fedlink/v1/tree-head\0"
GENESIS_PREV = "0" * 64


class AuditError(ValueError):
    """The log does not verify; the message says where and why."""


@dataclass(frozen=True)
class TreeHead:
    tree_size: int
    root_hash: bytes
    timestamp_ms: int
    signature: bytes
    key_id: bytes

    def signed_bytes(self) -> bytes:
        return tree_head_bytes(self.tree_size, self.root_hash, self.timestamp_ms)

    def to_json(self) -> str:
        d = asdict(self)
        for k in ("root_hash", "signature", "key_id"):
            d[k] = d[k].hex()
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "TreeHead":
        d = json.loads(text)
        return cls(d["tree_size"], bytes.fromhex(d["root_hash"]), d["timestamp_ms"], bytes.fromhex(d["signature"]),
                   bytes.fromhex(d["key_id"]))

    @classmethod
    def from_pb(cls, msg) -> "TreeHead":
        return cls(msg.tree_size, msg.root_hash, msg.timestamp_ms, msg.signature, msg.key_id)


def tree_head_bytes(size: int, root: bytes, timestamp_ms: int) -> bytes:
    return TREE_HEAD_LABEL + struct.pack(">QQ", size, timestamp_ms) + root


# -- keys -----------------------------------------------------------------------

def new_signing_key(path: Path) -> Path:
    """An Ed25519 key for signing tree heads (private PEM, mode 0600) and its public half beside it."""
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} exists: the audit signing key is never overwritten")
    key = ECC.generate(curve="ed25519")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key.export_key(format="PEM"))
    public_path(path).write_text(key.public_key().export_key(format="PEM"))
    return path


def public_path(private: Path) -> Path:
    return Path(private).with_suffix(".pub")


def load_signing_key(path: Path):
    return ECC.import_key(Path(path).read_text())


def load_public_key(path: Path):
    try:
        return ECC.import_key(Path(path).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such public key (the coordinator's audit-signing.pub)") from None


def key_id(public_key) -> bytes:
    return hashlib.sha256(public_key.export_key(format="raw")).digest()


def sign_tree_head(private_key, size: int, root: bytes, timestamp_ms: int) -> TreeHead:
    signature = eddsa.new(private_key, "rfc8032").sign(tree_head_bytes(size, root, timestamp_ms))
    return TreeHead(size, root, timestamp_ms, signature, key_id(private_key.public_key()))


def verify_tree_head(head: TreeHead, public_key) -> None:
    if head.key_id != key_id(public_key):
        raise AuditError("the tree head is signed by another key than the coordinator's pinned audit key")
    try:
        eddsa.new(public_key, "rfc8032").verify(head.signed_bytes(), head.signature)
    except ValueError:
        raise AuditError(f"the signature of the tree head of size {head.tree_size} does not verify") from None


# -- events -----------------------------------------------------------------------

def canonical(event: dict) -> str:
    return json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def event_leaf(body: str) -> bytes:
    return merkle.leaf_hash(body.encode("utf-8"))


def verify_events(bodies: Sequence[tuple[int, str]], head: TreeHead, public_key,
                  saved_heads: Iterable[TreeHead] = ()) -> merkle.MerkleTree:
    """Check a whole log offline: the signature, every event's place in the
    chain, the root at the signed size, and every saved head. Raises
    AuditError naming the first event that does not verify."""
    verify_tree_head(head, public_key)
    tree = merkle.MerkleTree()
    prev = GENESIS_PREV
    for position, (seq, body) in enumerate(bodies):
        if seq != position:
            raise AuditError(f"event {position} is missing (event {seq} stands in its place): deleted" if seq > position
                             else f"event {seq} appears again at position {position}: inserted or reordered")
        try:
            event = json.loads(body)
        except json.JSONDecodeError:
            raise AuditError(f"event {seq} is not valid JSON: it was edited") from None
        claimed = event.get("seq")
        if isinstance(claimed, int) and claimed < seq:
            raise AuditError(f"the event stored as {seq} is event {claimed}: an event was inserted at position "
                             f"{claimed}, or events were reordered")
        if claimed != seq:
            raise AuditError(f"event {seq} carries sequence number {claimed}: it was edited or moved")
        if event.get("prev") != prev:
            culprit = seq - 1 if seq else 0
            raise AuditError(f"event {culprit} does not match the hash event {seq} recorded for it: event "
                             f"{culprit} was edited, or one was deleted or inserted before event {seq}")
        leaf = event_leaf(body)
        tree.append_leaf_hash(leaf)
        prev = leaf.hex()
    if tree.size < head.tree_size:
        raise AuditError(f"the log holds {tree.size} events, the signed head says {head.tree_size}: events "
                         f"{tree.size}.. were deleted")
    for saved in sorted([*saved_heads, head], key=lambda h: h.tree_size):
        verify_tree_head(saved, public_key)
        if saved.tree_size > tree.size:
            raise AuditError(f"a saved tree head has size {saved.tree_size}, the log only {tree.size}")
        if tree.root(saved.tree_size) != saved.root_hash:
            last = saved.tree_size - 1
            raise AuditError(f"the root over events 0..{last} differs from the signed head of size "
                             f"{saved.tree_size}: event {last} or an earlier one was edited (the chain points at "
                             f"event {last} when the events before it are intact)")
    return tree


class StateFileError(ValueError):
    """An agent's own state file is damaged; the message names it and how to repair it."""


class HeadKeeper:
    """An agent's memory of the tree heads it has seen, checked at every contact.

    The file only grows, a line per head, each flushed to disk. A power cut
    can leave a torn last line: it is skipped with a warning and the head
    before it is used. Anything else unreadable, or a saved head whose
    signature no longer verifies with the pinned key, is this machine's
    damage, not the coordinator's: a StateFileError names the file and the way
    to repair it, instead of the agent blaming the coordinator's log."""

    def __init__(self, state_dir: Path):
        self.path = Path(state_dir) / "tree-heads.jsonl"
        self.key_path = Path(state_dir) / "audit-key.pub"

    def _repair(self) -> str:
        return (f"move {self.path} aside (keep it for the privacy officer); the agent then remembers heads "
                "again from the coordinator's next one")

    def latest(self) -> TreeHead | None:
        if not self.path.exists():
            return None
        try:
            lines = [line for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError) as e:
            raise StateFileError(f"{self.path} cannot be read ({e}): {self._repair()}") from None
        for back, line in enumerate(reversed(lines)):
            try:
                head = TreeHead.from_json(line)
            except (ValueError, KeyError, TypeError) as e:
                if back == 0:  # a torn last line: the write a power cut interrupted
                    log.warning("%s: its last line is incomplete (a write cut off); using the head before it",
                                self.path)
                    continue
                raise StateFileError(f"{self.path} line {len(lines) - back} is not a tree head "
                                     f"({type(e).__name__}: {e}): {self._repair()}") from None
            return head
        return None

    def public_key(self, offered_pem: str | None):
        """The pinned audit key; trust on first use when the config names none."""
        if self.key_path.exists():
            try:
                return ECC.import_key(self.key_path.read_text(encoding="ascii"))
            except (OSError, ValueError, IndexError) as e:
                raise StateFileError(f"{self.key_path} is not the audit public key ({type(e).__name__}): restore "
                                     "it, or name the coordinator's key in the agent config "
                                     "(audit_public_key)") from None
        if offered_pem is None:
            raise AuditError("no audit public key is pinned for this coordinator")
        write_atomic(self.key_path, offered_pem.encode("ascii"), 0o644)
        return ECC.import_key(offered_pem)

    def _saved(self, public_key) -> TreeHead | None:
        """The last saved head, re-verified: a head that does not verify was damaged here."""
        old = self.latest()
        if old is None:
            return None
        try:
            verify_tree_head(old, public_key)
        except AuditError as e:
            raise StateFileError(f"the tree head saved in {self.path} does not verify ({e}): the file was "
                                 f"damaged on this machine, not by the coordinator: {self._repair()}") from None
        return old

    def check(self, head: TreeHead, public_key, consistency: Callable[[int, int], Sequence[bytes]]) -> None:
        verify_tree_head(head, public_key)
        old = self._saved(public_key)
        if old is not None:
            try:
                if head.tree_size < old.tree_size:
                    raise merkle.ProofError(f"the log shrank from {old.tree_size} to {head.tree_size} events")
                if head.tree_size == old.tree_size:
                    if head.root_hash != old.root_hash:
                        raise merkle.ProofError("same size, different root")
                else:
                    merkle.verify_consistency(old.tree_size, head.tree_size, old.root_hash, head.root_hash,
                                              consistency(old.tree_size, head.tree_size))
            except merkle.ProofError as e:
                raise AuditError(
                    f"the coordinator's audit log is not consistent with the tree head of size {old.tree_size} "
                    f"this agent saw at {old.timestamp_ms} ms ({e}): history was rewritten or this agent is "
                    "shown a different log than others. Refusing to continue; report this to the privacy "
                    "officer with the file " + str(self.path)) from None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        torn = self.path.exists() and self.path.stat().st_size and not self.path.read_bytes().endswith(b"\n")
        with self.path.open("a", encoding="utf-8") as f:
            f.write(("\n" if torn else "") + head.to_json() + "\n")
            f.flush()
            os.fsync(f.fileno())
