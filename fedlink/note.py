"""C2SP signed notes (https://c2sp.org/signed-note) and the two key types fedlink uses.

A note is a text ending in a newline, a blank line, then one signature line
per key: "— <key name> <base64(4-byte key ID || signature)>". fedlink signs
two kinds of thing with notes: the coordinator signs its checkpoints with a
plain Ed25519 key (signature type 0x01), and witnesses cosign them with
timestamped Ed25519 cosignatures (type 0x04, https://c2sp.org/tlog-cosignature).
Both types live here because a note verifier has to tell them apart by key
alone; what a checkpoint says is fedlink.checkpoint's business.

Keys travel as the strings Go's golang.org/x/mod/sumdb/note uses:
"<name>+<key ID hex>+<base64(type || public key)>" for a verifier key and
"PRIVATE+KEY+<name>+<key ID hex>+<base64(type || seed)>" for a signing key.

Verification follows the spec's rules exactly: signatures by unknown keys are
ignored (they are how other parties add cosignatures), a known key whose
signature fails rejects the whole note, and a note with no verified
signature is rejected.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
import struct
from dataclasses import dataclass, field
from typing import Iterable

from Crypto.Signature import eddsa

ED25519 = 0x01
COSIGNATURE_V1 = 0x04
KEY_TYPES = {ED25519: "Ed25519", COSIGNATURE_V1: "cosignature/v1"}

# The spec asks verifiers for a limit and to accept at least 16 signatures;
# Go's note package stops at 100, so does fedlink. The size bound keeps a
# hostile note from costing more than parsing a checkpoint should.
MAX_SIGNATURES = 100
MAX_NOTE_BYTES = 256 * 1024
MAX_TIMESTAMP = 2**63 - 1

EM_DASH_PREFIX = "\u2014 "
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")
_PUBLIC_KEY_SIZE = 32
_ED25519_SIGNATURE_SIZE = 64


class NoteError(ValueError):
    """A note, key or signature is malformed or does not verify; the message says which."""


def valid_name(name: str) -> bool:
    """Key names are non-empty, with no Unicode space and no '+' (signed-note, Format)."""
    return bool(name) and "+" not in name and not any(c.isspace() for c in name)


def key_id(name: str, key_type: int, public_key: bytes) -> bytes:
    """SHA-256(name || 0x0A || type || public key)[:4], the key ID signed-note recommends."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([key_type]) + public_key).digest()[:4]


def cosignature_message(text: str, timestamp: int) -> bytes:
    """What a cosignature/v1 signs: a header line, a time line, then the whole note text."""
    return f"cosignature/v1\ntime {timestamp}\n{text}".encode()


def _b64decode(text: str, what: str) -> bytes:
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise NoteError(f"{what} is not standard base64") from None
    # Unused trailing bits would let one signature be written several ways.
    if _b64(data) != text:
        raise NoteError(f"{what} is not canonical base64")
    return data


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# -- keys ---------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifierKey:
    """A public key under a name: the log's (type 0x01) or a witness's (type 0x04)."""

    name: str
    key_type: int
    public_key: bytes

    def __post_init__(self):
        if not valid_name(self.name):
            raise NoteError(f"key name {self.name!r} is empty or holds a space or '+'")
        if self.key_type not in KEY_TYPES:
            raise NoteError(f"key type {self.key_type:#04x} is not one fedlink uses (0x01, 0x04)")
        if len(self.public_key) != _PUBLIC_KEY_SIZE:
            raise NoteError(f"an Ed25519 public key has {_PUBLIC_KEY_SIZE} bytes, not {len(self.public_key)}")

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.key_type, self.public_key)

    def encode(self) -> str:
        return f"{self.name}+{self.key_id.hex()}+{_b64(bytes([self.key_type]) + self.public_key)}"

    @classmethod
    def parse(cls, text: str) -> VerifierKey:
        name, key_hex, data = _split_key(text.strip(), "verifier key")
        key = cls(name, data[0], data[1:])
        _check_key_id(key, key_hex)
        return key

    def timestamp(self, signature: bytes) -> int | None:
        """The time a cosignature claims (None for a plain Ed25519 signature)."""
        if self.key_type != COSIGNATURE_V1:
            return None
        return struct.unpack(">Q", signature[:8])[0]

    def verifies(self, text: str, signature: bytes) -> bool:
        """Whether ``signature`` (the bytes after the key ID) is this key's over ``text``."""
        if self.key_type == COSIGNATURE_V1:
            if len(signature) != 8 + _ED25519_SIGNATURE_SIZE:
                return False
            timestamp = struct.unpack(">Q", signature[:8])[0]
            if timestamp > MAX_TIMESTAMP:
                return False
            message, signature = cosignature_message(text, timestamp), signature[8:]
        else:
            message = text.encode()
        if len(signature) != _ED25519_SIGNATURE_SIZE:
            return False
        try:
            eddsa.new(eddsa.import_public_key(self.public_key), "rfc8032").verify(message, signature)
        except ValueError:
            return False
        return True


@dataclass(frozen=True)
class SigningKey:
    """The private half: an Ed25519 seed under a name, for one key type."""

    name: str
    key_type: int
    seed: bytes = field(repr=False)

    def __post_init__(self):
        if len(self.seed) != _PUBLIC_KEY_SIZE:
            raise NoteError(f"an Ed25519 seed has {_PUBLIC_KEY_SIZE} bytes, not {len(self.seed)}")
        self.verifier()  # checks the name and type

    @classmethod
    def generate(cls, name: str, key_type: int) -> SigningKey:
        return cls(name, key_type, secrets.token_bytes(_PUBLIC_KEY_SIZE))

    def verifier(self) -> VerifierKey:
        public = eddsa.import_private_key(self.seed).public_key().export_key(format="raw")
        return VerifierKey(self.name, self.key_type, public)

    def encode(self) -> str:
        return f"PRIVATE+KEY+{self.name}+{self.verifier().key_id.hex()}+{_b64(bytes([self.key_type]) + self.seed)}"

    @classmethod
    def parse(cls, text: str) -> SigningKey:
        text = text.strip()
        if not text.startswith("PRIVATE+KEY+"):
            raise NoteError("a signing key starts with PRIVATE+KEY+")
        name, key_hex, data = _split_key(text[len("PRIVATE+KEY+"):], "signing key")
        key = cls(name, data[0], data[1:])
        _check_key_id(key.verifier(), key_hex)
        return key

    def sign(self, text: str, timestamp: int | None = None) -> Signature:
        """This key's signature line over a note text; a cosignature needs its timestamp."""
        _check_text(text)
        private = eddsa.new(eddsa.import_private_key(self.seed), "rfc8032")
        if self.key_type == COSIGNATURE_V1:
            if timestamp is None or not 0 <= timestamp <= MAX_TIMESTAMP:
                raise NoteError(f"a cosignature needs a timestamp in 0..2^63-1, got {timestamp}")
            data = struct.pack(">Q", timestamp) + private.sign(cosignature_message(text, timestamp))
        else:
            data = private.sign(text.encode())
        return Signature(self.name, self.verifier().key_id, data)


def _split_key(text: str, what: str) -> tuple[str, str, bytes]:
    # Names hold no '+', base64 may: split at the first two only.
    pieces = text.split("+", 2)
    if len(pieces) != 3:
        raise NoteError(f"a {what} is <name>+<key ID>+<key>")
    name, key_hex, data = pieces
    if not re.fullmatch(r"[0-9a-f]{8}", key_hex):
        raise NoteError(f"the key ID of a {what} is 8 lower-case hex digits, not {key_hex!r}")
    data = _b64decode(data, f"the key of {what} {name!r}")
    if not data:
        raise NoteError(f"the {what} {name!r} holds no key")
    return name, key_hex, data


def _check_key_id(key: VerifierKey, key_hex: str) -> None:
    if key.key_id.hex() != key_hex:
        raise NoteError(f"key {key.name!r}: the key ID {key_hex} is not the hash of its name and key "
                        f"({key.key_id.hex()})")


# -- notes --------------------------------------------------------------------------


@dataclass(frozen=True)
class Signature:
    """One signature line: a key name, the 4-byte key ID, and the signature bytes after it."""

    name: str
    key_id: bytes
    data: bytes

    def line(self) -> str:
        return f"{EM_DASH_PREFIX}{self.name} {_b64(self.key_id + self.data)}\n"

    def by(self, key: VerifierKey) -> bool:
        """Whether this line claims to be by ``key`` (name and ID both match)."""
        return self.name == key.name and self.key_id == key.key_id


@dataclass(frozen=True)
class Note:
    """A note text and its signature lines, in the order they came."""

    text: str
    signatures: tuple[Signature, ...] = ()

    def __str__(self) -> str:
        return self.text + "\n" + "".join(s.line() for s in self.signatures)

    def to_bytes(self) -> bytes:
        return str(self).encode()

    def with_signature(self, signature: Signature) -> Note:
        """This note with one more signature line; a line by the same key replaces the old one."""
        kept = tuple(s for s in self.signatures if (s.name, s.key_id) != (signature.name, signature.key_id))
        return Note(self.text, kept + (signature,))


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise NoteError("a note text ends in a newline")
    if _CONTROL.search(text):
        raise NoteError("a note holds no control character other than newline")


def sign(text: str, *keys: SigningKey, timestamp: int | None = None) -> Note:
    """A note over ``text`` signed by each key in turn."""
    return Note(text, tuple(key.sign(text, timestamp) for key in keys))


def parse(message: bytes | str) -> Note:
    """Split a signed note into its text and signature lines, checking the format only."""
    if isinstance(message, str):
        message = message.encode()
    if len(message) > MAX_NOTE_BYTES:
        raise NoteError(f"the note has {len(message)} bytes, more than the {MAX_NOTE_BYTES} accepted")
    try:
        decoded = message.decode("utf-8")
    except UnicodeDecodeError:
        raise NoteError("the note is not valid UTF-8") from None
    if _CONTROL.search(decoded):
        raise NoteError("the note holds a control character other than newline")
    # The text is separated from the signatures by the LAST blank line.
    split = decoded.rfind("\n\n")
    if split < 0:
        raise NoteError("the note has no blank line before its signatures")
    text, block = decoded[: split + 1], decoded[split + 2:]
    if not block or not block.endswith("\n"):
        raise NoteError("the note has no signature lines, or they do not end in a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"the note has {len(lines)} signatures, more than the {MAX_SIGNATURES} accepted")
    return Note(text, tuple(_parse_line(line) for line in lines))


def _parse_line(line: str) -> Signature:
    if not line.startswith(EM_DASH_PREFIX):
        raise NoteError(f"signature line {line[:40]!r} does not start with an em dash and a space")
    name, _, encoded = line[len(EM_DASH_PREFIX):].partition(" ")
    if not valid_name(name):
        raise NoteError(f"signature line {line[:40]!r}: the key name is empty or holds a space or '+'")
    raw = _b64decode(encoded, f"the signature by {name!r}")
    if len(raw) < 5:
        raise NoteError(f"the signature by {name!r} is shorter than a key ID and one byte")
    return Signature(name, raw[:4], raw[4:])


def verify(message: bytes | str | Note, keys: Iterable[VerifierKey]) -> tuple[Note, tuple[VerifierKey, ...]]:
    """Parse a note and check every signature by a known key.

    Returns the note and the known keys that signed it, in key order, each
    once. Lines by unknown keys are ignored; a failing signature by a known
    key, or no known signature at all, raises NoteError.
    """
    note = message if isinstance(message, Note) else parse(message)
    signed = []
    for key in dict.fromkeys(keys):
        lines = [s for s in note.signatures if s.by(key)]
        for s in lines:
            if not key.verifies(note.text, s.data):
                raise NoteError(f"the signature by {key.name} (key ID {key.key_id.hex()}) does not verify")
        if lines:
            signed.append(key)
    if not signed:
        names = ", ".join(s.name for s in note.signatures)
        raise NoteError(f"the note is signed by no known key (it carries signatures by {names})")
    return note, tuple(signed)
