"""The multi-party pass over partition files, on a Dask cluster (``dask://...?storage=URL``).

The coordinator writes each department's filters in blocks of rows
(``server.engine.partitions``) and submits tasks that name files, never
arrays; every task opens only its own partition:

1. **keys**, one task per (department, block): the block's key in every
   band, written band-major (``bands x rows`` uint32), so that a range of
   bands is one contiguous read;
2. **candidates**, one task per range of bands: that band range of every
   key file, each band sorted over all departments' records, buckets over
   ``max_bucket`` skipped (``server.blocking.multi.slice_codes``, the
   in-process pass's own loop: a band range holds whole buckets, so the
   skip decisions are the same); the slice's unique candidates are written
   grouped by (department pair, left block, right block);
3. **scores**, one task per (department pair, left block, right block): the
   two filter blocks and that group's candidates from every slice,
   de-duplicated and scored as in process (``score_candidates``).

Department pairs the engine compares exactly run as one task per (pair,
left block, right block) on the two blocks.  So each pair's scored pairs are
the in-process engine's (``tests/test_partitioned.py``), and what comes back
to the coordinator is the pairs that pass, not the candidates.

A worker that dies mid-pass: the scheduler re-runs its tasks elsewhere
(files are written whole under a temporary name, so a re-run task rewrites
the same bytes); after ``distributed.scheduler.allowed-failures`` deaths of
one task the pass fails with ``PartitionedPassFailed`` naming the task.
"""
from __future__ import annotations

import itertools
import os
import time

import numpy as np

from server import faults
from server.blocking.candidates import unique_sorted
from server.blocking.keys import KEY_BANDS, band_positions, bit_planes, sampled_keys
from server.blocking.multi import _PAIR_SHIFT, PassPlan, slice_codes
from server.blocking.params import BlockingStats, LshParams
from server.blocking.scoring import score_candidates
from server.engine.partitions import Block, Partitions, read_array, read_leading, write_array, write_rows
from server.matching import ScoredPairs, check_threshold, dice_scores_above

_KEY_CHUNK_BANDS = 64  # bands of a block's keys computed and written at once
_CODE_MASK = (1 << _PAIR_SHIFT) - 1


class PartitionedPassFailed(RuntimeError):
    """A task of the pass could not be completed (its workers kept dying, or it raised)."""


def _where() -> str:
    from distributed import get_worker

    try:
        return get_worker().address
    except ValueError:  # run outside a worker (a test calling a task directly)
        return f"pid {os.getpid()}"


# -- the tasks (run on the workers; every argument is a file name or a few numbers) ----------------


def keys_task(block: Block, key_url: str, params: LshParams, filter_bits: int) -> dict:
    """A block's keys in every band of ``params``, band-major, at ``key_url``."""
    started = time.perf_counter()
    filters = read_array(block.url)
    positions = band_positions(filter_bits, params.bands, params.rows, params.seed)
    planes = bit_planes(filters)
    chunks = (sampled_keys(filters, positions[b0:b0 + _KEY_CHUNK_BANDS], threaded=False, planes=planes)
              for b0 in range(0, params.bands, _KEY_CHUNK_BANDS))
    write_rows(key_url, (params.bands, block.rows), np.uint32, chunks)
    return {"task": "keys", "worker": _where(), "read": [block.url], "wrote": [key_url],
            "seconds": time.perf_counter() - started}


def candidates_task(key_urls: list[list[str]], b0: int, b1: int, sizes: list[int], starts: list[np.ndarray],
                    plan: PassPlan, max_bucket: int, out_url: str, _keys_done=None) -> dict:
    """Bands ``b0:b1`` of every party's key files: the unique candidates, grouped by (pair, left block,
    right block) in ``out_url`` with the groups' offsets in ``out_url``'s index file."""
    faults.worker_exit_once()
    started = time.perf_counter()
    flat = [url for urls in key_urls for url in urls]

    def key_chunks():
        for c0 in range(b0, b1, KEY_BANDS):
            c1 = min(b1, c0 + KEY_BANDS)
            yield np.concatenate([read_leading(url, c0, c1) for url in flat], axis=1)

    codes, buckets, skipped, largest = slice_codes(key_chunks(), np.asarray(sizes, np.int64), plan.pair_index,
                                                   max_bucket)
    grouped, counts = _by_block_pair(codes, sizes, starts, plan)
    write_array(out_url, grouped)
    write_array(index_url(out_url), np.concatenate(([0], np.cumsum(counts))).astype(np.int64))
    return {"task": "candidates", "worker": _where(), "bands": (b0, b1), "candidates": len(codes),
            "read": [(url, b0, b1) for url in flat], "wrote": [out_url, index_url(out_url)],
            "buckets_skipped": int(buckets), "pairs_skipped": int(skipped), "largest_bucket": int(largest),
            "seconds": time.perf_counter() - started}


def index_url(codes_url: str) -> str:
    return codes_url[:-len(".npy")] + "-index.npy"


def _by_block_pair(codes: np.ndarray, sizes, starts, plan: PassPlan) -> tuple[np.ndarray, np.ndarray]:
    """The codes (sorted) reordered by group (pair, left block, right block), and each group's count."""
    cuts = np.searchsorted(codes, np.arange(len(plan.pair_keys) + 1, dtype=np.int64) << _PAIR_SHIFT)
    parts, counts = [], []
    for k, (pa, pb) in enumerate(plan.pair_keys):
        pair = codes[cuts[k]:cuts[k + 1]]
        x = pair & _CODE_MASK
        lb = np.searchsorted(starts[pa][1:-1], x // sizes[pb], side="right")
        rb = np.searchsorted(starts[pb][1:-1], x % sizes[pb], side="right")
        n_right = len(starts[pb]) - 1
        group = lb * n_right + rb
        parts.append(pair[np.argsort(group, kind="stable")])  # within a group, still by (left, right)
        counts.append(np.bincount(group, minlength=(len(starts[pa]) - 1) * n_right))
    return (np.concatenate(parts) if parts else np.empty(0, np.int64),
            np.concatenate(counts) if counts else np.empty(0, np.int64))


def score_task(left: Block, right: Block, k: int, group: int, m: int, slice_urls: list[str], threshold: float,
               _slices_done=None) -> tuple:
    """One (pair, left block, right block): its candidates from every slice, de-duplicated, scored."""
    started = time.perf_counter()
    parts, read = [], [left.url, right.url]
    for url in slice_urls:
        lo, hi = read_leading(index_url(url), group, group + 2)
        parts.append(read_leading(url, int(lo), int(hi)))
        read.append((url, int(lo), int(hi)))
    x = unique_sorted(parts) - (np.int64(k) << _PAIR_SHIFT)
    lf, rf = read_array(left.url), read_array(right.url)
    p = score_candidates(lf, rf, x // m - left.start, x % m - right.start, threshold)
    info = {"task": "scores", "worker": _where(), "read": read, "candidates": len(x),
            "seconds": time.perf_counter() - started}
    return p.left + left.start, p.right + right.start, p.score, info


def exact_task(left: Block, right: Block, threshold: float) -> tuple:
    """One (pair, left block, right block) of an exactly compared pair."""
    started = time.perf_counter()
    p = dice_scores_above(read_array(left.url), read_array(right.url), threshold)
    info = {"task": "exact", "worker": _where(), "read": [left.url, right.url], "candidates": 0,
            "seconds": time.perf_counter() - started}
    return p.left + left.start, p.right + right.start, p.score, info


# -- the coordinator's side: the graph, then the results -------------------------------------------


def _in_order(results: list[tuple]) -> ScoredPairs:
    """Block pairs' results as one ScoredPairs ordered by (left, right), as the in-process engine's."""
    results = [r for r in results if len(r[2])]
    if not results:
        return ScoredPairs.empty()
    left, right, score = (np.concatenate([r[i] for r in results]) for i in range(3))
    order = np.lexsort((right, left))
    return ScoredPairs(left[order].astype(np.int64), right[order].astype(np.int64), score[order].astype(np.float32))


class PartitionedPass:
    """``compare_all`` of one engine over partitions: builds the task graph, runs it, gathers the links.

    ``reads`` keeps every task's report (what it read and wrote, on which worker) of the last pass.
    """

    def __init__(self, engine, client, parts: Partitions):
        self.engine, self.client, self.parts = engine, client, parts
        self.filter_bits = parts.words * 64
        self.futures: list = []  # (future, weight)
        self.outputs: dict[tuple[int, int], list] = {}
        self.slices: list = []
        self.keys: list = []

    def submit(self, thresholds: dict[tuple[int, int], float]) -> None:
        sizes = self.parts.sizes()
        groups: dict[LshParams | None, list[tuple[int, int]]] = {}
        for a, b in sorted(thresholds):
            self.outputs[(a, b)] = []
            if sizes[a] and sizes[b]:
                groups.setdefault(self.engine.params_for(sizes[a], sizes[b]), []).append((a, b))
        for a, b in groups.pop(None, []):
            for lb, rb in itertools.product(self.parts.blocks[a], self.parts.blocks[b]):
                if lb.rows and rb.rows:
                    self._add((a, b), exact_task, lb, rb, check_threshold(thresholds[(a, b)]),
                              weight=lb.rows * rb.rows)
        for number, (params, group) in enumerate(groups.items()):
            self._submit_blocked(number, params, {p: thresholds[p] for p in group})

    def _add(self, pair, task, *args, weight: int):
        future = self.client.submit(task, *args, pure=False)
        self.futures.append((future, weight))
        if pair is not None:
            self.outputs[pair].append(future)
        return future

    def _submit_blocked(self, number: int, params: LshParams, pairs: dict[tuple[int, int], float]) -> None:
        sizes = self.parts.sizes()
        plan = PassPlan.of(pairs, sizes)
        root = f"{self.parts.root}/g{number}"
        key_urls, keys_done = [], []
        for d in plan.parties:
            urls = []
            for block in self.parts.blocks[d]:
                url = f"{root}/keys/d{d}-b{block.index}.npy"
                keys_done.append(self._add(None, keys_task, block, url, params, self.filter_bits,
                                           weight=block.rows * params.bands))
                self.keys.append(keys_done[-1])
                urls.append(url)
            key_urls.append(urls)
        party_sizes = [sizes[d] for d in plan.parties]
        starts = [self.parts.starts(d) for d in plan.parties]
        records = sum(party_sizes)
        slice_urls, slices_done = [], []
        for b0, b1 in band_ranges(params.bands, records, self.engine.parts()):
            url = f"{root}/candidates/s{b0}-{b1}.npy"
            slices_done.append(self._add(None, candidates_task, key_urls, b0, b1, party_sizes, starts, plan,
                                         params.max_bucket, url, keys_done, weight=records * (b1 - b0)))
            slice_urls.append(url)
        self.slices += slices_done
        base = 0  # the slices' index files hold every pair's groups, pair after pair
        for k, (a, b) in enumerate(plan.order):
            n_right = len(self.parts.blocks[b])
            for lb, rb in itertools.product(self.parts.blocks[a], self.parts.blocks[b]):
                if lb.rows and rb.rows:
                    self._add((a, b), score_task, lb, rb, k, base + lb.index * n_right + rb.index, sizes[b],
                              slice_urls, check_threshold(pairs[(a, b)]), slices_done, weight=lb.rows + rb.rows)
            base += len(self.parts.blocks[a]) * n_right

    def gather(self, progress=None, stats: BlockingStats | None = None) -> dict[tuple[int, int], ScoredPairs]:
        from distributed import as_completed

        weight = {f.key: w for f, w in self.futures}
        total, done = sum(weight.values()) or 1, 0
        self.reads = []
        try:
            for future in as_completed([f for f, _ in self.futures]):
                if future.status == "error":
                    future.result()  # raises the task's own error
                done += weight[future.key]
                if progress is not None and done < total:
                    progress(done, total)
            results = {pair: self.client.gather(fs) for pair, fs in self.outputs.items()}
            slices = self.client.gather(self.slices)
            keys = self.client.gather(self.keys)
        except Exception as exc:  # KilledWorker, or a task's own error, with the task that failed
            raise PartitionedPassFailed(f"the partitioned pass under {self.parts.root} failed: "
                                        f"{type(exc).__name__}: {exc}") from exc
        reports = [r[3] for rs in results.values() for r in rs]
        self.reads = keys + slices + reports
        if stats is not None:
            sizes = self.parts.sizes()
            stats.add(BlockingStats(
                pairs_total=sum(sizes[a] * sizes[b] for a, b in results),
                pairs_compared=sum(r["candidates"] for r in reports),
                buckets_skipped=sum(s["buckets_skipped"] for s in slices),
                pairs_skipped=sum(s["pairs_skipped"] for s in slices), calls=len(results),
                largest_bucket=max([s["largest_bucket"] for s in slices] + [0])))
        return {pair: _in_order(rs) for pair, rs in results.items()}


def band_ranges(bands: int, records: int, parts: int) -> list[tuple[int, int]]:
    """Ranges of bands, one candidates task each: at least ``parts``, and few enough bands each that a
    task's keys (4 bytes a record a band, read ``KEY_BANDS`` at a time) and sort stay near 256 MiB."""
    per_task = max(1, (256 << 20) // (16 * max(1, records)))
    count = max(parts, -(-bands // per_task))
    cuts = np.linspace(0, bands, min(bands, count) + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in itertools.pairwise(cuts) if b > a]
