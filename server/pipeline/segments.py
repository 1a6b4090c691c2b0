"""Segmented linkage (schema comparison = "segments"): missing evidence is missing,
and agreement is weighed by how telling it is.

A segmented filter (agents/hardening.py SegmentedEncoder) holds one segment per
group of fields and a presence word saying which segments have a value. For a
department pair:

1. Candidates: every pair that agrees strongly on one of a few passes of
   segments (the names, the pinyin, the document, the phonetic key with the
   birth date), each pass the ordinary Dice kernel on those segments' words of
   the records that have them all; so a record with a blank ID is found by its
   name, and one with a pinyin-only name by its pinyin.
2. Each candidate's Dice per segment, in one compiled pass over the pairs, and
   only where both records have the segment: a blank on either side is level 0,
   no evidence, where the record-level Dice counted the other side's bits as
   disagreement.
3. Fellegi-Sunter: every segment's Dice is cut into agreement levels and the
   m- and u-probabilities of each level, and the share of matches, are fitted
   by EM on the candidates themselves (no truth). A pair's weight is the sum of
   log(m/u) of its levels; it links where the posterior probability of a match
   is at least one half. Agreement on a common name is weighed less than on a
   rare one through the fit, not through token frequencies: a name segment's
   levels do not say which name agreed (frequency evidence would have to be
   sent or learned per value, which is what a frequency attack needs).

The score a link carries is the weight scaled into [0, 1] (0 the weight of
disagreement everywhere, 1 agreement everywhere), so the grouping takes the
best-weighed links first and the threshold reads on the same scale.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from fedlink.schema import LinkageSchema, Segment
from server.matching import ScoredPairs, _popcount64

# Agreement levels of a segment's Dice, from the top; level 0 is "missing".
# Under balance two unrelated values score about 0.5, one typo ~0.85-0.95.
LEVEL_CUTS = (0.99, 0.88, 0.75)
LEVELS = len(LEVEL_CUTS) + 2  # missing, the cuts, disagreement
CANDIDATE_DICE = 0.8          # a pass's Dice at which a pair becomes a candidate
EM_ITERATIONS = 60


def candidate_passes(segments: tuple[Segment, ...]) -> list[tuple[int, ...]]:
    """The passes of segments that find candidates (indices into segments); a pass
    names only segments the schema has."""
    index = {s.group: i for i, s in enumerate(segments)}
    wanted = (("name",), ("pinyin",), ("document",), ("name_phonetic", "birth_date"), ("name", "birth_date"))
    return [tuple(index[g] for g in p) for p in wanted if all(g in index for g in p)]


def presence(filters: np.ndarray, n_segments: int) -> np.ndarray:
    """(n, n_segments) bool: which segments each record has, from its presence word."""
    word = filters[:, -1]
    shifts = np.uint64(63) - np.arange(n_segments, dtype=np.uint64)
    return ((word[:, None] >> shifts[None, :]) & np.uint64(1)).astype(bool)


def _pass_words(segments: tuple[Segment, ...], chosen: tuple[int, ...]) -> np.ndarray:
    return np.concatenate([np.arange(segments[i].start, segments[i].start + segments[i].words) for i in chosen])


def candidates(left: np.ndarray, right: np.ndarray, segments: tuple[Segment, ...], engine) -> np.ndarray:
    """(k, 2) int64 unique candidate pairs (left row, right row), sorted."""
    pl, pr = presence(left, len(segments)), presence(right, len(segments))
    found = []
    for chosen in candidate_passes(segments):
        rows_l = np.flatnonzero(pl[:, chosen].all(axis=1))
        rows_r = np.flatnonzero(pr[:, chosen].all(axis=1))
        if not len(rows_l) or not len(rows_r):
            continue
        words = _pass_words(segments, chosen)
        hits = engine.compare(np.ascontiguousarray(left[rows_l][:, words]),
                              np.ascontiguousarray(right[rows_r][:, words]), CANDIDATE_DICE)
        found.append(np.stack([rows_l[hits.left], rows_r[hits.right]], axis=1))
    if not found:
        return np.empty((0, 2), np.int64)
    return np.unique(np.concatenate(found), axis=0)


@njit(cache=True, nogil=True)
def _segment_levels(left, right, li, rj, starts, ends, cuts):
    """(k, S) int8 agreement level of each pair in each segment (0: missing on a side)."""
    n_seg = starts.shape[0]
    out = np.zeros((li.shape[0], n_seg), np.int8)
    last = left.shape[1] - 1
    for k in range(li.shape[0]):
        a = left[li[k]]
        b = right[rj[k]]
        both = a[last] & b[last]
        for s in range(n_seg):
            if (both >> np.uint64(63 - s)) & np.uint64(1) == 0:
                continue
            inter = 0
            total = 0
            for w in range(starts[s], ends[s]):
                inter += _popcount64(a[w] & b[w])
                total += _popcount64(a[w]) + _popcount64(b[w])
            dice = 2.0 * inter / total if total else 0.0
            level = cuts.shape[0] + 1
            for c in range(cuts.shape[0]):
                if dice >= cuts[c]:
                    level = c + 1
                    break
            out[k, s] = level
    return out


# Segments that all encode the name: one comparison, at the best level any of them
# reaches. Counted apart they would be three votes for one fact (EM assumes the
# comparisons independent given the class), and namesakes would outweigh a date.
NAME_GROUPS = ("name", "pinyin", "name_phonetic")


def comparisons(segments: tuple[Segment, ...]) -> list[tuple[int, ...]]:
    """The segments behind each comparison of the model: the name ones together, the rest one each."""
    names = tuple(i for i, s in enumerate(segments) if s.group in NAME_GROUPS)
    rest = [(i,) for i, s in enumerate(segments) if s.group not in NAME_GROUPS]
    return ([names] if names else []) + rest


def segment_levels(left, right, pairs: np.ndarray, segments: tuple[Segment, ...]) -> np.ndarray:
    """(k, comparisons) agreement level of each candidate pair (0: missing on a side)."""
    starts = np.array([s.start for s in segments], np.int64)
    ends = np.array([s.start + s.words for s in segments], np.int64)
    levels = _segment_levels(left, right, np.ascontiguousarray(pairs[:, 0]), np.ascontiguousarray(pairs[:, 1]),
                             starts, ends, np.array(LEVEL_CUTS))
    out = np.zeros((len(pairs), len(comparisons(segments))), np.int8)
    for c, members in enumerate(comparisons(segments)):
        sub = levels[:, list(members)]
        best = np.where(sub > 0, sub, LEVELS).min(axis=1)  # the best level present
        out[:, c] = np.where(best < LEVELS, best, 0)
    return out


@dataclass(frozen=True)
class FellegiSunter:
    """Fitted m- and u-probabilities, (S, LEVELS) each (column 0, missing, unused), and the match share."""

    m: np.ndarray
    u: np.ndarray
    share: float

    @property
    def weights(self) -> np.ndarray:
        w = np.log(self.m / self.u)
        w[:, 0] = 0.0  # missing on either side: no evidence
        return w

    def pair_weights(self, levels: np.ndarray) -> np.ndarray:
        w = self.weights
        return w[np.arange(levels.shape[1])[None, :], levels].sum(axis=1)

    @property
    def link_weight(self) -> float:
        """The weight at which the posterior probability of a match is one half."""
        return float(np.log((1 - self.share) / self.share))

    def scale(self) -> tuple[float, float]:
        """The least and greatest weight a pair can have (0 and 1 of a link's score)."""
        w = self.weights
        return float(w[:, 1:].min(axis=1).sum()), float(w[:, 1:].max(axis=1).sum())


def fit_em(levels: np.ndarray, iterations: int = EM_ITERATIONS) -> FellegiSunter:
    """EM of the two-class latent model over the candidates' levels (missing ignored)."""
    k, n_seg = levels.shape
    onehot = np.zeros((k, n_seg, LEVELS))
    onehot[np.arange(k)[:, None], np.arange(n_seg)[None, :], levels] = 1.0
    onehot[:, :, 0] = 0.0
    # Start from "matches agree": m falls and u rises with the level.
    ramp = np.linspace(0.0, 1.0, LEVELS - 1)
    m = np.tile(np.concatenate(([1.0], np.exp(-4 * ramp))), (n_seg, 1))
    u = np.tile(np.concatenate(([1.0], np.exp(4 * ramp))), (n_seg, 1))
    share = 0.2
    for _ in range(iterations):
        m[:, 1:] /= m[:, 1:].sum(axis=1, keepdims=True)
        u[:, 1:] /= u[:, 1:].sum(axis=1, keepdims=True)
        log_m = (onehot * np.log(m)[None]).sum(axis=(1, 2))
        log_u = (onehot * np.log(u)[None]).sum(axis=(1, 2))
        odds = np.clip(log_m - log_u + np.log(share / (1 - share)), -50, 50)
        g = 1.0 / (1.0 + np.exp(-odds))
        share = float(np.clip(g.mean(), 1e-6, 1 - 1e-6))
        # Laplace smoothing keeps every level possible in both classes.
        m = (g[:, None, None] * onehot).sum(axis=0) + 0.5
        u = ((1 - g)[:, None, None] * onehot).sum(axis=0) + 0.5
        m[:, 0] = u[:, 0] = 1.0
    m[:, 1:] /= m[:, 1:].sum(axis=1, keepdims=True)
    u[:, 1:] /= u[:, 1:].sum(axis=1, keepdims=True)
    return FellegiSunter(m, u, share)


def link_segments(left: np.ndarray, right: np.ndarray, schema: LinkageSchema, engine
                  ) -> tuple[ScoredPairs, float, FellegiSunter | None]:
    """The links of one department pair and the threshold on their score scale."""
    segments = schema.segments()
    pairs = candidates(left, right, segments, engine)
    if len(pairs) < 2:
        return ScoredPairs.empty(), 1.0, None
    levels = segment_levels(left, right, pairs, segments)
    model = fit_em(levels)
    weight = model.pair_weights(levels)
    low, high = model.scale()
    score = ((weight - low) / (high - low)).astype(np.float32)
    cut = (model.link_weight - low) / (high - low)
    threshold = float(np.clip(cut if schema.auto_threshold else schema.threshold, 0.0, 1.0))
    keep = score >= np.float32(threshold)
    return ScoredPairs(pairs[keep, 0], pairs[keep, 1], score[keep]), round(threshold, 4), model
