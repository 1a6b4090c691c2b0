"""fedlink.merkle: RFC 6962 / RFC 9162 hashing, proof generation and verification.

Three independent checks: the public transparency-dev test vectors (every
happy path verifies, every mutation is rejected), exhaustive round trips on
small trees against a naive recursive reference written straight from
RFC 6962 section 2.1, and single-change mutations of generated proofs.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest

import fedlink.merkle.tree as merkle  # the module whose node_hash the tree queries call
from fedlink.merkle import (
    EMPTY_ROOT,
    MerkleTree,
    ProofError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)

MAX_SIZE = 40

# --------------------------------------------------------------------------
# Naive reference, straight from the recursive definitions in RFC 6962
# section 2.1 (MTH), 2.1.1 (PATH) and 2.1.2 (PROOF / SUBPROOF), with its
# own hashing so that it shares nothing with the code under test.
# --------------------------------------------------------------------------


def _ref_hash(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _ref_k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(d: list[bytes]) -> bytes:
    """MTH over raw entries d."""
    n = len(d)
    if n == 0:
        return _ref_hash(b"")
    if n == 1:
        return _ref_hash(b"\x00" + d[0])
    k = _ref_k(n)
    return _ref_hash(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:]))


def ref_path(m: int, d: list[bytes]) -> list[bytes]:
    n = len(d)
    if n == 1:
        return []
    k = _ref_k(n)
    if m < k:
        return ref_path(m, d[:k]) + [ref_mth(d[k:])]
    return ref_path(m - k, d[k:]) + [ref_mth(d[:k])]


def ref_subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [ref_mth(d)]
    k = _ref_k(n)
    if m <= k:
        return ref_subproof(m, d[:k], b) + [ref_mth(d[k:])]
    return ref_subproof(m - k, d[k:], False) + [ref_mth(d[:k])]


def ref_proof(m: int, d: list[bytes]) -> list[bytes]:
    return ref_subproof(m, d, True)


def entries(n: int) -> list[bytes]:
    return [f"audit-event-{i}".encode() for i in range(n)]


ENTRIES = entries(MAX_SIZE)
LEAVES = [leaf_hash(e) for e in ENTRIES]
REF_ROOTS = [ref_mth(ENTRIES[:n]) for n in range(MAX_SIZE + 1)]


@pytest.fixture(scope="module")
def tree() -> MerkleTree:
    t = MerkleTree()
    for i, e in enumerate(ENTRIES):
        assert t.append(e) == i
    return t


# --------------------------------------------------------------------------
# Hashing
# --------------------------------------------------------------------------

# The RFC 6962 reference inputs used by certificate-transparency and
# transparency-dev/merkle, with their published tree heads for sizes 1..8.
RFC_INPUTS = [
    bytes.fromhex(h)
    for h in ["", "00", "10", "2021", "3031", "40414243", "5051525354555657",
              "606162636465666768696a6b6c6d6e6f"]
]
RFC_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def test_leaf_and_node_hash_use_domain_separated_sha256():
    assert leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    left, right = b"L" * 32, b"R" * 32
    assert node_hash(left, right) == hashlib.sha256(b"\x01" + left + right).digest()
    # A leaf over the bytes of two child hashes must not equal their parent.
    assert leaf_hash(left + right) != node_hash(left, right)


def test_empty_tree_root_is_sha256_of_nothing():
    assert root_from_leaf_hashes([]) == EMPTY_ROOT == hashlib.sha256(b"").digest()
    assert MerkleTree().root() == EMPTY_ROOT
    assert MerkleTree().size == 0


@pytest.mark.parametrize("n", range(1, len(RFC_INPUTS) + 1))
def test_published_rfc6962_roots(n):
    hashes = [leaf_hash(d) for d in RFC_INPUTS[:n]]
    assert root_from_leaf_hashes(hashes).hex() == RFC_ROOTS[n - 1]


def test_roots_match_reference_for_every_size(tree):
    for n in range(MAX_SIZE + 1):
        assert root_from_leaf_hashes(LEAVES[:n]) == REF_ROOTS[n], n
        assert tree.root(n) == REF_ROOTS[n], n
        assert MerkleTree.from_leaf_hashes(LEAVES[:n]).root() == REF_ROOTS[n], n
    assert tree.root() == REF_ROOTS[MAX_SIZE]
    assert tree.size == len(tree) == MAX_SIZE


def test_bulk_build_equals_incremental_build(tree):
    for n in range(MAX_SIZE + 1):
        inc = MerkleTree()
        for h in LEAVES[:n]:
            inc.append_leaf_hash(h)
        bulk = MerkleTree.from_leaf_hashes(LEAVES[:n])
        assert inc._levels == bulk._levels, n
    assert [tree.leaf_hash_at(i) for i in range(MAX_SIZE)] == LEAVES


# --------------------------------------------------------------------------
# Round trips: every index/size pair for sizes 1..40
# --------------------------------------------------------------------------


def test_inclusion_proofs_round_trip(tree):
    for size in range(1, MAX_SIZE + 1):
        root = REF_ROOTS[size]
        for index in range(size):
            want = ref_path(index, ENTRIES[:size])
            from_list = inclusion_proof(LEAVES, index, size)
            from_tree = tree.inclusion_proof(index, size)
            assert from_list == want, (index, size)
            assert from_tree == want, (index, size)
            verify_inclusion(LEAVES[index], index, size, from_list, root)
    for index in range(MAX_SIZE):
        assert tree.inclusion_proof(index) == tree.inclusion_proof(index, MAX_SIZE)


def test_consistency_proofs_round_trip(tree):
    for new in range(1, MAX_SIZE + 1):
        for old in range(1, new + 1):
            want = ref_proof(old, ENTRIES[:new])
            from_list = consistency_proof(LEAVES, old, new)
            from_tree = tree.consistency_proof(old, new)
            assert from_list == want, (old, new)
            assert from_tree == want, (old, new)
            verify_consistency(old, new, REF_ROOTS[old], REF_ROOTS[new], from_list)
    for old in range(1, MAX_SIZE + 1):
        assert tree.consistency_proof(old) == tree.consistency_proof(old, MAX_SIZE)


def test_generators_reject_out_of_range_arguments(tree):
    with pytest.raises(ValueError):
        inclusion_proof(LEAVES, 0, 0)
    with pytest.raises(ValueError):
        inclusion_proof(LEAVES, 5, 5)
    with pytest.raises(ValueError):
        inclusion_proof(LEAVES, -1, 5)
    with pytest.raises(ValueError):
        inclusion_proof(LEAVES, 0, MAX_SIZE + 1)
    with pytest.raises(ValueError):
        consistency_proof(LEAVES, 0, 5)
    with pytest.raises(ValueError):
        consistency_proof(LEAVES, 6, 5)
    with pytest.raises(ValueError):
        consistency_proof(LEAVES, 1, MAX_SIZE + 1)
    with pytest.raises(ValueError):
        tree.root(MAX_SIZE + 1)
    with pytest.raises(ValueError):
        tree.inclusion_proof(0, MAX_SIZE + 1)
    with pytest.raises(IndexError):
        tree.leaf_hash_at(MAX_SIZE)
    with pytest.raises(ValueError):
        MerkleTree().append_leaf_hash(b"short")
    with pytest.raises(ValueError):
        root_from_leaf_hashes([LEAVES[0], b"x" * 31 + b"", b"y" * 33])


# --------------------------------------------------------------------------
# Mutations of generated proofs: every single change must be rejected
# --------------------------------------------------------------------------


# A note on sizes. An RFC 6962 root does not encode the tree size, and the
# RFC 9162 verifiers use the size only to decide, level by level, whether
# each proof hash is a left or a right sibling and where the path ends. So
# a proof checked against the *same root* but a different size passes
# exactly when that size gives the same sequence of decisions: the verifier
# then computes the very same hashes. That is inherent to the RFC, and
# harmless because a size only ever arrives signed together with its root
# (a tree head): what must hold, and is tested, is that a proof never
# verifies against any other tree head, and that a changed size with the
# root kept passes only in that identical-walk case, never otherwise.


def _walk(index: int, size: int) -> tuple[str, ...]:
    """Which side each PATH(index, D[size]) hash is on, leaf end first (RFC 6962 2.1.1)."""
    if size == 1:
        return ()
    k = _ref_k(size)
    if index < k:
        return _walk(index, k) + ("R",)
    return _walk(index - k, size - k) + ("L",)


def _consistency_walk(old: int, new: int) -> tuple[str, ...]:
    # A consistency proof is the walk from the old tree's last perfect
    # subtree (height = trailing zeros of old) up the new tree.
    height = (old & -old).bit_length() - 1
    return _walk((old - 1) >> height, ((new - 1) >> height) + 1)


def _passes(verify, *args) -> bool:
    try:
        verify(*args)
    except ProofError:
        return False
    return True


def _byte_flips(proof: list[bytes]):
    for i, p in enumerate(proof):
        for j in range(len(p)):
            for mask in (0x01, 0x80):
                q = bytearray(p)
                q[j] ^= mask
                yield proof[:i] + [bytes(q)] + proof[i + 1 :]


def test_inclusion_mutations_are_rejected():
    for size in range(1, MAX_SIZE + 1):
        root = REF_ROOTS[size]
        for index in range(size):
            proof = inclusion_proof(LEAVES, index, size)
            leaf = LEAVES[index]
            for bad in _byte_flips(proof):
                with pytest.raises(ProofError):
                    verify_inclusion(leaf, index, size, bad, root)
            # Any other index, including out of range ones.
            for other in [*range(-1, index), *range(index + 1, size + 2)]:
                with pytest.raises(ProofError):
                    verify_inclusion(leaf, other, size, proof, root)
            for other in range(0, MAX_SIZE + 2):
                if other == size:
                    continue
                # Any other tree head (size with its own root) is rejected.
                if other <= MAX_SIZE:
                    with pytest.raises(ProofError):
                        verify_inclusion(leaf, index, other, proof, REF_ROOTS[other])
                # Root kept: see the note on sizes above _walk.
                assert _passes(verify_inclusion, leaf, index, other, proof, root) == (
                    index < other and _walk(index, other) == _walk(index, size)
                ), (index, size, other)
            # Truncated, extended, and a different leaf or root.
            if proof:
                with pytest.raises(ProofError):
                    verify_inclusion(leaf, index, size, proof[:-1], root)
            with pytest.raises(ProofError):
                verify_inclusion(leaf, index, size, proof + [root], root)
            with pytest.raises(ProofError):
                verify_inclusion(LEAVES[(index + 1) % MAX_SIZE], index, size, proof, root)
            with pytest.raises(ProofError):
                verify_inclusion(leaf, index, size, proof, REF_ROOTS[size - 1])


def test_consistency_mutations_are_rejected():
    for new in range(1, MAX_SIZE + 1):
        for old in range(1, new + 1):
            proof = consistency_proof(LEAVES, old, new)
            r1, r2 = REF_ROOTS[old], REF_ROOTS[new]
            for bad in _byte_flips(proof):
                with pytest.raises(ProofError):
                    verify_consistency(old, new, r1, r2, bad)
            for other in range(0, MAX_SIZE + 2):
                if other != old:
                    with pytest.raises(ProofError):
                        verify_consistency(other, new, r1, r2, proof)
                    if other <= MAX_SIZE:
                        with pytest.raises(ProofError):
                            verify_consistency(other, new, REF_ROOTS[other], r2, proof)
                if other != new:
                    if other <= MAX_SIZE:
                        with pytest.raises(ProofError):
                            verify_consistency(old, other, r1, REF_ROOTS[other], proof)
                    assert _passes(verify_consistency, old, other, r1, r2, proof) == (
                        old < new
                        and old < other
                        and _consistency_walk(old, other) == _consistency_walk(old, new)
                    ), (old, new, other)
            if proof:
                with pytest.raises(ProofError):
                    verify_consistency(old, new, r1, r2, proof[:-1])
            with pytest.raises(ProofError):
                verify_consistency(old, new, r1, r2, proof + [r2])
            with pytest.raises(ProofError):
                verify_consistency(old, new, REF_ROOTS[old - 1], r2, proof)
            with pytest.raises(ProofError):
                verify_consistency(old, new, r1, REF_ROOTS[new - 1], proof)


def test_verifiers_reject_malformed_input():
    root, proof = REF_ROOTS[5], inclusion_proof(LEAVES, 2, 5)
    with pytest.raises(ProofError):
        verify_inclusion(LEAVES[2], 2, 5, [proof[0][:31], *proof[1:]], root)
    with pytest.raises(ProofError):
        verify_inclusion(LEAVES[2], 2, 5, proof, root[:31])
    with pytest.raises(ProofError):
        verify_inclusion(LEAVES[0], 0, 0, [], EMPTY_ROOT)
    cproof = consistency_proof(LEAVES, 3, 5)
    with pytest.raises(ProofError):
        verify_consistency(3, 5, REF_ROOTS[3], REF_ROOTS[5], [cproof[0] + b"\x00", *cproof[1:]])
    with pytest.raises(ProofError):
        verify_consistency(0, 5, EMPTY_ROOT, REF_ROOTS[5], [])
    with pytest.raises(ProofError):
        verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    # Equal sizes: consistent iff same root and empty proof.
    verify_consistency(5, 5, REF_ROOTS[5], REF_ROOTS[5], [])
    verify_consistency(5, 5, REF_ROOTS[5], REF_ROOTS[5], None)


# --------------------------------------------------------------------------
# Cost: proofs from a MerkleTree must not rehash the log
# --------------------------------------------------------------------------


def test_tree_queries_cost_logarithmic_hashes(monkeypatch):
    n = (1 << 17) + 12345  # odd shape: several partial subtrees on the border
    leaves = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(n)]
    t = MerkleTree.from_leaf_hashes(leaves)
    calls = 0
    real = merkle.node_hash

    def counting(left, right):
        nonlocal calls
        calls += 1
        return real(left, right)

    monkeypatch.setattr(merkle, "node_hash", counting)
    bound = 2 * n.bit_length() + 2
    for size in (n, n - 1, 1 << 17, 99_999):
        for op in (
            lambda: t.root(size),
            lambda: t.inclusion_proof(size - 1, size),
            lambda: t.inclusion_proof(size // 3, size),
            lambda: t.consistency_proof(size // 2 + 1, size),
            lambda: t.consistency_proof(7, size),
        ):
            calls = 0
            op()
            assert calls <= bound, (size, calls)
    monkeypatch.undo()
    # Spot-check the big tree against the stateless functions' verifiers.
    root = t.root()
    for index in (0, 1, n // 2, n - 2, n - 1):
        verify_inclusion(leaves[index], index, n, t.inclusion_proof(index), root)
    for old in (1, 2, 3, 1 << 16, 1 << 17, n - 1):
        verify_consistency(old, n, t.root(old), root, t.consistency_proof(old))


# --------------------------------------------------------------------------
# Public test vectors (transparency-dev/merkle), vendored in tests/vectors/merkle
# --------------------------------------------------------------------------

VECTOR_DIR = Path(__file__).resolve().parent / "vectors" / "merkle"


def _vector_params(kind: str):
    # An absent folder yields no cases, which test_vector_folders_are_populated fails.
    files = sorted((VECTOR_DIR / kind).rglob("*.json"))
    return [pytest.param(f, id=f.relative_to(VECTOR_DIR).as_posix()) for f in files]


def _b64(value: str) -> bytes:
    return base64.b64decode(value, validate=True)


def _load(path: Path) -> dict:
    case = json.loads(path.read_text())
    assert isinstance(case.get("wantErr"), bool), f"{path}: no wantErr flag"
    return case


@pytest.mark.parametrize("kind", ["inclusion", "consistency"])
def test_vector_folders_are_populated(kind):
    assert (VECTOR_DIR / kind).is_dir(), f"Merkle test vectors missing from {VECTOR_DIR}"
    files = list((VECTOR_DIR / kind).rglob("*.json"))
    happy = [f for f in files if not _load(f)["wantErr"]]
    assert len(files) > 50 and happy, f"{kind}: {len(files)} cases, {len(happy)} happy"


@pytest.mark.parametrize("path", _vector_params("inclusion"))
def test_inclusion_vector(path):
    case = _load(path)
    args = (
        _b64(case["leafHash"]),
        case["leafIdx"],
        case["treeSize"],
        [_b64(p) for p in case["proof"] or []],
        _b64(case["root"]),
    )
    if case["wantErr"]:
        with pytest.raises(ProofError):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize("path", _vector_params("consistency"))
def test_consistency_vector(path):
    case = _load(path)
    args = (
        case["size1"],
        case["size2"],
        _b64(case["root1"]),
        _b64(case["root2"]),
        [_b64(p) for p in case["proof"] or []],
    )
    if case["wantErr"]:
        with pytest.raises(ProofError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)
