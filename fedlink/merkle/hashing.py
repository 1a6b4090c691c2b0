"""The hashes of RFC 6962 section 2.1: leaves and interior nodes, with distinct prefixes."""
from __future__ import annotations

import hashlib

HASH_SIZE = 32

# RFC 6962 section 2.1: the hash of an empty list is the hash of an empty
# string, MTH({}) = SHA-256().
EMPTY_ROOT = hashlib.sha256(b"").digest()

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"

sha256 = hashlib.sha256


class ProofError(ValueError):
    """A proof did not verify: malformed, the wrong length, or not matching a root."""


def leaf_hash(data: bytes) -> bytes:
    """MTH({d(0)}) = SHA-256(0x00 || d(0)), RFC 6962 section 2.1."""
    return sha256(LEAF_PREFIX + bytes(data)).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right), RFC 6962 section 2.1."""
    return sha256(NODE_PREFIX + left + right).digest()


def split(n: int) -> int:
    """k, the largest power of two smaller than n (n > 1), RFC 6962 section 2.1."""
    return 1 << ((n - 1).bit_length() - 1)


def check_leaf_hash(h: object, what: str) -> None:
    # The cache stores hashes back to back, so a wrong-length entry would
    # silently shift every hash after it: refuse it at the door.
    if not isinstance(h, (bytes, bytearray)) or len(h) != HASH_SIZE:
        raise ValueError(f"{what} is not a {HASH_SIZE}-byte hash")
