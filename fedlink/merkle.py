"""RFC 6962 / RFC 9162 Merkle trees: tree hashes, proofs, proof verification.

This is the hashing core of the audit log (DESIGN.md, privacy model item 7):
the coordinator appends one leaf per audit event, publishes signed tree heads,
and hands out inclusion and consistency proofs that a privacy officer checks
offline with the two ``verify_*`` functions below. The functions are pure;
``MerkleTree`` is an in-memory cache over the same definitions. Signing tree
heads and storing events live elsewhere.

Hashing follows RFC 6962 section 2.1 with SHA-256 (RFC 9162 section 2.1.1
keeps the same construction): leaves and interior nodes are hashed with
distinct one-byte prefixes (0x00 and 0x01) so that a leaf can never be
passed off as an interior node, which would otherwise allow a second
preimage attack on the tree.

Generation follows the recursive definitions of RFC 6962 sections 2.1.1
(PATH) and 2.1.2 (PROOF), unrolled into loops over index ranges, so the
output is byte-for-byte the RFC's. Verification is the iterative algorithm
of RFC 9162 sections 2.1.3.2 and 2.1.4.2, which checks a proof without
knowing any tree contents.

Sizes and indices are plain Python ints. A ``hashes`` argument is a sequence
of 32-byte leaf hashes (``leaf_hash(entry)`` for each log entry), not raw
entries: the log stores the leaf hashes, and proofs are over them.
"""

from __future__ import annotations

import hashlib
import hmac
import operator
from collections.abc import Iterable, Sequence
from itertools import islice

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MerkleTree",
    "ProofError",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root_from_leaf_hashes",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32

# RFC 6962 section 2.1: the hash of an empty list is the hash of an empty
# string, MTH({}) = SHA-256().
EMPTY_ROOT = hashlib.sha256(b"").digest()

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"

_sha256 = hashlib.sha256


class ProofError(ValueError):
    """A proof did not verify: malformed, the wrong length, or not matching a root."""


def leaf_hash(data: bytes) -> bytes:
    """MTH({d(0)}) = SHA-256(0x00 || d(0)), RFC 6962 section 2.1."""
    return _sha256(_LEAF_PREFIX + bytes(data)).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right), RFC 6962 section 2.1."""
    return _sha256(_NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """k, the largest power of two smaller than n (n > 1), RFC 6962 section 2.1."""
    return 1 << ((n - 1).bit_length() - 1)


# --------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------


class MerkleTree:
    """An append-only tree over 32-byte leaf hashes, with every complete subtree cached.

    ``self._levels[h]`` holds, concatenated, the hash of every *perfect*
    subtree of height h that is complete so far: entry i covers leaves
    [i * 2**h, (i + 1) * 2**h). A perfect subtree never changes once its last
    leaf is in, so the cache is only ever appended to, and appending a leaf
    costs amortised O(1) hashes (one per subtree it completes).

    Any tree over a prefix of the log (any size up to ``size``) splits into
    one such perfect subtree per set bit of its size, so ``root``, ``inclusion_proof``
    and ``consistency_proof`` cost O(log n) hashes and lookups, for the
    current size or any earlier one: a proof on a log of a million leaves
    touches a few dozen hashes, not the million. Memory is about 2 * 32 bytes
    per leaf (flat ``bytearray``s, not a Python object per node).

    Not thread-safe: callers that append from several threads must lock.
    """

    __slots__ = ("_levels", "_size")

    def __init__(self) -> None:
        self._levels: list[bytearray] = [bytearray()]
        self._size = 0

    @classmethod
    def from_leaf_hashes(cls, hashes: Iterable[bytes]) -> MerkleTree:
        """Build the cache for existing leaf hashes: O(n) hashes, one level at a time.

        Same result as ``append_leaf_hash`` for each in turn (the tests check
        this), with less interpreter overhead per hash: well under a second
        for a million leaves on a current x86 core, most of it SHA-256 itself.
        """
        leaves = list(hashes)
        # The same check as append_leaf_hash, but with C-level map() passes;
        # the per-item loop only runs to name the offending index.
        types, lengths = set(map(type, leaves)), set(map(len, leaves))
        if not types <= {bytes, bytearray} or not lengths <= {HASH_SIZE}:
            for i, h in enumerate(leaves):
                _check_leaf_hash(h, f"leaf hash {i}")
        tree = cls()
        level = b"".join(leaves)
        tree._levels = [bytearray(level)]
        tree._size = len(leaves)
        # Each pass pairs up complete nodes; a trailing odd node has no
        # complete parent yet, so it only appears at its own level.
        while len(level) >= 2 * HASH_SIZE:
            level = b"".join(
                [
                    _sha256(_NODE_PREFIX + level[i : i + 2 * HASH_SIZE]).digest()
                    for i in range(0, len(level) - 2 * HASH_SIZE + 1, 2 * HASH_SIZE)
                ]
            )
            tree._levels.append(bytearray(level))
        return tree

    def __len__(self) -> int:
        return self._size

    @property
    def size(self) -> int:
        """The number of leaves appended so far."""
        return self._size

    def append(self, leaf_data: bytes) -> int:
        """Append one log entry (hashed with ``leaf_hash``); returns its leaf index."""
        return self.append_leaf_hash(leaf_hash(leaf_data))

    def append_leaf_hash(self, hash_: bytes) -> int:
        """Append an already-computed 32-byte leaf hash; returns its leaf index."""
        _check_leaf_hash(hash_, "leaf hash")
        index = self._size
        levels = self._levels
        levels[0] += hash_
        self._size = n = index + 1
        # A new leaf completes one perfect subtree per trailing zero bit of
        # the new size: with n even, the last two level-0 entries now have a
        # parent; with n/2 even as well, so do the last two level-1 entries...
        height = 0
        while n & 1 == 0:
            parent = _sha256(_NODE_PREFIX + levels[height][-2 * HASH_SIZE :]).digest()
            height += 1
            if height == len(levels):
                levels.append(bytearray())
            levels[height] += parent
            n >>= 1
        return index

    def leaf_hash_at(self, index: int) -> bytes:
        """The leaf hash stored at ``index``."""
        index = operator.index(index)
        if not 0 <= index < self._size:
            raise IndexError(f"leaf index {index} out of range for tree size {self._size}")
        return self._perfect(0, index)

    def root(self, size: int | None = None) -> bytes:
        """MTH(D[0:size]), RFC 6962 section 2.1; the current root when size is None."""
        size = self._check_size(size)
        if size == 0:
            return EMPTY_ROOT
        return self._range_hash(0, size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(index, D[0:size]), RFC 6962 section 2.1.1: the audit path, leaf end first."""
        size = self._check_size(size)
        index = operator.index(index)
        if not 0 <= index < size:
            raise ValueError(f"leaf index {index} out of range for tree size {size}")
        # PATH(m, D[lo:hi]) descends into the half holding m and appends the
        # other half's MTH after the deeper path; walking down from the root
        # collects those siblings top first, so reverse at the end.
        path = []
        lo, hi = 0, size
        while hi - lo > 1:
            mid = lo + _split(hi - lo)
            if index < mid:
                path.append(self._range_hash(mid, hi))
                hi = mid
            else:
                path.append(self._range_hash(lo, mid))
                lo = mid
        path.reverse()
        return path

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """PROOF(old_size, D[0:new_size]), RFC 6962 section 2.1.2 (SUBPROOF with b = true).

        Raises ValueError unless 0 < old_size <= new_size <= size: RFC 6962
        defines consistency only from a non-empty tree. Equal sizes give
        the empty proof.
        """
        new_size = self._check_size(new_size)
        old_size = operator.index(old_size)
        if not 0 < old_size <= new_size:
            raise ValueError(f"need 0 < old_size <= new_size, got {old_size}, {new_size}")
        proof = []
        lo, hi = 0, new_size
        # b in RFC 6962's SUBPROOF: true while D[lo:old_size] is still the
        # whole old tree, whose root the verifier already has.
        whole_old_tree = True
        while True:
            n, m = hi - lo, old_size - lo
            if m == n:
                if not whole_old_tree:
                    proof.append(self._range_hash(lo, hi))
                break
            k = _split(n)
            if m <= k:
                proof.append(self._range_hash(lo + k, hi))
                hi = lo + k
            else:
                proof.append(self._range_hash(lo, lo + k))
                lo += k
                whole_old_tree = False
        proof.reverse()
        return proof

    # -- internals ---------------------------------------------------------

    def _check_size(self, size: int | None) -> int:
        if size is None:
            return self._size
        size = operator.index(size)
        if not 0 <= size <= self._size:
            raise ValueError(f"tree size {size} out of range (tree has {self._size} leaves)")
        return size

    def _perfect(self, height: int, index: int) -> bytes:
        start = index * HASH_SIZE
        return bytes(self._levels[height][start : start + HASH_SIZE])

    def _range_hash(self, lo: int, hi: int) -> bytes:
        """MTH(D[lo:hi]) for lo < hi, where lo is a multiple of 2**floor(log2(hi - lo)).

        Every range PATH and PROOF ask for has that alignment: it is either
        a perfect subtree or the right part [lo + k, hi) of a split, with
        lo + k a multiple of k >= hi - (lo + k). Such a range is the perfect
        subtrees given by the binary digits of hi - lo, largest first, and
        RFC 6962's split makes its MTH the right-to-left fold of their
        hashes. O(log n) hashes; O(1) when the range is itself perfect.
        """
        parts = []
        start, remaining = lo, hi - lo
        while remaining:
            height = remaining.bit_length() - 1
            assert start & ((1 << height) - 1) == 0, "unaligned subtree range"
            parts.append(self._perfect(height, start >> height))
            start += 1 << height
            remaining -= 1 << height
        acc = parts.pop()
        while parts:
            acc = node_hash(parts.pop(), acc)
        return acc


def _check_leaf_hash(h: object, what: str) -> None:
    # The cache stores hashes back to back, so a wrong-length entry would
    # silently shift every hash after it: refuse it at the door.
    if not isinstance(h, (bytes, bytearray)) or len(h) != HASH_SIZE:
        raise ValueError(f"{what} is not a {HASH_SIZE}-byte hash")


def _tree_over(hashes: Sequence[bytes], size: int) -> MerkleTree:
    size = operator.index(size)
    if not 0 <= size <= len(hashes):
        raise ValueError(f"tree size {size} out of range for {len(hashes)} leaf hashes")
    # islice rather than hashes[:size]: no extra copy of a million-entry list.
    return MerkleTree.from_leaf_hashes(islice(hashes, size))


# The stateless functions below hash the whole (prefix of the) tree on every
# call: O(n) hashes and O(n) memory. That is inherent, not sloppiness: a
# proof carries the roots of subtrees that together cover every other leaf,
# and with no cache each has to be computed from its leaves. Callers that
# answer many proofs over one log should keep a MerkleTree instead.


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """MTH(D[n]) over all of ``hashes``, RFC 6962 section 2.1; SHA-256("") when empty. O(n)."""
    return MerkleTree.from_leaf_hashes(hashes).root()


def inclusion_proof(hashes: Sequence[bytes], index: int, size: int) -> list[bytes]:
    """PATH(index, D[0:size]) over the first ``size`` leaf hashes, RFC 6962 section 2.1.1. O(n)."""
    return _tree_over(hashes, size).inclusion_proof(index)


def consistency_proof(hashes: Sequence[bytes], old_size: int, new_size: int) -> list[bytes]:
    """PROOF(old_size, D[0:new_size]), RFC 6962 section 2.1.2. O(n).

    Needs 0 < old_size <= new_size <= len(hashes); equal sizes give [].
    """
    return _tree_over(hashes, new_size).consistency_proof(old_size)


# --------------------------------------------------------------------------
# Verification
# --------------------------------------------------------------------------


def _proof_hashes(proof: Sequence[bytes] | None) -> list[bytes]:
    # Each proof element is fed to SHA-256 as a node; anything but a 32-byte
    # string is malformed, and rejecting it here keeps the loops below exact.
    hashes = list(proof or ())
    for i, p in enumerate(hashes):
        if not isinstance(p, (bytes, bytearray)) or len(p) != HASH_SIZE:
            raise ProofError(f"proof element {i} is not a {HASH_SIZE}-byte hash")
    return [bytes(p) for p in hashes]


def _same(a: bytes, b: bytes) -> bool:
    # Roots are public, so timing is not the point; compare_digest also
    # insists on bytes-like operands rather than comparing a str to bytes.
    return hmac.compare_digest(bytes(a), bytes(b))


def _sizes(*values: int) -> list[int]:
    out = [operator.index(v) for v in values]
    if any(v < 0 for v in out):
        raise ProofError(f"negative tree size or index in {out}")
    return out


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree of ``size`` leaves with ``root``.

    The algorithm of RFC 9162 section 2.1.3.2. Returns None on success and
    raises ProofError otherwise, including for a proof of the wrong length.
    """
    index, size = _sizes(index, size)
    # Step 1: the leaf must be inside the tree (this rejects size 0).
    if index >= size:
        raise ProofError(f"leaf index {index} is not below tree size {size}")
    path = _proof_hashes(proof)
    if len(leaf_hash) != HASH_SIZE or len(root) != HASH_SIZE:
        raise ProofError(f"leaf hash and root must be {HASH_SIZE}-byte hashes")

    # Step 2. fn walks up from the leaf, sn from the last leaf of the tree;
    # they meet at the root, and they are equal exactly while the node is on
    # the tree's right border.
    fn, sn = index, size - 1
    r = bytes(leaf_hash)  # step 3
    for p in path:  # step 4
        if sn == 0:  # 4a: reached the root with proof left over
            raise ProofError("inclusion proof is too long")
        if fn & 1 or fn == sn:  # 4b: p is a left sibling
            r = node_hash(p, r)
            # 4b.ii: on the right border a node with no right sibling is
            # promoted unchanged (RFC 6962's unbalanced split); skip the
            # levels where that happens.
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:  # p is a right sibling
            r = node_hash(r, p)
        fn >>= 1  # 4c
        sn >>= 1
    # Step 5: the path must end exactly at the root, and hash to it.
    if sn != 0:
        raise ProofError("inclusion proof is too short")
    if not _same(r, root):
        raise ProofError("inclusion proof does not match the root")


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that tree head (new_size, new_root) extends tree head (old_size, old_root).

    The algorithm of RFC 9162 section 2.1.4.2, for 0 < old_size < new_size.
    Around it: equal sizes are consistent exactly when the roots are equal
    and the proof is empty (the proof RFC 6962 section 2.1.2 generates for
    m = n); an old size of 0 is refused, since RFC 6962 defines consistency
    only for 0 < m, and a proof from the empty tree would attest nothing.
    Returns None on success, raises ProofError otherwise.
    """
    old_size, new_size = _sizes(old_size, new_size)
    if old_size > new_size:
        raise ProofError(f"old size {old_size} is larger than new size {new_size}")
    if old_size == 0:
        raise ProofError("consistency from the empty tree proves nothing; need old size > 0")
    path = _proof_hashes(proof)
    if old_size == new_size:
        # Nothing is hashed here, so the roots are compared as given.
        if path:
            raise ProofError("sizes are equal but the proof is not empty")
        if not _same(old_root, new_root):
            raise ProofError("sizes are equal but the roots differ")
        return
    if len(old_root) != HASH_SIZE or len(new_root) != HASH_SIZE:
        raise ProofError(f"roots must be {HASH_SIZE}-byte hashes")

    if not path:  # step 1
        raise ProofError("consistency proof is empty")
    # Step 2: when the old tree is a perfect subtree of the new one, its root
    # is the starting node and the generator (RFC 6962, b = true) left it out.
    if old_size & (old_size - 1) == 0:
        path.insert(0, bytes(old_root))
    # Step 3. As in inclusion: fn tracks the last leaf of the old tree, sn
    # the last leaf of the new one.
    fn, sn = old_size - 1, new_size - 1
    # Step 4: climb to the root of the old tree's last perfect subtree, the
    # node the proof starts from.
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # Step 5: fr rebuilds the old root, sr the new one, from the same start.
    fr = sr = path[0]
    for c in path[1:]:  # step 6
        if sn == 0:  # 6a
            raise ProofError("consistency proof is too long")
        if fn & 1 or fn == sn:  # 6b: c is a left sibling, inside the old tree too
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while fn and not fn & 1:  # 6b.ii, as in inclusion
                fn >>= 1
                sn >>= 1
        else:  # c is a right sibling: only in the new tree
            sr = node_hash(sr, c)
        fn >>= 1  # 6c
        sn >>= 1
    # Step 7.
    if sn != 0:
        raise ProofError("consistency proof is too short")
    if not _same(fr, old_root):
        raise ProofError("consistency proof does not match the old root")
    if not _same(sr, new_root):
        raise ProofError("consistency proof does not match the new root")
