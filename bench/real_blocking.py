"""Blocking on a real ``fedlink synth`` scenario encoded by the agents' own code: pair
completeness and fraction compared, LSH alone and with agent-side keyed blocking keys."""
from __future__ import annotations

import itertools
import time
import tomllib

import numpy as np

from server.blocking.candidates import lsh_candidates
from server.blocking.params import LshParams
from server.matching import dice_scores_above, dice_scores_pairs, pack_filters

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

