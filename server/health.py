"""Encoding health checks the coordinator runs on every upload.

Pure NumPy over one department's packed filters (``server.matching.pack_filters``
layout: ``(n, filter_bits // 64)`` uint64, filter bit ``k`` is bit ``63 - k % 64``
of word ``k // 64``). Nothing here needs or learns the linkage secret: the
checks look only at the bits the coordinator already holds, and catch uploads
that are broken (all zero, truncated, a constant bit) or that would make the
known attacks easy (many identical filters for a frequency attack, strongly
skewed bit positions for pattern mining).

    report = encoding_health(filters)
    report.healthy, report.warnings, report.refusals

`refusals` are findings no working encoder produces (nearly empty or nearly
full filters, many empty filters, one filter shared by a large share of the
records): the coordinator refuses to commit such an upload. `warnings` are
milder and only reported. The thresholds are module constants so a test or an
operator can read them.
1M x 1024-bit filters take about a second or two (chunked unpacking, a 64-bit
row hash for duplicates).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

FILL_LOW = 0.2
FILL_HIGH = 0.8
# Symmetric, because a balanced filter (the default hardening) sets a position's
# complement partner exactly when the position is clear: rare and frequent go together.
POSITION_HIGH = 0.99  # a position set in more than this share of records is "constant"
POSITION_LOW = 0.01   # a position set in less than this share is "dead"
POSITION_MIN_RECORDS = 1000  # below this a healthy position can be that rare (or frequent) by chance
DUPLICATE_MIN = 5     # a filter shared by more than max(DUPLICATE_MIN, DUPLICATE_SHARE * n) records is flagged
DUPLICATE_SHARE = 0.001
# Refusal thresholds: far outside what any schema or hardening produces.
REFUSE_FILL_LOW = 0.05
REFUSE_FILL_HIGH = 0.95
REFUSE_EMPTY_SHARE = 0.05     # more than this share of filters with no bit set
REFUSE_DUPLICATE_MIN = 10     # one filter shared by more than max(MIN, SHARE * n) records
REFUSE_DUPLICATE_SHARE = 0.01
_CHUNK_ROWS = 1 << 15


@dataclass
class HealthReport:
    records: int
    filter_bits: int
    fill_rate: float                 # mean fraction of bits set
    fill_min: float                  # lowest per-record fill
    fill_max: float                  # highest per-record fill
    empty_filters: int               # records with no bit set
    distinct_filters: int
    max_duplicates: int              # most records sharing one identical filter
    duplicate_limit: int             # max_duplicates above this is flagged
    position_min: float              # lowest per-position frequency
    position_max: float              # highest per-position frequency
    position_std: float              # std of per-position frequencies
    chi2: float                      # sum((c - E)^2 / E) of per-position counts vs uniform E
    chi2_per_dof: float              # chi2 / (filter_bits - 1); ~ (1 - fill) for a healthy encoding
    constant_positions: list[int] = field(default_factory=list)  # set in > POSITION_HIGH of records
    dead_positions: list[int] = field(default_factory=list)      # set in < POSITION_LOW of records
    warnings: list[str] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)  # broken: the upload is not committed

    @property
    def healthy(self) -> bool:
        return not self.warnings and not self.refusals

    def to_dict(self) -> dict:
        d = asdict(self)
        d["healthy"] = self.healthy
        return d

    def figures(self) -> dict:
        """The compact form the audit event and the operator's report carry (positions as counts)."""
        rounded = {k: round(getattr(self, k), 4) for k in (
            "fill_rate", "fill_min", "fill_max", "position_min", "position_max", "chi2_per_dof")}
        return {**rounded, "empty_filters": self.empty_filters, "max_duplicates": self.max_duplicates,
                "duplicate_limit": self.duplicate_limit, "constant_positions": len(self.constant_positions),
                "dead_positions": len(self.dead_positions), "warnings": list(self.warnings),
                "refusals": list(self.refusals)}


def _as_filters(filters: np.ndarray) -> np.ndarray:
    filters = np.asarray(filters)
    if filters.dtype != np.uint64 or filters.ndim != 2:
        raise ValueError(f"filters must be a 2-D uint64 array (pack_filters layout), got {filters.dtype} {filters.shape}")
    return np.ascontiguousarray(filters)


def position_counts(filters: np.ndarray) -> np.ndarray:
    """Number of records with each filter bit set, ``(filter_bits,)`` int64, in filter bit order."""
    filters = _as_filters(filters)
    n, words = filters.shape
    counts = np.zeros(words * 64, dtype=np.int64)
    for lo in range(0, n, _CHUNK_ROWS):
        chunk = filters[lo:lo + _CHUNK_ROWS]
        # Big-endian bytes of each word are numpy.packbits order of its 64 bits.
        raw = chunk.astype(">u8").view(np.uint8)
        bits = np.unpackbits(raw, axis=1)
        counts += bits.sum(axis=0, dtype=np.int64)
    return counts


def _row_hashes(filters: np.ndarray) -> np.ndarray:
    # splitmix64-style mixing of each word with its index, summed: equal rows
    # give equal hashes; unequal rows collide with probability ~2^-64.
    h = np.zeros(filters.shape[0], dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(filters.shape[1]):
            x = filters[:, j] + np.uint64((0x9E3779B97F4A7C15 * (j + 1)) & 0xFFFFFFFFFFFFFFFF)
            x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            x ^= x >> np.uint64(31)
            h = h * np.uint64(0x100000001B3) + x
    return h


def duplicate_groups(filters: np.ndarray) -> tuple[int, int]:
    """(distinct filters, size of the largest group of identical filters)."""
    filters = _as_filters(filters)
    n = filters.shape[0]
    if n == 0:
        return 0, 0
    _, inverse, counts = np.unique(_row_hashes(filters), return_inverse=True, return_counts=True)
    top = int(counts.argmax())
    members = filters[inverse.ravel() == top]
    if (members == members[0]).all():
        return len(counts), int(counts[top])
    # A hash collision (never seen in practice): count exactly within the group.
    _, exact = np.unique(members, axis=0, return_counts=True)
    return len(counts) + len(exact) - 1, int(max(exact.max(), np.sort(counts)[-2] if len(counts) > 1 else 0))


def encoding_health(filters: np.ndarray) -> HealthReport:
    """Health of one department's upload; ``warnings`` lists what an operator should look at."""
    filters = _as_filters(filters)
    n, words = filters.shape
    m = words * 64
    warnings: list[str] = []
    if n == 0 or m == 0:
        return HealthReport(n, m, 0.0, 0.0, 0.0, 0, 0, 0, DUPLICATE_MIN, 0.0, 0.0, 0.0, 0.0, 0.0,
                            warnings=["no filters to check"])

    pop = np.bitwise_count(filters).sum(axis=1, dtype=np.int64)
    per_fill = pop / m
    fill = float(per_fill.mean())
    empty = int((pop == 0).sum())

    distinct, max_dup = duplicate_groups(filters)
    dup_limit = max(DUPLICATE_MIN, int(DUPLICATE_SHARE * n))

    counts = position_counts(filters)
    freq = counts / n
    expected = counts.sum() / m
    chi2 = float(((counts - expected) ** 2).sum() / expected) if expected > 0 else 0.0
    constant = np.flatnonzero(freq > POSITION_HIGH).tolist()
    dead = np.flatnonzero(freq < POSITION_LOW).tolist()

    if fill < FILL_LOW:
        warnings.append(f"fill rate {fill:.3f} is below {FILL_LOW}: filters are nearly empty "
                        "(blank fields, a truncated encoding or too few hash functions)")
    elif fill > FILL_HIGH:
        warnings.append(f"fill rate {fill:.3f} is above {FILL_HIGH}: filters are nearly full "
                        "and Dice scores lose meaning")
    if empty:
        warnings.append(f"{empty} of {n} filters have no bit set")
    if max_dup > dup_limit:
        warnings.append(f"{max_dup} records share one identical filter (limit {dup_limit}): "
                        "identical filters are exposed to a frequency attack")
    if constant and n >= POSITION_MIN_RECORDS:
        warnings.append(f"{len(constant)} bit positions are set in more than {POSITION_HIGH:.0%} of records "
                        f"(first: {constant[:5]}): a constant token or a broken encoder")
    if dead and n >= POSITION_MIN_RECORDS:
        warnings.append(f"{len(dead)} bit positions are set in fewer than {POSITION_LOW:.0%} of records "
                        f"(first: {dead[:5]})")
    refusals = _refusals(n, fill, empty, max_dup)
    return HealthReport(
        records=n, filter_bits=m, fill_rate=fill, fill_min=float(per_fill.min()), fill_max=float(per_fill.max()),
        empty_filters=empty, distinct_filters=distinct, max_duplicates=max_dup, duplicate_limit=dup_limit,
        position_min=float(freq.min()), position_max=float(freq.max()), position_std=float(freq.std()),
        chi2=chi2, chi2_per_dof=chi2 / (m - 1) if m > 1 else 0.0,
        constant_positions=constant, dead_positions=dead, warnings=warnings, refusals=refusals,
    )


def _refusals(n: int, fill: float, empty: int, max_dup: int) -> list[str]:
    out = []
    if not REFUSE_FILL_LOW <= fill <= REFUSE_FILL_HIGH:
        out.append(f"the filters have {fill:.1%} of their bits set on average, outside "
                   f"{REFUSE_FILL_LOW:.0%}..{REFUSE_FILL_HIGH:.0%}: the identity columns are blank or misnamed, "
                   "or the encoder is broken")
    if empty > REFUSE_EMPTY_SHARE * n:
        out.append(f"{empty} of {n} filters have no bit set: those records have no identifying field "
                   "(check the extract's column names against the project's schema)")
    limit = max(REFUSE_DUPLICATE_MIN, int(REFUSE_DUPLICATE_SHARE * n))
    if max_dup > limit:
        out.append(f"{max_dup} of {n} records share one identical filter (more than {limit}): the same "
                   "identity repeated, or an encoder that ignores the records")
    return out
