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

The candidates are the pairs at the schema's floor on the whole filter (the
compare is unchanged), so a blank-class pair is found when its whole-filter
Dice reaches the floor: under twin a rest Dice of about 0.70 at the default
0.6, below every blank-class threshold measured (docs/quality.md).
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


def blank_threshold(left, right, words: int, floor: float, full: float, engine) -> float:
    """The threshold of the pair's blank class (module doc); ``full`` where it has too few
    records to read one. ``left``, ``right``: DepartmentRecords."""
    best, second = [], []
    for a, b in ((left, right), (right, left)):
        rows = class_sample(a.refs, blank_ids(a.filters, words))
        if len(rows) and len(b.ids):
            s1, s2, _, _ = engine.best_two(without_id(a.filters[rows], words), without_id(b.filters, words), floor)
            best.append(s1)
            second.append(s2)
    if sum(len(s) for s in best) < MIN_CLASS_RECORDS:
        return full
    best, second = (np.where(s >= floor, s, -1.0) for s in (np.concatenate(best), np.concatenate(second)))
    return threshold_from_scores(best, second, floor)


def whole_filter_floor(threshold: float, words: int, filter_words: int) -> float:
    """The whole filter's Dice under which no blank-class pair reaches ``threshold`` on the rest.
    A bound where the two records' rests together fill the rest's bits at least as densely as one
    ID segment fills its own (under twin and balance about 1 against 0.5): the partner's segment
    then adds at most the segment's share of the bits to the Dice's denominator."""
    return threshold * (filter_words - words) / filter_words if words else threshold


def compare_level(left: np.ndarray, right: np.ndarray, thresholds: tuple[float, float], words: int) -> float:
    """The whole filter's Dice at which a department pair is compared so that ``cut_by_class`` finds
    every pair it keeps: the first threshold for pairs with both IDs; for a pair with a blank ID, its
    threshold on the rest times the least share the rest can have of the pair's bits. A blank
    record's whole Dice is its rest Dice times (its rest + the other's rest) over (those + the other's
    ID segment); the records' own counts bound that share from below (the fewest rest bits on either
    side against the most ID bits on the other), so nothing the class keeps is left uncompared.
    ``left``, ``right``: the packed filters."""
    full, blank = thresholds
    if not words:
        return full
    (rest_left, id_left), (rest_right, id_right) = rest_and_id_counts(left, words), rest_and_id_counts(right, words)
    rest, ids = (rest_left, rest_right), (id_left, id_right)
    level = full
    for side in (0, 1):
        blanks = ids[side] == 0
        if blanks.any():
            least = float(rest[side][blanks].min() + rest[1 - side].min())
            most = float(ids[1 - side].max())
            level = min(level, blank * least / (least + most) if least + most else blank)
    return level


def cut_by_class(pairs: ScoredPairs, thresholds: tuple[float, float], left: np.ndarray, right: np.ndarray,
                 words: int) -> ScoredPairs:
    """The pairs (scored on the whole filters, at a floor) that reach their class's threshold:
    both IDs at the first on the whole filter's Dice, a blank ID at the second on the Dice of
    the rest, which they then carry as their score. ``left``, ``right``: the packed filters."""
    bits = left.shape[1] * 64
    counts = popcounts(left), popcounts(right)
    if not words:
        return at_threshold(pairs, thresholds[0], *counts, bits)
    blank = blank_ids(left, words)[pairs.left] | blank_ids(right, words)[pairs.right]
    full = ScoredPairs(pairs.left[~blank], pairs.right[~blank], pairs.score[~blank])
    # The overlap is all in the rest (a zero segment shares no bit): recovered exactly from the
    # whole filter's score and counts, then scored over the rest's counts.
    li, rj = pairs.left[blank], pairs.right[blank]
    overlap = np.rint(pairs.score[blank].astype(np.float64) * (counts[0][li] + counts[1][rj]) / 2.0)
    rest = rest_and_id_counts(left, words)[0], rest_and_id_counts(right, words)[0]
    total = np.maximum(rest[0][li] + rest[1][rj], 1)
    partial = ScoredPairs(li, rj, (2.0 * overlap / total).astype(np.float32))
    kept = (at_threshold(full, thresholds[0], *counts, bits),
            at_threshold(partial, thresholds[1], *rest, bits - 64 * words))
    return ScoredPairs(*(np.concatenate([k.left for k in kept]), np.concatenate([k.right for k in kept]),
                         np.concatenate([k.score for k in kept])))
