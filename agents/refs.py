"""Record references, encrypted under a key only the department holds.

The project secret is shared by every department, so it cannot protect a
department's references from the others: each agent has its own reference key
(`fedlink agent keygen`). AES-SIV is deterministic and authenticated: the same
record gives the same reference in every upload (so re-sent batches and monthly
extracts line up), and a reference from another department or project fails to
decrypt instead of yielding garbage.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESSIV

KEY_BYTES = 64  # AES-256-SIV


class RefError(ValueError):
    pass


def new_key(path: Path) -> Path:
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} exists: a reference key is never overwritten (old worklists would not decrypt)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(KEY_BYTES) + "\n")
    return path


def load_key(path: Path) -> bytes:
    try:
        key = bytes.fromhex(Path(path).read_text().strip())
    except FileNotFoundError:
        raise RefError(f"{path}: reference key not found; create it with `fedlink agent keygen`") from None
    except ValueError:
        raise RefError(f"{path}: not a hex reference key") from None
    if len(key) != KEY_BYTES:
        raise RefError(f"{path}: reference key must be {KEY_BYTES} bytes, found {len(key)}")
    return key


class RefCipher:
    """AES-SIV (RFC 5297) with the project and department as associated data;
    a reference is the 16-byte SIV tag followed by the ciphertext. One cipher
    object serves every call: the bench decrypts millions of references."""

    def __init__(self, key: bytes, project_id: str, department: str):
        self._siv = AESSIV(key)
        self._ad = [f"fedlink/v1/ref/{project_id}/{department}".encode()]

    def encrypt(self, record_id: str) -> bytes:
        return self._siv.encrypt(record_id.encode(), self._ad)

    def decrypt(self, ref: bytes) -> str:
        try:
            return self._siv.decrypt(ref, self._ad).decode()
        except (InvalidTag, UnicodeDecodeError):
            raise RefError("a reference does not decrypt under this department's key") from None
