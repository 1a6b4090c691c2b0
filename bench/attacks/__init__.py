"""Attacks on Bloom-filter encodings, played as the coordinator.

The attacker holds one department's uploaded filters and public knowledge
only: the linkage schema (which fields, q-gram lengths; a project's TOML is
not secret) and a census, i.e. name and birth-year frequency tables of the
population. The census here is a SEPARATE synthetic population (another
seed, by default four times the size), never the target's own truth and
never the project secret.

Attacks (every one runs on every target; ``ATTACKS`` names them)
  * frequency_name, frequency_name_year: frequency attack on whole filters,
    Kuzu et al. (2011) style. Identical filters are grouped, the groups
    sorted by size, and the i-th largest group is named after the i-th most
    frequent census value (full name, or name + birth year). Only groups of
    two or more records are aligned (a singleton's rank carries no
    frequency information).
  * position_frequency: frequency attack on bit positions. Positions that
    are set together far more often than chance (phi correlation) are
    grouped as the positions of one token; the groups, ranked by how many
    filters have all their positions, are aligned with the census tokens
    ranked by frequency; records are then named by signature (below).
  * pattern_mining: Christen et al. (2017/2018) style. Bit positions that are
    set together in a block of filters form a pattern; the largest such
    block is aligned with the most frequent public token (q-gram, or birth
    year token) by frequency, and the filters are split into "has it" /
    "has it not", recursively, so the next most frequent token of each part
    is found the same way.
  * dictionary (weak control only): encode every census name with the
    public, unkeyed encoding and look each filter up. A keyed encoding
    needs the project secret for this.

Signature step: each filter is reduced to which learned tokens it has and
has not, and named when exactly one census name has that signature. A record
is re-identified when the attack names its true name (the person's name in
the truth table) and only that name. Rate = correct / records.

Learned tokens are checked too (evaluation only, against the target's
truth): a token is learned *correctly* when the records whose filters hold
its learned positions are the records that have it (F1 >= 0.8, and better
than saying every record has it). **Attribute disclosure** = the share of
records for which a correctly learned token that at most 10 % of records
carry (a surname, not a pinyin bigram half the names have) is correctly
attributed: a partial re-identification, which full-name re-identification
misses when full names are rare.

Targets
  * weak_unkeyed_names: a deliberately weak control, a plain Bloom filter of
    the name's character bigrams (padded) with a known unkeyed double hash
    (MD5 / SHA-1, Schnell 2009 style), 1024 bits, 20 hashes per bigram.
    The attacks must break it, or they prove nothing.
  * fedlink: what a fedlink agent uploads with the default schema and the
    hardening asked for (agents.hardening, the same code the agent runs).
    The attacker knows the hardening (Kerckhoffs): against ``salt`` its
    census tokens are salted with the birth year too.

    run_attacks(persons=5000, seed=0, hardening=None) -> dict   # None: the default
    python -m bench.attacks --persons 5000 [--hardening salt]
    python -m bench.attacks --table SCENARIO --out DIR   # docs/hardening.md's table

On the realistic population (``--realism cn``, bench.attacks.realistic): complement-pair
recovery, a clique attack on surnames, a classifier reading sex, and the name attacks above
on the un-balanced filters.

    python -m bench.attacks --realism cn --persons 5000 [--hardening none]

On the resident-ID segment of a record-level filter (bench.attacks.id_segment): classifiers
and Dice neighbours trained on a few known records read province, district, birth decade
and year, and sex; the blank-ID share by group.

    python -m bench.attacks --id-segment --persons 5000 --seed 4 [--hardening twin] [--department housing]
    python -m bench.attacks.id_segment --persons 5000 --seeds 4 5 6 [--id-segment-bits 256 0] [--id-qgram 0]

Layout: ``encodings`` (the targets and their public tokenisations), ``census``,
``methods`` (the attacks and the scoring), ``harness`` (``run_attacks``), ``realistic`` (``run_realistic``),
``id_segment`` (``run_id_segment``), ``table``
(docs/hardening.md's table and the command line).
"""

from bench.attacks.harness import ATTACKS, run_attacks
from bench.attacks.methods import token_disclosure
from bench.attacks.table import hardening_table, main, markdown

__all__ = ["ATTACKS", "hardening_table", "main", "markdown", "run_attacks", "token_disclosure"]
