"""Matching at national scale: the kernel, blocking, and the link phase by size.

    python -m bench.scale [--sizes 10000 100000] [--engines local+lsh local]
                          [--exact-upto 100000] [--big [--big-engine URL]]
                          [--threshold 0.8] [--json FILE]

Three parts, printed as they finish:

1. kernel: ``bench.kernel.run`` (compiled Dice kernel against the NumPy
   reference, 10k x 10k random filters, pairs/s);
2. blocking: LSH pair completeness and fraction of pairs compared on
   perturbed filters (``perturbed_pairs``: 20k x 20k, half the left records
   have a true match on the right whose Dice spreads over 0.7-1.0, fill about
   45%), for the default ``LshParams``;
3. link phase: synthetic populations of 10k and 100k persons (1M with
   ``--big``) across six departments, each holding about 90% of the persons
   with independently perturbed filters (Dice of true pairs mostly
   0.8-1.0); all 15 department pairs compared with each engine, then
   ``group_records``.  Each (size, engine) runs in its own process, which
   reports its seconds (compare, group), peak RSS, links, and pairwise
   precision / recall against the truth.  The exact engine runs up to
   ``--exact-upto`` persons.  ``--big`` adds 100k and 1M persons with
   ``--big-engine`` (default r = 24, L = 1460: at 1M the default r = 20
   would compare 7e-4 of 8e11 pairs per department pair).  The growth of
   the time from one size to the next, as an exponent of n, shows whether
   time grows near-linearly.

The 1M case (5.4M records) holds about 0.9 GB of filters and peaks near
3.5 GB; on two cores its 15 department pairs take roughly ten minutes with
the blocked engine (the exact engine would take hours).
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import subprocess
import sys
import time

import numpy as np

from server.blocking import BlockingStats, LshParams, lsh_candidates
from server.matching import dice_scores_pairs, group_records, pack_filters

N_DEPARTMENTS = 6


# --------------------------------------------------------------------------
# Synthetic filters
# --------------------------------------------------------------------------


def random_bits(rng: np.random.Generator, n: int, fill, filter_bits: int = 1024) -> np.ndarray:
    """``(n, filter_bits)`` bool with each row's bits set with probability ``fill`` (scalar or per row)."""
    fill = np.broadcast_to(np.asarray(fill, np.float32), (n,))
    return rng.random((n, filter_bits), dtype=np.float32) < fill[:, None]


def flip_probability(dice, fill):
    """Per-bit flip probability that gives a filter of fill ``fill`` an expected Dice ``dice`` with itself.

    Flipping each bit with probability p keeps K(1-p) of the K set bits and
    sets (N-K)p others: Dice = 2f(1-p) / (2f + p(1-2f)), solved for p.
    """
    dice = np.asarray(dice, np.float64)
    fill = np.asarray(fill, np.float64)
    return 2 * fill * (1 - dice) / (2 * fill + dice * (1 - 2 * fill))


def record_fills(rng: np.random.Generator, n: int, fill: float = 0.45, sd: float = 0.03) -> np.ndarray:
    return np.clip(rng.normal(fill, sd, n), 0.35, 0.6)


def perturbed_pairs(
    rng: np.random.Generator,
    n_left: int,
    n_right: int,
    n_true: int,
    *,
    fill: float = 0.45,
    dice: tuple[float, float] = (0.7, 1.0),
    filter_bits: int = 1024,
):
    """Two sets of packed filters with ``n_true`` true matches between them.

    Every filter has its own fill (normal around ``fill``, sd 0.03).  True
    match k is left row ``true_left[k]`` and right row ``true_right[k]``: the
    right one is the left one with bits flipped at random, at a rate drawn
    so that the pair's Dice spreads uniformly over ``dice``.  Every other
    row is an independent random filter.  Returns (left, right, true_left,
    true_right, true_dice).
    """
    if n_true > min(n_left, n_right):
        raise ValueError("more true matches than records")
    chunk = 10_000
    left = np.empty((n_left, filter_bits // 64), np.uint64)
    for a in range(0, n_left, chunk):
        b = min(a + chunk, n_left)
        bits = random_bits(rng, b - a, record_fills(rng, b - a, fill), filter_bits)
        left[a:b] = pack_filters(np.packbits(bits, axis=1), filter_bits)
    true_left = rng.permutation(n_left)[:n_true]
    true_right = rng.permutation(n_right)[:n_true]
    right = np.empty((n_right, filter_bits // 64), np.uint64)
    is_true = np.zeros(n_right, bool)
    is_true[true_right] = True
    others = np.flatnonzero(~is_true)
    for a in range(0, len(others), chunk):
        rows = others[a : a + chunk]
        bits = random_bits(rng, len(rows), record_fills(rng, len(rows), fill), filter_bits)
        right[rows] = pack_filters(np.packbits(bits, axis=1), filter_bits)
    for a in range(0, n_true, chunk):
        src = left[true_left[a : a + chunk]]
        k = len(src)
        own_fill = np.bitwise_count(src).sum(axis=1) / filter_bits
        p = flip_probability(rng.uniform(*dice, k), own_fill)
        flips = pack_filters(np.packbits(random_bits(rng, k, p, filter_bits), axis=1), filter_bits)
        right[true_right[a : a + chunk]] = src ^ flips
    true_dice = dice_scores_pairs(left, right, true_left, true_right)
    return left, right, true_left.astype(np.int64), true_right.astype(np.int64), true_dice


def pair_completeness(li, rj, true_left, true_right, m: int) -> np.ndarray:
    """For each true pair, whether (true_left[k], true_right[k]) is among the candidates."""
    found = np.asarray(li, np.int64) * m + np.asarray(rj, np.int64)
    return np.isin(true_left * m + true_right, found)


def blocking_figures(n: int = 20_000, params: LshParams | None = None, seed: int = 0) -> dict:
    params = params or LshParams()
    rng = np.random.default_rng(seed)
    left, right, tl, tr, td = perturbed_pairs(rng, n, n, n // 2)
    stats = BlockingStats()
    start = time.perf_counter()
    li, rj = lsh_candidates(
        left, right, bands=params.bands, rows=params.rows, seed=params.seed,
        max_bucket=params.max_bucket, stats=stats,
    )
    seconds = time.perf_counter() - start
    hit = pair_completeness(li, rj, tl, tr, n)
    out = {
        "n": n, "bands": params.bands, "rows": params.rows, "seconds": round(seconds, 3),
        "candidates": int(stats.pairs_compared), "fraction_compared": stats.fraction,
        "expected_fraction": params.expected_fraction(0.45),
        "buckets_skipped": int(stats.buckets_skipped),
    }
    for lo, hi in ((0.8, 1.01), (0.75, 0.8), (0.7, 0.75)):
        sel = (td >= lo) & (td < hi)
        out[f"completeness_{lo}_{min(hi, 1.0)}"] = float(hit[sel].mean()) if sel.any() else None
        out[f"pairs_{lo}_{min(hi, 1.0)}"] = int(sel.sum())
    return out


# --------------------------------------------------------------------------
# Synthetic population across departments
# --------------------------------------------------------------------------


def population(
    persons: int,
    *,
    departments: int = N_DEPARTMENTS,
    coverage: float = 0.9,
    max_flip: float = 0.1,
    fill: float = 0.45,
    seed: int = 0,
    filter_bits: int = 1024,
):
    """Filters of ``persons`` people as each department holds them.

    Each person has a base filter; each department holds a person with
    probability ``coverage`` (in its own shuffled order), as the base filter
    with each bit flipped with a per-record probability up to ``max_flip``.
    Returns ([filters per department], [person of each row per department]).
    """
    rng = np.random.default_rng(seed)
    chunk = 20_000
    base = np.empty((persons, filter_bits // 64), np.uint64)
    for a in range(0, persons, chunk):
        b = min(a + chunk, persons)
        bits = random_bits(rng, b - a, record_fills(rng, b - a, fill), filter_bits)
        base[a:b] = pack_filters(np.packbits(bits, axis=1), filter_bits)
    filters, who = [], []
    for _ in range(departments):
        held = rng.permutation(np.flatnonzero(rng.random(persons) < coverage))
        out = np.empty((len(held), filter_bits // 64), np.uint64)
        for a in range(0, len(held), chunk):
            rows = held[a : a + chunk]
            p = rng.uniform(0.0, max_flip, len(rows))
            flips = pack_filters(np.packbits(random_bits(rng, len(rows), p, filter_bits), axis=1), filter_bits)
            out[a : a + len(rows)] = base[rows] ^ flips
        filters.append(out)
        who.append(held.astype(np.int64))
    return filters, who


def _memory_mb(field: str) -> int:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process, in MiB.

    Not ``getrusage``'s ru_maxrss: on Linux a child started by fork + exec
    inherits its parent's high-water mark there.
    """
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return round(int(line.split()[1]) / 1024)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def link_phase(persons: int, engine_url: str, threshold: float = 0.8, seed: int = 0) -> dict:
    """Time the link phase (15 department pairs + grouping) for one engine."""
    from server.engine import engine_from_url

    start = time.perf_counter()
    filters, who = population(persons, seed=seed)
    generate = time.perf_counter() - start
    rss_data = _memory_mb("VmRSS")
    engine = engine_from_url(engine_url)
    # Compile (or load the cached kernels) before timing.
    engine.compare(filters[0][:256], filters[1][:256], threshold)
    if hasattr(engine, "stats"):
        engine.stats = BlockingStats()
    start = time.perf_counter()
    pairs = {}
    for a, b in itertools.combinations(range(len(filters)), 2):
        pairs[(a, b)] = engine.compare(filters[a], filters[b], threshold)
    compare = time.perf_counter() - start
    start = time.perf_counter()
    sizes = [len(f) for f in filters]
    labels = group_records(sizes, pairs)
    group = time.perf_counter() - start

    # Pairwise quality against the truth: record pairs across departments.
    offsets = np.concatenate(([0], np.cumsum(sizes)))
    n_labels = int(labels.max()) + 1
    predicted = correct = true_pairs = 0
    for a, b in itertools.combinations(range(len(filters)), 2):
        la, lb = labels[offsets[a] : offsets[a + 1]], labels[offsets[b] : offsets[b + 1]]
        row_b = np.full(n_labels, -1, np.int64)
        row_b[lb] = np.arange(len(lb))
        j = row_b[la]
        linked = j >= 0
        predicted += int(linked.sum())
        correct += int((who[a][linked] == who[b][j[linked]]).sum())
        true_pairs += len(np.intersect1d(who[a], who[b], assume_unique=True))
    stats = getattr(engine, "stats", None)
    result = {
        "persons": persons,
        "engine": engine_url,
        "records": int(sum(sizes)),
        "threshold": threshold,
        "generate_s": round(generate, 2),
        "compare_s": round(compare, 2),
        "group_s": round(group, 2),
        "link_s": round(compare + group, 2),
        "links": int(sum(len(p) for p in pairs.values())),
        "precision": correct / predicted if predicted else 1.0,
        "recall": correct / true_pairs if true_pairs else 1.0,
        "rss_data_mb": rss_data,
        "peak_rss_mb": _memory_mb("VmHWM"),
    }
    if stats is not None and stats.pairs_total:
        result["fraction_compared"] = stats.fraction
        result["buckets_skipped"] = int(stats.buckets_skipped)
    return result


def _run_case(persons: int, engine_url: str, threshold: float) -> dict:
    """One link-phase case in a fresh process (so peak RSS is its own)."""
    cmd = [sys.executable, "-m", "bench.scale", "--case", str(persons), "--engine", engine_url,
           "--threshold", str(threshold)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"case {persons} {engine_url} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--big", action="store_true", help="also 1,000,000 persons")
    parser.add_argument("--engines", nargs="*", default=["local+lsh", "local"])
    parser.add_argument("--exact-upto", type=int, default=100_000,
                        help="largest population the exact engine ('local', 'dask://') runs on")
    parser.add_argument("--big-engine", default="local+lsh?bands=1460&rows=24",
                        help="engine for --big (100k and 1M persons)")
    parser.add_argument("--threshold", type=float, default=0.8)
    parser.add_argument("--skip-kernel", action="store_true")
    parser.add_argument("--skip-blocking", action="store_true")
    parser.add_argument("--json", help="write all figures to this file")
    parser.add_argument("--case", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--engine", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.case is not None:
        print(json.dumps(link_phase(args.case, args.engine, args.threshold)))
        return

    report: dict = {}
    if not args.skip_kernel:
        from bench.kernel import run as kernel_run

        k = kernel_run(10_000)
        report["kernel"] = k
        print(f"kernel 10k x 10k, {k['threads']} threads: {k['count_pairs_per_s'] / 1e6:.0f} M pairs/s "
              f"(at 0.8: {k['above_0_8_pairs_per_s'] / 1e6:.0f} M/s); NumPy reference "
              f"{k['reference_pairs_per_s'] / 1e6:.1f} M/s: x{k['count_pairs_per_s'] / k['reference_pairs_per_s']:.0f}",
              flush=True)
    if not args.skip_blocking:
        b = blocking_figures()
        report["blocking"] = b
        print(f"blocking {b['n']} x {b['n']}, r={b['rows']} L={b['bands']}: "
              f"completeness {b['completeness_0.8_1.0']:.4f} (Dice >= 0.8, {b['pairs_0.8_1.0']} pairs), "
              f"{b['completeness_0.75_0.8']:.4f} (0.75-0.8), {b['completeness_0.7_0.75']:.4f} (0.7-0.75); "
              f"compared {b['fraction_compared']:.2e} of pairs (expected {b['expected_fraction']:.2e}), "
              f"{b['seconds']:.2f} s", flush=True)

    plan = [(persons, url) for persons in args.sizes for url in args.engines
            if "lsh" in url or persons <= args.exact_upto]
    if args.big:
        # Same parameters at 100k and 1M, so their ratio shows the growth.
        plan += [(100_000, args.big_engine), (1_000_000, args.big_engine)]
    cases = []
    for persons, url in plan:
        case = _run_case(persons, url, args.threshold)
        cases.append(case)
        print(f"link {persons:>9,} persons {url:<30} {case['records']:>9,} records: "
              f"{case['link_s']:8.2f} s (compare {case['compare_s']:.2f}, group {case['group_s']:.2f}), "
              f"peak RSS {case['peak_rss_mb']} MB (data {case['rss_data_mb']} MB), "
              f"{case['links']:,} links, precision {case['precision']:.4f} recall {case['recall']:.4f}"
              + (f", compared {case['fraction_compared']:.2e}" if "fraction_compared" in case else ""),
              flush=True)
    report["link"] = cases
    for url in dict.fromkeys(url for _, url in plan):
        runs = sorted((c for c in cases if c["engine"] == url), key=lambda c: c["persons"])
        for small, big in itertools.pairwise(runs):
            growth = big["link_s"] / small["link_s"]
            ratio = big["persons"] / small["persons"]
            exponent = np.log(growth) / np.log(ratio)
            print(f"{url}: {small['persons']:,} -> {big['persons']:,} persons (x{ratio:.0f}): "
                  f"time x{growth:.1f}, i.e. ~ n^{exponent:.2f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
