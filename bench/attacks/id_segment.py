"""Attacks on the resident-ID segment (issue 15): the last `id_segment_bits` of a record-level
filter, where the ID alone is hashed and hardened (agents.hardening.IdSegmentEncoder).

An 18-digit resident ID (GB 11643) carries the region of birth registration (6 digits:
province, city, district), the birth date (8) and the sex (the 17th digit's parity). The
attacker is the coordinator: it holds one department's filters, knows the schema and the
hardening (Kerckhoffs), and knows the attributes of a few of the department's records
(``KNOWN_SHARE`` of them, as bench.attacks.realistic: its own staff); never the secret.

    classifier       logistic regression and per-bit Bernoulli naive Bayes, trained on the
                     known records' bits, read each attribute of the others
    dice_neighbour   the attribute most common among the `k` known records nearest by Dice
                     on the same bits (ties: the nearest's)

The attributes (``TARGETS``): province (the true ID's first 2 digits), region (its first 6),
birth decade, birth year and sex of the person behind the record. Each is scored on
the records not known that have a document (a record without one has a zero segment:
nothing to read, and the coordinator sees which those are), as accuracy against the share of the commonest value
among the same records; ``advantage`` is the difference.

Each attack reads three views, so the table says what the segment adds: ``segment`` (the
last id_segment_bits alone), ``filter`` (the whole filter as uploaded), and with
``id_segment_bits = 0`` only ``filter`` (the ID hashed with the other fields, the layout
before session 23).

The zero segment itself discloses which records have no document (no resident ID and no
permit): ``blank`` lists that share by group of the generator's truth (migrant, permit
holder, minority, born before 1960).

    run_id_segment(persons=5000, seed=4, hardening=None, id_segment_bits=None) -> dict
    python -m bench.attacks.id_segment --persons 5000 --seeds 4 5 6 [--hardening twin diffuse-4]
        [--id-segment-bits 0] [--department housing] [--known-share 0.02] [--id-qgram 0]
"""
from __future__ import annotations

import argparse
import json
import secrets
import time
import warnings
from dataclasses import replace

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import BernoulliNB

from agents.hardening import HardenedEncoder
from agents.normalise import normalise_record
from bench.attacks.realistic import KNOWN_SHARE, PROJECT_ID
from bench.attacks.realistic_table import markdown
from bench.synth.realistic import build_cn, render_department_cn
from fedlink.schema import DEPARTMENTS, LinkageSchema, schema_from_dict

TARGETS = ("province", "region", "decade", "year", "sex")
ATTACKS = ("logistic", "naive_bayes", "dice_neighbour")
NEIGHBOURS = 5  # the known records a Dice-neighbour guess is voted from (fixed before any run)
DEPARTMENT = "housing"  # the register with the most blank IDs (rates.py: 15 % of records)


def department_truth(persons: int, seed: int, department: str = DEPARTMENT, error_scale: float = 1.0):
    """One department's records as the agent normalises them, and per record the true person's
    attributes (`TARGETS`) and its generator groups."""
    if department not in DEPARTMENTS:
        raise ValueError(f"department {department!r} is not one of {', '.join(DEPARTMENTS)}")
    cw = build_cn(persons, seed)
    frame, idx, groups = render_department_cn(cw, department, seed, error_scale)
    features = [normalise_record(r) for r in frame.astype(str).to_dict("records")]
    p = cw.world.persons.iloc[idx]
    rid = p["resident_id"].astype(str).tolist()
    born = p["birth_date"].astype(str).tolist()
    truth = {"province": [r[:2] for r in rid], "region": [r[:6] for r in rid],
             "decade": [b[:3] for b in born], "year": [b[:4] for b in born], "sex": p["sex"].tolist()}
    return features, truth, groups.assign(born_before_1960=[b < "1960" for b in born])


def _dice_vote(unknown: np.ndarray, known: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Per unknown row, the label most common among its k nearest known rows by Dice."""
    u, kn = unknown.astype(np.float32), known.astype(np.float32)
    inter = u @ kn.T
    dice = 2 * inter / np.maximum(u.sum(1)[:, None] + kn.sum(1)[None, :], 1)
    nearest = np.argsort(-dice, axis=1, kind="stable")[:, :k]
    out = np.empty(len(u), dtype=object)
    for i, row in enumerate(labels[nearest]):
        values, counts = np.unique(row, return_counts=True)
        best = values[counts == counts.max()]
        out[i] = next(v for v in row if v in best)  # a tie goes to the nearest of the tied
    return out


def read_attributes(bits: np.ndarray, truth: dict, known: np.ndarray, scored: np.ndarray,
                    k: int = NEIGHBOURS) -> dict:
    """Every attack on every target: trained on `known` rows, scored on `scored` rows."""
    out = {}
    for target in TARGETS:
        y = np.array([str(v) for v in truth[target]], dtype=object)
        values, counts = np.unique(y[scored], return_counts=True)
        commonest = float(counts.max() / counts.sum())
        res = {"values": int(len(np.unique(y[known | scored]))), "commonest": commonest}
        if len(np.unique(y[known])) < 2:  # one value known: every attack can only guess it
            guess = {a: np.full(int(scored.sum()), y[known][0], dtype=object) for a in ATTACKS}
        else:
            guess = {}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                warnings.simplefilter("ignore", UserWarning)  # "more classes than half the samples": region
                model = LogisticRegression(C=1.0, max_iter=500).fit(bits[known], y[known])
                guess["logistic"] = model.predict(bits[scored])
            guess["naive_bayes"] = BernoulliNB(alpha=1.0).fit(bits[known], y[known]).predict(bits[scored])
            guess["dice_neighbour"] = _dice_vote(bits[scored], bits[known], y[known], k)
        for a in ATTACKS:
            acc = float((guess[a] == y[scored]).mean())
            res[a] = {"accuracy": acc, "advantage": acc - commonest}
        res["best_advantage"] = max(res[a]["advantage"] for a in ATTACKS)
        out[target] = res
    return out


def blank_by_group(blank: np.ndarray, groups) -> dict:
    """The share without a document of all records and of each group's (what the zero segment tells)."""
    out = {"all": {"records": int(len(blank)), "blank_share": float(blank.mean()) if len(blank) else 0.0}}
    for g in ("migrant", "permit", "minority", "born_before_1960"):
        sel = groups[g].to_numpy().astype(bool)
        out[g] = {"records": int(sel.sum()), "blank_share": float(blank[sel].mean()) if sel.any() else 0.0}
    return out


def run_id_segment(persons: int = 5000, seed: int = 4, hardening: str | None = None, *,
                   id_segment_bits: int | None = None, department: str = DEPARTMENT,
                   known_share: float = KNOWN_SHARE, error_scale: float = 1.0, id_qgram: int | None = None) -> dict:
    """The ID-segment attacks on `department`'s extract of a realistic world, encoded with the
    default record-level schema under `hardening` and a fresh project secret (`id_qgram`: the
    resident_id field's q-gram length in place of the default's; 0 hashes the whole ID as one token)."""
    t0 = time.perf_counter()
    schema = schema_from_dict({"comparison": "record", "hardening": hardening or LinkageSchema().hardening})
    if id_segment_bits is not None:
        schema = replace(schema, id_segment_bits=id_segment_bits)
    if id_qgram is not None:
        schema = replace(schema, fields=tuple(replace(f, qgram=id_qgram) if f.kind == "resident_id" else f
                                              for f in schema.fields))
    features, truth, groups = department_truth(persons, seed, department, error_scale)
    # No document: every field of the segment blank (a resident ID, or a HK/MO/TW permit).
    blank = np.array([all(f[x.name] == "" for x in schema.id_fields()) for f in features])
    bits = np.unpackbits(HardenedEncoder(schema, secrets.token_bytes(32), PROJECT_ID).encode(features), axis=1)
    seg = schema.id_segment_words() * 64
    rng = np.random.default_rng(seed)
    known = np.zeros(len(bits), dtype=bool)
    # The known records are staff: some have a blank ID too, and then teach nothing about it.
    known[rng.choice(len(bits), max(20, int(known_share * len(bits))), replace=False)] = True
    with_id = ~blank
    views = {"filter": bits}
    if seg:
        views["segment"] = bits[:, -seg:]
        zero = ~views["segment"].any(axis=1)
        assert (zero == blank).all(), "a zero ID segment is a record without a document and nothing else"
    scored = ~known & with_id
    return {"persons": persons, "seed": seed, "department": department, "hardening": schema.hardening,
            "id_segment_bits": seg, "id_qgram": next(f.qgram for f in schema.id_fields()),
            "error_scale": error_scale, "records": len(bits),
            "known_records": int(known.sum()), "scored_records": int(scored.sum()),
            "views": {v: read_attributes(b, truth, known & with_id, scored) for v, b in views.items()},
            "blank": blank_by_group(blank, groups), "seconds": round(time.perf_counter() - t0, 2)}


COLUMNS = ("hardening", "ID q-gram", "ID segment", "seed", "view") + TARGETS


def table_rows(result: dict) -> list[dict]:
    """One row per view: per target the best attack's accuracy against the commonest share."""
    rows = []
    for view, targets in result["views"].items():
        row = {"hardening": result["hardening"], "ID q-gram": result["id_qgram"],
               "ID segment": result["id_segment_bits"], "seed": result["seed"], "view": view}
        for t in TARGETS:
            r = targets[t]
            best = max(ATTACKS, key=lambda a: r[a]["accuracy"])
            row[t] = f"{100 * r[best]['accuracy']:.1f} vs {100 * r['commonest']:.1f} ({best})"
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--persons", type=int, default=5000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[4, 5, 6])
    ap.add_argument("--hardening", nargs="+", default=[LinkageSchema().hardening])
    ap.add_argument("--id-segment-bits", type=int, nargs="+", default=[256],
                    help="the schema's id_segment_bits, each a row (0: the ID hashed with the other fields)")
    ap.add_argument("--department", default=DEPARTMENT, choices=DEPARTMENTS)
    ap.add_argument("--known-share", type=float, default=KNOWN_SHARE)
    ap.add_argument("--error-scale", type=float, default=1.0)
    ap.add_argument("--id-qgram", type=int, default=None,
                    help="the resident_id field's q-gram length (default: the schema's, 2; 0: the whole ID one token)")
    args = ap.parse_args(argv)
    rows = []
    for seed in args.seeds:
        for h in args.hardening:
            for b in args.id_segment_bits:
                res = run_id_segment(args.persons, seed, h, id_segment_bits=b, department=args.department,
                                     known_share=args.known_share, error_scale=args.error_scale,
                                     id_qgram=args.id_qgram)
                print(json.dumps(res, ensure_ascii=False), flush=True)
                rows += table_rows(res)
    print(markdown(rows, COLUMNS))


if __name__ == "__main__":
    main()
