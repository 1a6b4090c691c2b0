"""Audit-log verification, shared by the coordinator, privacy officers and agents.

The coordinator's audit log is an RFC 6962 Merkle tree over canonical JSON
events, each of which also names the leaf hash of the event before it (a hash
chain, so an edit is pinned to the event it touched). The coordinator serves
its tree heads as C2SP checkpoints (fedlink.checkpoint) signed with its audit
key; witnesses (every agent and officer, fedlink.witnessing) cosign them. An
officer verifies a whole exported log offline against them.

The audit key is one Ed25519 key kept as PEM (`audit-signing.key`, 0600). As a
note key it is named for the log's origin: `audit-signing.vkey` beside it holds
the verifier key (`<origin>+<key ID>+<key>`) that agents and officers pin.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Sequence

from Crypto.PublicKey import ECC

from fedlink import merkle
from fedlink.checkpoint import Checkpoint
from fedlink.note import ED25519, NoteError, SigningKey, VerifierKey

GENESIS_PREV = "0" * 64


class AuditError(ValueError):
    """The log does not verify; the message says where and why."""


# -- keys -----------------------------------------------------------------------

def new_signing_key(path: Path) -> Path:
    """An Ed25519 key for signing checkpoints (private PEM, mode 0600) and its public half beside it."""
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


def vkey_path(private: Path) -> Path:
    """Where the log's note verifier key is written, beside the audit key."""
    return Path(private).with_suffix(".vkey")


def default_origin(coordinator_cert: Path | None) -> str:
    """The log's name in its checkpoints unless configured: the coordinator's host name from
    its certificate (the last DNS name: `pki init --hostname` adds them after localhost)."""
    host = "localhost"
    if coordinator_cert is not None:
        from cryptography import x509

        cert = x509.load_pem_x509_certificate(Path(coordinator_cert).read_bytes())
        try:
            names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            host = (names.get_values_for_type(x509.DNSName) or [host])[-1]
        except x509.ExtensionNotFound:
            pass
    return f"{host}/fedlink-audit"


def write_vkey(key_path: Path, origin: str) -> Path:
    """The log's verifier key beside the audit key, for the bundle every party pins."""
    from fedlink import files

    path = vkey_path(key_path)
    files.write_atomic(path, (log_signing_key(key_path, origin).verifier().encode() + "\n").encode(), 0o644)
    return path


def log_signing_key(path: Path, origin: str) -> SigningKey:
    """The audit key (PEM) as the note key that signs the log's checkpoints, named for ``origin``."""
    return SigningKey(origin, ED25519, ECC.import_key(Path(path).read_text()).seed)


def load_log_key(path: Path) -> VerifierKey:
    """A pinned log verifier key (`audit-signing.vkey`); FileNotFoundError when it is not
    there, AuditError when it is not a log key."""
    try:
        key = VerifierKey.parse(Path(path).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such log key (audit-signing.vkey, in every party's bundle; the "
                                "coordinator writes it beside its audit-signing.key)") from None
    except NoteError as e:
        raise AuditError(f"{path}: not a log verifier key ({e})") from None
    if key.key_type != ED25519:
        raise AuditError(f"{path}: the log key is an Ed25519 note key, this one is of another type")
    return key


# -- events -----------------------------------------------------------------------

def canonical(event: dict) -> str:
    return json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def event_leaf(body: str) -> bytes:
    return merkle.leaf_hash(body.encode("utf-8"))


def walk_chain(bodies: Sequence[tuple[int, str]], tree: merkle.MerkleTree | None = None) -> merkle.MerkleTree:
    """The tree over stored events, checking each one's place in the chain.
    Raises AuditError naming the first event that is missing, moved or edited.
    Given a tree (of events already checked), the bodies extend it."""
    tree = tree if tree is not None else merkle.MerkleTree()
    prev = tree.leaf_hash_at(tree.size - 1).hex() if tree.size else GENESIS_PREV
    for position, (seq, body) in enumerate(bodies, tree.size):
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
    return tree


def check_roots(tree: merkle.MerkleTree, checkpoints: Iterable[Checkpoint], what: str = "signed") -> None:
    """Every checkpoint's root is the tree's root at its size; AuditError names the last event it covers."""
    for checkpoint in sorted(checkpoints, key=lambda c: c.size):
        if checkpoint.size > tree.size:
            raise AuditError(f"the log holds {tree.size} events, a {what} checkpoint says {checkpoint.size}: events "
                             f"{tree.size}.. were deleted")
        if tree.root(checkpoint.size) != checkpoint.root:
            last = checkpoint.size - 1
            raise AuditError(f"the root over events 0..{last} differs from the {what} checkpoint of size "
                             f"{checkpoint.size}: event {last} or an earlier one was edited (the chain points at "
                             f"event {last} when the events before it are intact)")


def verify_events(bodies: Sequence[tuple[int, str]], checkpoints: Iterable[Checkpoint]) -> merkle.MerkleTree:
    """Check a whole log offline: every event's place in the chain and the
    root at each (already verified) checkpoint's size. Raises AuditError
    naming the first event that does not verify."""
    tree = walk_chain(bodies)
    check_roots(tree, checkpoints)
    return tree
