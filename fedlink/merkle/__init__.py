"""RFC 6962 / RFC 9162 Merkle trees: tree hashes, proofs, proof verification.

This is the hashing core of the audit log (docs/design.md, privacy model item 7):
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

Layout: ``hashing`` (leaf and node hashes), ``tree`` (``MerkleTree`` and the
stateless generators over it), ``verify`` (the two ``verify_*`` functions).
"""

from fedlink.merkle.hashing import EMPTY_ROOT, HASH_SIZE, ProofError, leaf_hash, node_hash
from fedlink.merkle.tree import MerkleTree, consistency_proof, inclusion_proof, root_from_leaf_hashes
from fedlink.merkle.verify import verify_consistency, verify_inclusion

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
