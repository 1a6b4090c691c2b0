"""Bit-sampling LSH parameters and what blocking did.

Choice of r and L
-----------------
The default is r = 26, L = 1200, chosen on the agents' real encodings
(balanced filters, fill 0.5) of a synth scenario with doubled errors: pair
completeness 0.996 of all true pairs, 7.1e-4 of the pairs compared
(docs/scale.md, ``bench/scale.py --scenario``).  Real filters share tokens
(sex, birth years, common surnames, addresses), so unrelated pairs agree on
more bits than the independent-bits model below says: the old default
r = 20, L = 600 compared 14% of the pairs of real (pre-balance) encodings.
The model below still explains the shape of the trade-off; the figures for
choosing come from the measured per-pair bit agreement.  r over 31 is
allowed: the sampled bits are then hashed to a 31-bit key.

Two filters of popcounts ``ka`` and ``kb`` with Dice ``d`` differ in
``(ka + kb) (1 - d)`` bits, so with mean fill ``f`` one sampled bit agrees
with probability ``s = 1 - 2 f (1 - d)``, and

    P(candidate) = 1 - (1 - s^r)^L.

A true match at the threshold d = 0.8 with f = 0.5 has s = 0.80 (f = 0.45:
0.82; f = 0.55: 0.78).  Unrelated filters agree on a bit with
``s0 = f^2 + (1 - f)^2``: 0.505 at f = 0.45, 0.50 at f = 0.5, 0.52 at
f = 0.4.  Larger r lowers the false rate ``~ L s0^r``; L must then grow as
``ln(1/miss) / s^r`` to keep the true matches.  For r = 20 and L = 600
(the model's choice, and the default until it was measured on real
encodings; ``LshParams()`` is now r = 26, L = 1200):

========================  ======  ==========================================
pair                      s       P(candidate)
========================  ======  ==========================================
Dice 0.80, fill 0.45      0.82    0.99999
Dice 0.80, fill 0.50      0.80    0.9990
Dice 0.80, fill 0.55      0.78    0.985
Dice 0.75, fill 0.45      0.775   0.975
Dice 0.75, fill 0.50      0.75    0.85
Dice 0.70, fill 0.50      0.70    0.38
unrelated, fill 0.45      0.505   7.0e-4 (the fraction of pairs compared)
unrelated, fill 0.50      0.50    5.7e-4
unrelated, fill 0.40      0.52    1.3e-3
========================  ======  ==========================================

Neighbouring choices, L set for P = 0.999 at s = 0.80, fraction compared at
fill 0.45: r = 16, L = 242: 4.3e-3; r = 18, L = 380: 1.7e-3; r = 20,
L = 596: 7.0e-4; r = 22, L = 933: 2.8e-4; r = 24, L = 1460: 1.1e-4.
r = 20 is the smallest r that compares under 1/1000 of the pairs at 45%
fill, and the work of hashing and sorting grows with L, so the model
alone would pick L = 600.
Measured (``bench/scale.py``, 20k x 20k perturbed filters, fill ~45%): pair
completeness 1.000 for true pairs of Dice >= 0.8, 0.976 at 0.75-0.8, 0.77
at 0.7-0.75; 7.1e-4 of the pairs compared.

For the default project threshold of 0.75, r = 20, L = 600 keeps 97.5% of
the pairs right at the threshold at 45% fill, and true matches mostly score
well above it.  ``LshParams.for_threshold(0.75)`` gives P = 0.999 there at
50% fill with r = 23, L = 5160 (about 9 times the work); with
``max_fraction=1.5e-2``, r = 16, L = 686 (1.2% of the pairs compared).

The fraction of unrelated pairs compared does not fall with the population,
so candidates grow as ``n * m * L * s0^r``: quadratic, with a constant about
1/1400 of the all-pairs work.  Up to ~100k records a side the per-band work
(linear in n + m) dominates; beyond it the candidates do.
``LshParams.for_threshold(..., pairs=n*m)`` raises r with the population
(r ~ log(n m) / log(1/s0)) to keep the candidates near-linear, at the price
of more bands (L ~ (n m)^rho, rho = ln s / ln s0, about 0.32): for 0.9M x
0.9M it asks r = 28, L = 3568; ``bench/scale.py --big`` uses r = 24,
L = 1460 (1.1e-4 compared, P = 0.999 at s = 0.80).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

MAX_ROWS = 64  # beyond 31 sampled bits, the bits are hashed to a 31-bit key (server.blocking.keys)

def candidate_probability(s: float | np.ndarray, rows: int, bands: int):
    """P(two records are candidates) when each sampled bit agrees with probability s."""
    return 1.0 - (1.0 - np.asarray(s, dtype=np.float64) ** rows) ** bands


def bit_agreement(dice: float, fill: float) -> float:
    """Probability that one bit agrees for two filters of mean fill ``fill`` and Dice ``dice``."""
    return 1.0 - 2.0 * fill * (1.0 - dice)


@dataclass(frozen=True)
class LshParams:
    """Bit-sampling LSH parameters (see the module notes for the choice)."""

    # Measured on the agents' real (balanced, fill 0.5) encodings of a synth
    # scenario with doubled errors (docs/scale.md): r = 26, L = 1200 keeps
    # 0.996 of the true pairs and compares 7e-4 of all pairs; the iid model
    # in the module notes is optimistic for real filters (shared tokens).
    bands: int = 1200
    rows: int = 26
    seed: int = 0
    max_bucket: int = 1000

    def __post_init__(self) -> None:
        if not 1 <= self.rows <= MAX_ROWS:
            raise ValueError(f"rows must be in 1..{MAX_ROWS}, got {self.rows}")
        if self.bands < 1:
            raise ValueError(f"bands must be positive, got {self.bands}")
        if self.max_bucket < 1:
            raise ValueError(f"max_bucket must be positive, got {self.max_bucket}")

    def probability(self, dice: float, fill: float = 0.5) -> float:
        """P(candidate) for a pair of the given Dice and mean fill."""
        return float(candidate_probability(bit_agreement(dice, fill), self.rows, self.bands))

    def expected_fraction(self, fill: float = 0.45) -> float:
        """Expected fraction of unrelated (independent random) pairs compared."""
        s0 = fill * fill + (1.0 - fill) * (1.0 - fill)
        return float(candidate_probability(s0, self.rows, self.bands))

    @classmethod
    def for_threshold(
        cls,
        threshold: float,
        *,
        fill: float = 0.5,
        recall: float = 0.999,
        max_fraction: float | None = None,
        pairs: int | None = None,
        **kwargs,
    ) -> LshParams:
        """The fewest bands reaching ``recall`` at Dice ``threshold`` and fill ``fill``.

        r is the smallest value whose expected fraction of unrelated pairs
        compared (at fill 0.45) is at most ``max_fraction``; by default
        1/1000, or, given ``pairs`` (n*m), about 20 candidates per record of
        the larger side when that is stricter.  L then follows from the
        formula.  Raises ValueError when no r <= 31 gets there.
        """
        s = bit_agreement(threshold, fill)
        if not 0.0 < s < 1.0 or not 0.0 < recall < 1.0:
            raise ValueError("threshold, fill and recall give no usable bit agreement")
        if max_fraction is None:
            max_fraction = 1e-3
            if pairs:
                max_fraction = min(max_fraction, 20.0 / math.sqrt(pairs))
        for rows in range(8, MAX_ROWS + 1):
            bands = math.ceil(math.log1p(-recall) / math.log1p(-(s**rows)))
            params = cls(bands=bands, rows=rows, **kwargs)
            if params.expected_fraction() <= max_fraction:
                return params
        raise ValueError(f"no rows <= {MAX_ROWS} compares at most {max_fraction} of the pairs")


@dataclass
class BlockingStats:
    """What blocking did, summed over the calls it was passed to."""

    pairs_total: int = 0  # n * m: what all-pairs comparison would do
    pairs_compared: int = 0  # unique candidate pairs scored
    buckets_skipped: int = 0  # (band, bucket)s over max_bucket, not expanded
    pairs_skipped: int = 0  # pairs those buckets would have emitted (with repeats across bands)
    calls: int = 0
    largest_bucket: int = 0  # the most rows of one department under one key in one band (multi-party pass)

    @property
    def fraction(self) -> float:
        """Fraction of all pairs compared."""
        return self.pairs_compared / self.pairs_total if self.pairs_total else 0.0

    def add(self, other: BlockingStats) -> None:
        for f in fields(self):
            combine = max if f.name == "largest_bucket" else (lambda x, y: x + y)
            setattr(self, f.name, combine(getattr(self, f.name), getattr(other, f.name)))
