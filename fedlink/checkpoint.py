"""C2SP checkpoints (https://c2sp.org/tlog-checkpoint) and their cosignatures.

A checkpoint is a signed note whose text is the log's origin, its tree size
and its RFC 6962 root hash, one per line, then optional extension lines. The
coordinator signs it with its log key, whose name is the origin; witnesses
add cosignature/v1 lines (https://c2sp.org/tlog-cosignature) over the same
text. Anyone holding the log key and the witnesses' keys can then check that
enough witnesses vouched for THIS tree head, which is what stops a log from
showing different histories to different parties.
"""
from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Iterable

from fedlink import merkle
from fedlink.note import COSIGNATURE_V1, ED25519, Note, NoteError, SigningKey, VerifierKey, valid_name, verify

_SIZE = re.compile(r"0|[1-9][0-9]*")


class CheckpointError(ValueError):
    """A checkpoint is malformed, not signed by the log, or short of its cosignatures."""


@dataclass(frozen=True)
class Checkpoint:
    """A tree head: which log, how many leaves, and the root over them."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self):
        if not valid_name(self.origin):  # the log key is named for the origin: same rules
            raise CheckpointError(f"origin {self.origin!r} is empty or holds a space or '+'")
        if self.size < 0:
            raise CheckpointError(f"tree size {self.size} is negative")
        if len(self.root) != merkle.HASH_SIZE:
            raise CheckpointError(f"a root hash has {merkle.HASH_SIZE} bytes, not {len(self.root)}")
        if self.size == 0 and self.root != merkle.EMPTY_ROOT:
            raise CheckpointError("an empty tree's root is SHA-256 of the empty string")
        if any(not line or "\n" in line for line in self.extensions):
            raise CheckpointError("extension lines are non-empty single lines")

    def text(self) -> str:
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode(), *self.extensions]
        return "\n".join(lines) + "\n"


def parse_checkpoint(text: str) -> Checkpoint:
    """The checkpoint a note text holds; CheckpointError says what is wrong with it."""
    if not text.endswith("\n"):
        raise CheckpointError("a checkpoint text ends in a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise CheckpointError(f"a checkpoint has at least 3 lines (origin, size, root), this one {len(lines)}")
    origin, size, root, *extensions = lines
    if not _SIZE.fullmatch(size):
        raise CheckpointError(f"tree size {size!r} is not a decimal number without leading zeros")
    try:
        decoded = base64.b64decode(root, validate=True)
    except ValueError:
        raise CheckpointError(f"root hash {root!r} is not standard base64") from None
    if base64.b64encode(decoded).decode() != root:
        raise CheckpointError(f"root hash {root!r} is not in canonical base64")
    checkpoint = Checkpoint(origin, int(size), decoded, tuple(extensions))
    if checkpoint.text() != text:  # a last guard that parsing and formatting agree
        raise CheckpointError("the checkpoint text is not in canonical form")
    return checkpoint


def sign_checkpoint(checkpoint: Checkpoint, log_key: SigningKey) -> Note:
    """The log's signed checkpoint; its key's name must be the origin."""
    _check_log_key(log_key.verifier(), checkpoint.origin)
    return Note(checkpoint.text(), (log_key.sign(checkpoint.text()),))


def open_checkpoint(message: bytes | str | Note, log_key: VerifierKey) -> tuple[Checkpoint, Note]:
    """Check the log's signature on a checkpoint note and read the checkpoint.

    Cosignature lines and any other unknown signatures are kept in the note
    but not checked here: that is what ``cosigners`` is for.
    """
    try:
        note, _ = verify(message, [log_key])
    except NoteError as e:
        raise CheckpointError(f"not a checkpoint signed by the log {log_key.name}: {e}") from None
    checkpoint = parse_checkpoint(note.text)
    _check_log_key(log_key, checkpoint.origin)
    return checkpoint, note


def _check_log_key(key: VerifierKey, origin: str) -> None:
    if key.key_type != ED25519:
        raise CheckpointError(f"the log key {key.name} is not an Ed25519 note key")
    if key.name != origin:
        raise CheckpointError(f"the checkpoint is for the log {origin!r}, the log key is named {key.name!r}")


def cosign(note: Note, witness_key: SigningKey, timestamp: int) -> Note:
    """The note with ``witness_key``'s cosignature added (or renewed); checks nothing itself.

    Checking the log's signature and consistency first is the witness's job
    (fedlink.witness); this only formats the line.
    """
    if witness_key.key_type != COSIGNATURE_V1:
        raise CheckpointError(f"the key {witness_key.name} is not a cosignature/v1 key")
    return note.with_signature(witness_key.sign(note.text, timestamp))


@dataclass(frozen=True)
class Cosigned:
    """A checkpoint and the witnesses whose cosignatures on it verified, each with its time."""

    checkpoint: Checkpoint
    cosigners: tuple[tuple[str, int], ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.cosigners)


def cosigners(message: bytes | str | Note, log_key: VerifierKey, witnesses: Iterable[VerifierKey]) -> Cosigned:
    """Verify the log's signature and every cosignature by a known witness.

    A witness counts once however many lines it has and whatever names its
    key is listed under: distinct witnesses are distinct public keys. A
    known witness's cosignature that fails to verify raises CheckpointError
    rather than being skipped, since it means someone tampered with the note.
    """
    checkpoint, note = open_checkpoint(message, log_key)
    keys = [w for w in witnesses if w.key_type == COSIGNATURE_V1]
    present = [w for w in keys if any(s.by(w) for s in note.signatures)]
    if not present:
        return Cosigned(checkpoint, ())
    try:
        _, signed = verify(note, present)
    except NoteError as e:
        raise CheckpointError(f"the checkpoint of size {checkpoint.size} carries a bad cosignature: {e}") from None
    seen, found = set(), []
    for key in signed:
        if key.public_key in seen:
            continue
        seen.add(key.public_key)
        line = next(s for s in note.signatures if s.by(key))
        found.append((key.name, key.timestamp(line.data)))
    return Cosigned(checkpoint, tuple(found))


def require_quorum(message: bytes | str | Note, log_key: VerifierKey, witnesses: Iterable[VerifierKey],
                   threshold: int) -> Cosigned:
    """``cosigners``, raising CheckpointError unless at least ``threshold`` distinct witnesses signed."""
    witnesses = list(witnesses)
    cosigned = cosigners(message, log_key, witnesses)
    if len(cosigned.cosigners) < threshold:
        missing = sorted({w.name for w in witnesses} - set(cosigned.names))
        raise CheckpointError(
            f"the checkpoint of size {cosigned.checkpoint.size} for {cosigned.checkpoint.origin} is cosigned by "
            f"{len(cosigned.cosigners)} of the {threshold} witnesses required "
            f"(cosigned: {', '.join(cosigned.names) or 'none'}; not: {', '.join(missing) or 'none'})")
    return cosigned


__all__ = ["Checkpoint", "CheckpointError", "Cosigned", "cosign", "cosigners", "open_checkpoint",
           "parse_checkpoint", "require_quorum", "sign_checkpoint"]
