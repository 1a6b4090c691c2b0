"""Verification: RFC 9162 sections 2.1.3.2 and 2.1.4.2, checking a proof against a root
without any tree contents."""
from __future__ import annotations

import hmac
import operator
from collections.abc import Sequence

from fedlink.merkle.hashing import HASH_SIZE, ProofError, node_hash


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
