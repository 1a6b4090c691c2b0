"""clkhash 0.18.3 encoding the records bench.encode gives it, on one core.

Runs in the benchmark-only environment (scripts/bench-env) and imports nothing
of fedlink. The schema mirrors fedlink's default one field for field: the same
columns, q-grams and bits per token (the birth date as positional unigrams of
the date text, 5 bits each, against fedlink's 5 date tokens at 10 bits), blanks
allowed, 1024-bit filters, clkhash's default hashing (blake2b double hashing).

    python -m bench.encode_clkhash RECORDS.csv
    # prints {"records": n, "seconds": s, "seconds_unvalidated": s} in CPU seconds: clkhash's default,
    # which validates every value against the schema first, and hashing alone (validate=False)
"""
from __future__ import annotations

import csv
import json
import sys
import time

from clkhash import clk
from clkhash.comparators import NgramComparison
from clkhash.field_formats import BitsPerTokenStrategy, FieldHashingProperties, MissingValueSpec, StringSpec
from clkhash.schema import Schema

# (column, q-gram length, positional, bits per token)
FIELDS = (("name", 1, False, 12), ("name_pinyin", 2, False, 8), ("sex", 1, False, 4),
          ("birth_date", 1, True, 5), ("resident_id", 2, False, 6), ("address", 2, False, 3))


def schema() -> Schema:
    return Schema([StringSpec(name, FieldHashingProperties(
        comparator=NgramComparison(q, positional), strategy=BitsPerTokenStrategy(k),
        missing_value=MissingValueSpec(sentinel=""))) for name, q, positional, k in FIELDS], 1024)


def main() -> None:
    with open(sys.argv[1], newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader)
        assert header == [name for name, *_ in FIELDS], header
        rows = list(reader)
    # A first call runs at half speed or less (start-up costs of its own): warm it, so the
    # figures are its steady rate, not its first few seconds.
    clk.generate_clks(rows[:5000], schema(), "warm up", max_workers=1)
    seconds = {}
    for validate in (True, False):
        t0 = time.process_time()
        clks = clk.generate_clks(rows, schema(), "a secret shared by the parties", validate=validate, max_workers=1)
        seconds[validate] = time.process_time() - t0
        assert len(clks) == len(rows)
    print(json.dumps({"records": len(rows), "seconds": seconds[True], "seconds_unvalidated": seconds[False]}))


if __name__ == "__main__":
    main()
