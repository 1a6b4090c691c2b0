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
import tomllib

import numpy as np

from server.blocking.candidates import lsh_candidates
from server.blocking.params import BlockingStats, LshParams
from server.matching import dice_scores_above, dice_scores_pairs, group_records, pack_filters

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


# --------------------------------------------------------------------------
# A real scenario, encoded by the agent's own code
# --------------------------------------------------------------------------

BLOCKING_KEYS = ("resident_id", "name_birth", "phone")


def encode_scenario(scenario, cache=None, secret: bytes = b"fedlink scale bench secret 32 by") -> dict:
    """Encode a ``fedlink synth`` scenario exactly as the agents do (``agents.prepare``).

    Returns ``{department: {"filters": (n, words) uint64, "person": (n,) int64,
    "keys": {name: (n,) uint64}}}``: the person of each record from truth.csv,
    and the agent-side keyed blocking keys measured against LSH (see
    ``blocking_keys``).  With ``cache`` (a folder), the encodings are kept in
    an .npz there and reused.
    """
    from pathlib import Path

    import pandas as pd

    from agents.encoding import derive_key
    from agents.extract import read_extract
    from agents.normalise import normalise_record
    from agents.prepare import prepare
    from fedlink.schema import DEPARTMENTS, IDENTITY_COLUMNS, Project

    scenario = Path(scenario)
    path = Path(cache) / f"{scenario.resolve().name}.npz" if cache else None
    if path is not None and path.exists():
        data = np.load(path)
        deps = [str(d) for d in data["departments"]]
        return {d: {"filters": data[f"{d}/filters"], "person": data[f"{d}/person"],
                    "keys": {k: data[f"{d}/key/{k}"] for k in BLOCKING_KEYS}} for d in deps}
    deps = [d for d in DEPARTMENTS if (scenario / f"{d}.csv").exists()]
    project = Project.default("scale", deps)
    truth = pd.read_csv(scenario / "truth.csv", dtype=str, keep_default_na=False)
    person_code = {p: k for k, p in enumerate(sorted(set(truth["person_id"])))}
    settings = scenario / "scenario.toml"
    columns = tomllib.loads(settings.read_text("utf-8")).get("columns", {}) if settings.exists() else {}
    block_key = derive_key(secret, project.project_id, "blocking")
    out = {}
    for d in deps:
        frame = read_extract(scenario / f"{d}.csv", d, columns.get(d, {}))
        prepared = prepare(frame, d, project, secret, b"r" * 32, 50_000)
        clks = [c for b in prepared.batches for c in b.clks]
        who = truth[truth["department"] == d].set_index("record_id")["person_id"]
        features = [normalise_record(r) for r in frame[list(IDENTITY_COLUMNS)].to_dict("records")]
        out[d] = {
            "filters": pack_filters(clks, project.schema.filter_bits),
            "person": np.array([person_code[who[r]] for r in frame["record_id"]], np.int64),
            "keys": blocking_keys(features, block_key),
        }
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {"departments": np.array(deps)}
        for d, v in out.items():
            arrays[f"{d}/filters"] = v["filters"]
            arrays[f"{d}/person"] = v["person"]
            for k, key in v["keys"].items():
                arrays[f"{d}/key/{k}"] = key
        np.savez(path, **arrays)
    return out


def blocking_keys(features: list[dict], key: bytes) -> dict[str, np.ndarray]:
    """Agent-side keyed blocking keys, as an agent would compute them (measured here only).

    Each is the first 8 bytes of HMAC-SHA-256 under a key derived from the
    project secret, of one exact normalised value: the resident ID; name
    (pinyin) with birth date; the phone number.  0 where the value is blank.
    The coordinator would learn which records agree *exactly* on each (see
    docs/scale.md for what that leaks); these figures decide whether that is
    worth it.
    """
    import hashlib
    import hmac

    def h(value: str) -> int:
        if not value:
            return 0
        return int.from_bytes(hmac.digest(key, value.encode(), hashlib.sha256)[:8], "little") or 1

    return {
        "resident_id": np.array([h(f["resident_id"]) for f in features], np.uint64),
        "name_birth": np.array([h(f["name_pinyin"] + "|" + f["birth_date"] if f["name_pinyin"] and f["birth_date"]
                                  else "") for f in features], np.uint64),
        "phone": np.array([h(f["phone"]) for f in features], np.uint64),
    }


def _key_pairs(left: np.ndarray, right: np.ndarray, max_bucket: int) -> np.ndarray:
    """Codes ``i * m + j`` of the pairs with equal non-zero keys (buckets over max_bucket skipped)."""
    m = len(right)
    lo = np.argsort(left, kind="stable")
    ro = np.argsort(right, kind="stable")
    lk, rk = left[lo], right[ro]
    values, lstart, lcount = np.unique(lk, return_index=True, return_counts=True)
    rstart = np.searchsorted(rk, values, side="left")
    rcount = np.searchsorted(rk, values, side="right") - rstart
    ok = (values != 0) & (rcount > 0) & (lcount <= max_bucket) & (rcount <= max_bucket)
    codes = []
    for ls, lc, rs, rc in zip(lstart[ok], lcount[ok], rstart[ok], rcount[ok]):
        codes.append((lo[ls:ls + lc, None] * m + ro[None, rs:rs + rc]).ravel())
    return np.unique(np.concatenate(codes)) if codes else np.empty(0, np.int64)


def real_blocking_figures(encoded: dict, threshold: float, params_list, *, use_keys=(), max_bucket: int = 1000) -> list:
    """Pair completeness and fraction compared over all department pairs of an encoded scenario.

    Definitions (summed over the 15 department pairs):

    * true pairs: two records in different departments of the same person
      (truth.csv), whatever their Dice;
    * exact links: pairs the exact engine links, Dice >= ``threshold``;
    * completeness = true pairs among the candidates / true pairs;
    * completeness vs exact = exact links among the candidates / exact links
      (what blocking loses of what the exact engine would link);
    * fraction compared = unique candidate pairs / sum of n * m.

    ``params_list``: LshParams (None: no LSH), each measured with and without
    ``use_keys`` (the agent-side keyed blocking keys, see ``blocking_keys``).
    """
    deps = list(encoded)
    pairs = list(itertools.combinations(range(len(deps)), 2))
    total = sum(len(encoded[deps[a]]["person"]) * len(encoded[deps[b]]["person"]) for a, b in pairs)
    truth, exact, key_codes, dice_true = {}, {}, {}, []
    for a, b in pairs:
        A, B = encoded[deps[a]], encoded[deps[b]]
        m = len(B["person"])
        pos = {p: j for j, p in enumerate(B["person"].tolist())}
        li = np.array([i for i, p in enumerate(A["person"].tolist()) if p in pos], np.int64)
        rj = np.array([pos[p] for p in A["person"][li].tolist()], np.int64)
        truth[(a, b)] = li * m + rj
        dice_true.append(dice_scores_pairs(A["filters"], B["filters"], li, rj))
        found = dice_scores_above(A["filters"], B["filters"], threshold)
        exact[(a, b)] = found.left * m + found.right
        if use_keys:
            key_codes[(a, b)] = np.unique(np.concatenate(
                [_key_pairs(A["keys"][k], B["keys"][k], max_bucket) for k in use_keys]))
    dice_true = np.concatenate(dice_true)
    n_true = sum(len(v) for v in truth.values())
    n_exact = sum(len(v) for v in exact.values())
    rows = []
    variants = [(p, False) for p in params_list if p is not None]
    if use_keys:
        variants += [(p, True) for p in params_list]
    for params, keys in variants:
        hit_true = hit_exact = compared = 0
        hit_mask = []
        start = time.perf_counter()
        for a, b in pairs:
            A, B = encoded[deps[a]], encoded[deps[b]]
            codes = np.empty(0, np.int64)
            if params is not None:
                li, rj = lsh_candidates(A["filters"], B["filters"], bands=params.bands, rows=params.rows,
                                        seed=params.seed, max_bucket=params.max_bucket)
                codes = li * len(B["person"]) + rj
            if keys:
                codes = np.union1d(codes, key_codes[(a, b)])
            compared += len(codes)
            h = np.isin(truth[(a, b)], codes)
            hit_mask.append(h)
            hit_true += int(h.sum())
            hit_exact += int(np.isin(exact[(a, b)], codes).sum())
        hit_mask = np.concatenate(hit_mask)
        rows.append({
            "lsh": None if params is None else {"bands": params.bands, "rows": params.rows},
            "keys": list(use_keys) if keys else [],
            "seconds": round(time.perf_counter() - start, 2),
            "true_pairs": n_true, "exact_links": n_exact, "pairs_total": total,
            "completeness": hit_true / n_true if n_true else 1.0,
            "completeness_vs_exact": hit_exact / n_exact if n_exact else 1.0,
            "completeness_true_above_threshold": float(hit_mask[dice_true >= threshold].mean()),
            "true_pairs_below_threshold": int((dice_true < threshold).sum()),
            "fraction_compared": compared / total,
        })
    return rows


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


def print_real_blocking(scenario, cache=None, threshold: float = 0.75) -> list:
    """Blocking figures on a real scenario: the default LSH, a stricter one, each with and without keys."""
    encoded = encode_scenario(scenario, cache)
    rows = real_blocking_figures(encoded, threshold, [LshParams(), LshParams(bands=1600, rows=32), None],
                                 use_keys=BLOCKING_KEYS)
    records = sum(len(v["person"]) for v in encoded.values())
    print(f"blocking on {scenario} ({records:,} records, real agent encodings, threshold {threshold}): "
          f"{rows[0]['true_pairs']:,} true pairs ({rows[0]['true_pairs_below_threshold']} score below "
          f"{threshold}), exact engine links {rows[0]['exact_links']:,}", flush=True)
    for r in rows:
        how = (f"LSH r={r['lsh']['rows']} L={r['lsh']['bands']}" if r["lsh"] else "no LSH") + \
              (" + keyed blocking keys" if r["keys"] else "")
        print(f"  {how:<42} completeness {r['completeness']:.4f} (true pairs >= t: "
              f"{r['completeness_true_above_threshold']:.4f}; vs exact links {r['completeness_vs_exact']:.4f}), "
              f"compared {r['fraction_compared']:.2e} of {r['pairs_total']:.2e} pairs", flush=True)
    return rows


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
            **{k: times.get(k) for k in ("normalise_encode", "upload", "link", "rules", "store", "flag_delivery")},
            "wall_s": wall, "peak_mb": peak_mb or metrics.get("peak_memory_mb"),
            "f1": metrics.get("links", {}).get("f1")}


def print_scale_rows(rows, header: bool = True) -> None:
    if header:
        print(f"{'persons':>9} {'records':>9} {'encode':>8} {'upload':>8} {'link':>8} {'rules':>7} "
              f"{'store':>7} {'flags':>7} {'peak MB':>8} {'F1':>6}")
    for r in rows:
        print(f"{r['persons']:>9,} {r['records']:>9,} {r['normalise_encode']:>8.1f} {r['upload']:>8.1f} "
              f"{r['link']:>8.1f} {r['rules']:>7.1f} {r['store']:>7.1f} {r['flag_delivery']:>7.1f} "
              f"{r['peak_mb']:>8.0f} {r['f1'] or 0:>6.4f}", flush=True)


def print_growth(rows) -> None:
    for small, big in itertools.pairwise(sorted(rows, key=lambda r: r["persons"])):
        ratio = big["records"] / small["records"]
        parts = []
        for phase in ("normalise_encode", "upload", "link", "store", "flag_delivery"):
            if small[phase] and big[phase]:
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
