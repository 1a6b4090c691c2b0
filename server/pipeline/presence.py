"""A blank resident ID as no evidence: pairs with one are scored on the filter without the ID.

In one record-level filter a blank field sets no bits, so against a record that
has it the other record's ID bits count as disagreement: a true pair with a
blank ID scored a median 0.027 under its threshold where the ID was all it
lacked (docs/quality.md). A record-level schema therefore keeps the ID in its
own segment at the end of the filter (``schema.id_segment_bits``,
agents/hardening.py ``IdSegmentEncoder``), all zero where the ID is blank.
A pair where either record's segment is zero is in the blank class: its score
is the Dice of the rest of the filter (the zero segment adds nothing to the
overlap, so it is the full overlap over the rest's bit counts), and it is held
to its own threshold, read as the first one is (server/threshold.py) from the
best and runner-up scores of the sampled records with a blank ID against the
whole other side, on the rest of the filter. Pairs where both have an ID keep
the whole filter's Dice and the pair's threshold from the records with an ID.

The two classes are compared apart (``compare_by_class``, for the link phase and for
the second look of absence rules alike): the pairs with both IDs on the whole filter
at their class's level, the pairs with a blank ID on the rest of the filter at
theirs, through the engine's pass over changed records with the blank-ID records as
the changed ones. Compared together on the whole filter, the blank class's
threshold on the rest had to be bounded by the records' bit counts, which put every
department pair's level near the floor (0.63-0.65 at 100,000 persons, 160 million
pairs kept for the next run, docs/scale.md).
"""
from __future__ import annotations

import numpy as np

from server.matching import ScoredPairs, popcounts
from server.blocking.scoring import at_threshold
from server.threshold import SAMPLE, sample_rows, threshold_from_scores

# Fewer blank-ID records than this on both sides together: their runner-ups say too
# little to read a threshold, and the pair's blank class keeps the full one.
MIN_CLASS_RECORDS = 50


def blank_ids(filters: np.ndarray, words: int) -> np.ndarray:
    """Per record: its ID segment (the last ``words`` words) is all zero, the ID blank."""
    if not words:
        return np.zeros(len(filters), bool)
    return ~filters[:, -words:].any(axis=1)


def rest_and_id_counts(filters: np.ndarray, words: int) -> tuple[np.ndarray, np.ndarray]:
    """Per record: the set bits of the filter less its ID segment, and of the segment (no copy)."""
    return (np.bitwise_count(filters[:, :-words]).sum(axis=1, dtype=np.int32),
            np.bitwise_count(filters[:, -words:]).sum(axis=1, dtype=np.int32))


def without_id(filters: np.ndarray, words: int) -> np.ndarray:
    """The filters less their ID segment, C-contiguous for the kernels."""
    return np.ascontiguousarray(filters[:, :-words]) if words else filters


def sampled_with_id(pair, samples, profile, words: int) -> np.ndarray:
    """Over a department pair's profile (both sides' sampled records, in order): those with an ID,
    whose scores give the first threshold; all of them where fewer than MIN_CLASS_RECORDS have one."""
    mask = np.concatenate([~blank_ids(d.filters[rows], words)[:len(side.best)]
                           for d, rows, side in zip(pair, samples, profile)])
    return mask if mask.sum() >= MIN_CLASS_RECORDS else np.ones_like(mask)


def class_sample(refs: list[bytes], blank: np.ndarray) -> np.ndarray:
    """Up to SAMPLE of the blank-ID rows, chosen by reference as the full sample is."""
    rows = np.flatnonzero(blank).astype(np.int64)
    return rows if len(rows) <= SAMPLE else rows[sample_rows([refs[i] for i in rows])]


def blank_threshold(left, right, rests: tuple[np.ndarray, np.ndarray], words: int, floor: float, full: float,
                    engine) -> float:
    """The threshold of the pair's blank class (module doc); ``full`` where it has too few
    records to read one. ``left``, ``right``: DepartmentRecords; ``rests``: their ``rests_of``."""
    best, second = [], []
    for (a, rest_a), rest_b in (((left, rests[0]), rests[1]), ((right, rests[1]), rests[0])):
        rows = class_sample(a.refs, blank_ids(a.filters, words))
        if len(rows) and len(rest_b):
            s1, s2, _, _ = engine.best_two(rest_a[rows], rest_b, floor)
            best.append(s1)
            second.append(s2)
    if sum(len(s) for s in best) < MIN_CLASS_RECORDS:
        return full
    best, second = (np.where(s >= floor, s, -1.0) for s in (np.concatenate(best), np.concatenate(second)))
    return threshold_from_scores(best, second, floor)


def rests_of(departments, words: int) -> list[np.ndarray] | None:
    """Every department's filters less their ID segment, copied once per run: the blank class's
    threshold and compare read them for every department pair the department is in."""
    return [without_id(d.filters, words) for d in departments] if words else None


def _kept(pairs: ScoredPairs, keep: np.ndarray) -> ScoredPairs:
    return ScoredPairs(pairs.left[keep], pairs.right[keep], pairs.score[keep])


def compare_by_class(filters: list[np.ndarray], rests: list[np.ndarray] | None, levels: dict, blank_levels: dict,
                     words: int, engine, changed: list[np.ndarray] | None = None, stats=None, progress=None
                     ) -> tuple[dict, dict]:
    """Each department pair's pairs of both classes: (ID class, blank class), each by (left, right).

    The ID class: the pairs of ``levels`` whose records both have an ID, scored on the whole filters
    at or above the pair's level. The blank class: the pairs of ``blank_levels`` where either record's
    ID is blank, scored on the rests (``rests``: ``rests_of``) at or above the pair's blank level, by
    the engine's pass over changed records with the blank-ID records as the changed ones (a blocked
    pair is blocked on the rests' buckets). With ``changed`` (a bool mask per department: an
    incremental run's new or changed records), only the pairs with a changed record, in both classes:
    the blank class then takes the changed records' pairs on the rests and keeps those with a blank
    ID, since a changed record with an ID can have a new blank-class pair with an unchanged blank one.
    Without an ID segment (``words`` 0) every pair is in the ID class."""
    whole = engine.compare_all(filters, levels, changed=changed, stats=stats, progress=progress) if levels else {}
    if not words:
        return whole, {pair: ScoredPairs.empty() for pair in blank_levels}
    blanks = [blank_ids(f, words) for f in filters]
    ids = {(a, b): _kept(p, ~blanks[a][p.left] & ~blanks[b][p.right]) for (a, b), p in whole.items()}
    # A pair with no blank-ID record on either side has no blank class: nothing to compare.
    wanted = {(a, b): level for (a, b), level in blank_levels.items() if blanks[a].any() or blanks[b].any()}
    rest = engine.compare_all(rests, wanted, changed=blanks if changed is None else changed,
                              stats=stats) if wanted else {}
    blank = {pair: ScoredPairs.empty() for pair in blank_levels}
    blank.update({(a, b): p if changed is None else _kept(p, blanks[a][p.left] | blanks[b][p.right])
                  for (a, b), p in rest.items()})
    return ids, blank


def merged(*parts: ScoredPairs) -> ScoredPairs:
    """One department pair's pairs from several parts (the classes; kept and fresh), by (left, right)."""
    lefts, rights, scores = (np.concatenate([getattr(p, c) for p in parts]) for c in ("left", "right", "score"))
    order = np.lexsort((rights, lefts))
    return ScoredPairs(lefts[order].astype(np.int64), rights[order].astype(np.int64),
                       scores[order].astype(np.float32))


def cut_by_class(pairs: ScoredPairs, thresholds: tuple[float, float], left: np.ndarray, right: np.ndarray,
                 words: int) -> ScoredPairs:
    """The pairs (each scored in its class at a lower level: ``compare_by_class``) that reach their
    class's threshold, as the exact kernel decides: both IDs at the first on the whole filter's bit
    counts, a blank ID at the second on the rest's. ``left``, ``right``: the packed filters."""
    bits = left.shape[1] * 64
    counts = popcounts(left), popcounts(right)
    if not words:
        return at_threshold(pairs, thresholds[0], *counts, bits)
    blank = blank_ids(left, words)[pairs.left] | blank_ids(right, words)[pairs.right]
    rest = rest_and_id_counts(left, words)[0], rest_and_id_counts(right, words)[0]
    return merged(at_threshold(_kept(pairs, ~blank), thresholds[0], *counts, bits),
                  at_threshold(_kept(pairs, blank), thresholds[1], *rest, bits - 64 * words))
