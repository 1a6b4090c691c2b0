"""The project secret: 256 random bits every department of a project shares,
written in a self-checking form that cannot be mistaken for a password:

    fedlink-secret-v1:<the 32 bytes in base32, 52 letters>-<checksum, 8 hex>

The checksum (the first 4 bytes of SHA-256 over everything before it) catches
a secret cut short or mistyped when it is carried between departments. A
passphrase, a hex string or any other text is refused: the pinned key-check
value would make a guessable secret an offline guessing target.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from pathlib import Path

from fedlink.files import write_atomic

PREFIX = "fedlink-secret-v1:"
SECRET_BYTES = 32
_FORM = re.compile(rf"{re.escape(PREFIX)}([a-z2-7]{{52}})-([0-9a-f]{{8}})")
HOW = "create one with `fedlink secret new --out FILE` and give the same file to every department of the project"


class SecretError(ValueError):
    """A project secret file that is missing or not in the fedlink-secret-v1 form."""


def _checksum(body: str) -> str:
    return hashlib.sha256(body.encode("ascii")).hexdigest()[:8]


def encode_secret(raw: bytes) -> str:
    if len(raw) != SECRET_BYTES:
        raise ValueError(f"a project secret is {SECRET_BYTES} bytes, not {len(raw)}")
    body = PREFIX + base64.b32encode(raw).decode("ascii").rstrip("=").lower()
    return f"{body}-{_checksum(body)}"


def new_secret(path: Path | str) -> Path:
    """Write a fresh secret to `path` (mode 0600); never replaces a file."""
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} exists; a project secret is never overwritten (every department's "
                              "filters depend on it)")
    write_atomic(path, (encode_secret(secrets.token_bytes(SECRET_BYTES)) + "\n").encode("ascii"), 0o600)
    return path


def decode_secret(text: str, where: str) -> bytes:
    """The 32 bytes of a secret in the fedlink-secret-v1 form; `where` names its file in errors."""
    text = text.strip()
    found = _FORM.fullmatch(text)
    if found is None:
        what = "does not start with fedlink-secret-v1:" if not text.startswith(PREFIX) else \
            "is not 52 base32 letters and an 8-digit checksum after the prefix"
        raise SecretError(f"{where}: not a fedlink project secret (it {what}); {HOW}")
    body = text.rsplit("-", 1)[0]
    if not hmac.compare_digest(_checksum(body), found.group(2)):
        raise SecretError(f"{where}: the project secret's checksum does not match (changed or cut short in "
                          f"transit?); copy the file again from the department that made it, or {HOW}")
    return base64.b32decode(found.group(1).upper() + "====")


def read_secret(path: Path) -> bytes:
    try:
        text = Path(path).read_text(encoding="ascii")
    except FileNotFoundError:
        raise SecretError(f"{path}: project secret file not found; {HOW}") from None
    except UnicodeDecodeError:
        raise SecretError(f"{path}: not a fedlink project secret (not ASCII text); {HOW}") from None
    return decode_secret(text, str(path))
