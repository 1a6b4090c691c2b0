"""Generation: ``MerkleTree``, an append-only cache of every complete subtree, and the
stateless PATH and PROOF of RFC 6962 sections 2.1.1 and 2.1.2 over a list of leaf hashes."""
from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence
from itertools import islice

from fedlink.merkle.hashing import (
    EMPTY_ROOT,
    HASH_SIZE,
    NODE_PREFIX,
    check_leaf_hash,
    leaf_hash,
    node_hash,
    sha256,
    split,
)


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
                check_leaf_hash(h, f"leaf hash {i}")
        tree = cls()
        level = b"".join(leaves)
        tree._levels = [bytearray(level)]
        tree._size = len(leaves)
        # Each pass pairs up complete nodes; a trailing odd node has no
        # complete parent yet, so it only appears at its own level.
        while len(level) >= 2 * HASH_SIZE:
            level = b"".join(
                [
                    sha256(NODE_PREFIX + level[i : i + 2 * HASH_SIZE]).digest()
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
        check_leaf_hash(hash_, "leaf hash")
        index = self._size
        levels = self._levels
        levels[0] += hash_
        self._size = n = index + 1
        # A new leaf completes one perfect subtree per trailing zero bit of
        # the new size: with n even, the last two level-0 entries now have a
        # parent; with n/2 even as well, so do the last two level-1 entries...
        height = 0
        while n & 1 == 0:
            parent = sha256(NODE_PREFIX + levels[height][-2 * HASH_SIZE :]).digest()
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
            mid = lo + split(hi - lo)
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
            k = split(n)
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
