"""Matching at national scale: the kernel, blocking, and the link phase by size.

    python -m bench.scale [--sizes 10000 100000] [--engines local+lsh local]
                          [--exact-upto 100000] [--big [--big-engine URL]]
                          [--threshold 0.8] [--json FILE]
                          [--scenario SYNTH_DIR [--cache DIR]]
                          [--fedlink-bench 10000 100000 [--work DIR]]

The printout, in order: the kernel against anonlink on one core and the
fraction of the estimated hardware limit (``bench.kernel.versus_anonlink``);
blocking on perturbed random filters and, with ``--scenario``, on a real
``fedlink synth`` scenario encoded by the agents' own code
(``real_blocking_figures``: pair completeness, completeness against the
exact engine's links, fraction of pairs compared; LSH alone and with
agent-side keyed blocking keys); the link phase on synthetic filters by
size; and with ``--fedlink-bench``, the scale table of the real path
(``fedlink synth --error-scale 2`` then ``fedlink bench``: agents, gRPC with
mTLS, store, linkage) with each phase's seconds, peak memory and growth.

The synthetic filters are ``bench.synthetic_filters``'s, the real-scenario blocking
figures ``bench.real_blocking``'s. Three parts, printed as they finish:

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

from bench.real_blocking import print_real_blocking
from bench.synthetic_filters import pair_completeness, perturbed_pairs, population
from server.blocking.candidates import lsh_candidates
from server.blocking.params import BlockingStats, LshParams
from server.matching import group_records


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


def _peak_children_mb() -> int:
    return round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)


def fedlink_bench_table(sizes, work, engine: str = "local") -> list:
    """``fedlink synth --error-scale 2`` and ``fedlink bench`` at each size, in fresh processes.

    Peak memory is the bench process's (coordinator and agents in one
    process): the largest child's maximum RSS so far, so run sizes
    smallest first.
    """
    from pathlib import Path

    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for persons in sizes:
        scenario, out = work / f"synth-{persons}", work / f"bench-{persons}"
        if not (scenario / "truth.csv").exists():
            subprocess.run([sys.executable, "-m", "fedlink.cli", "synth", str(scenario), "--persons", str(persons),
                            "--seed", "1", "--error-scale", "2"], check=True, capture_output=True)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "fedlink.cli", "bench", str(scenario), "--out", str(out),
                        "--engine", engine], check=True, capture_output=True)
        wall = time.perf_counter() - start
        metrics = json.loads((out / "metrics.json").read_text())
        rows.append(scale_row(persons, metrics, wall, _peak_children_mb()))
        print_scale_rows(rows[-1:], header=len(rows) == 1)
    print_growth(rows)
    return rows


def scale_row(persons: int, metrics: dict, wall: float | None = None, peak_mb: float | None = None) -> dict:
    times = metrics["times_s"]
    return {"persons": persons, "records": sum(metrics["records_per_department"].values()),
            **{k: times.get(k) for k in ("normalise_encode", "upload", "link", "rules", "store", "flag_delivery",
                                         "bookkeeping")},
            "wall_s": wall, "peak_mb": peak_mb or metrics.get("peak_memory_mb"),
            "f1": metrics.get("links", {}).get("f1")}


def print_scale_rows(rows, header: bool = True) -> None:
    if header:
        print(f"{'persons':>9} {'records':>9} {'encode':>8} {'upload':>8} {'link':>8} {'rules':>7} "
              f"{'store':>7} {'flags':>7} {'books':>7} {'peak MB':>8} {'F1':>6}")
    for r in rows:
        print(f"{r['persons']:>9,} {r['records']:>9,} {r['normalise_encode']:>8.1f} {r['upload']:>8.1f} "
              f"{r['link']:>8.1f} {r['rules']:>7.1f} {r['store']:>7.1f} {r['flag_delivery']:>7.1f} "
              f"{_seconds(r.get('bookkeeping')):>7} {r['peak_mb']:>8.0f} {r['f1'] or 0:>6.4f}", flush=True)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"  # "-": a metrics.json from before the phase was timed


def print_growth(rows) -> None:
    for small, big in itertools.pairwise(sorted(rows, key=lambda r: r["persons"])):
        ratio = big["records"] / small["records"]
        parts = []
        for phase in ("normalise_encode", "upload", "link", "store", "flag_delivery", "bookkeeping"):
            if small.get(phase) and big.get(phase):
                parts.append(f"{phase} x{big[phase] / small[phase]:.1f} (n^{np.log(big[phase] / small[phase]) / np.log(ratio):.2f})")
        print(f"{small['persons']:,} -> {big['persons']:,} persons (records x{ratio:.1f}): " + ", ".join(parts),
              flush=True)


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
    parser.add_argument("--scenario", help="a fedlink synth folder: blocking figures on real encodings")
    parser.add_argument("--cache", default=None, help="folder to keep the scenario's encodings in")
    parser.add_argument("--fedlink-bench", type=int, nargs="*", default=[],
                        help="persons: run fedlink synth --error-scale 2 + fedlink bench at each size")
    parser.add_argument("--work", default="scale-work", help="folder for --fedlink-bench scenarios and outputs")
    parser.add_argument("--bench-engine", default="local", help="--engine for --fedlink-bench")
    parser.add_argument("--skip-link", action="store_true", help="skip the synthetic link-phase cases")
    parser.add_argument("--from-metrics", nargs="*", default=[], metavar="PERSONS=OUT_DIR",
                        help="print the scale table from earlier fedlink bench outputs (metrics.json)")
    parser.add_argument("--case", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--engine", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.case is not None:
        print(json.dumps(link_phase(args.case, args.engine, args.threshold)))
        return

    report: dict = {}
    if not args.skip_kernel:
        from bench.kernel import print_versus, versus_anonlink
        from bench.kernel import run as kernel_run

        v = versus_anonlink(10_000)
        report["kernel_vs_anonlink"] = v
        print_versus(v)
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

    if args.scenario:
        report["real_blocking"] = print_real_blocking(args.scenario, args.cache)
    if args.fedlink_bench:
        report["fedlink_bench"] = fedlink_bench_table(args.fedlink_bench, args.work, args.bench_engine)
    if args.from_metrics:
        from pathlib import Path

        rows = []
        for item in args.from_metrics:
            persons, _, folder = item.partition("=")
            rows.append(scale_row(int(persons), json.loads((Path(folder) / "metrics.json").read_text())))
        print_scale_rows(rows)
        print_growth(rows)
        report["fedlink_bench"] = rows
    if args.skip_link:
        args.sizes, args.big = [], False
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
