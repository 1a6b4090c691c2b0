"""Linkage quality of one scenario under several schemas, in process: every department
encoded as its agent would (normalise, encode, harden), linked as the coordinator
would (server.pipeline.link), scored against the truth. No gRPC and no store, so
the record-level and segmented comparisons are measured on the same filters'
inputs in seconds; `fedlink bench` runs the whole system.

    python -m bench.linkage SCENARIO [--comparison record segments] [--hardening balance] [--work DIR]

SCENARIO is a scenario folder or a named one (febrl4), written under --work.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from agents.extract import read_extract
from agents.hardening import HardenedEncoder
from agents.normalise import feature_columns
from bench.harness import resolve_scenario, scenario_departments, scenario_settings
from bench.metrics import fairness_by_group, pairwise_quality
from fedlink.schema import LinkageSchema, schema_from_dict
from server.engine.local import LocalEngine
from server.matching import pack_filters
from server.pipeline.link import DepartmentRecords, link

SECRET, PROJECT = b"bench linkage secret", "bench-linkage"


def schema_for(scenario: Path, comparison: str, hardening: str, id_segment_bits: int | None = None) -> LinkageSchema:
    settings = scenario_settings(scenario)
    schema = dict(settings.get("schema", {}))
    if comparison == "segments":
        schema = {k: v for k, v in schema.items() if k != "fields"}
    schema.update(comparison=comparison, hardening=hardening)
    if id_segment_bits is not None:
        schema["id_segment_bits"] = id_segment_bits
    out = schema_from_dict(schema)
    out.validate()
    return out


def encode_scenario(scenario: Path, schema: LinkageSchema) -> tuple[list[DepartmentRecords], list[pd.Series]]:
    settings = scenario_settings(scenario)
    encoder = HardenedEncoder(schema, SECRET, PROJECT)
    fields = [(f.name, f.kind, f.column) for f in schema.fields]
    departments, ids = [], []
    for d in scenario_departments(scenario):
        frame = read_extract(scenario / f"{d}.csv", d, settings.get("columns", {}).get(d), identity=None)
        packed = pack_filters(encoder.encode(feature_columns(frame, fields)), schema.filter_bits)
        ids.append(frame["record_id"].astype(str))
        # The references stand in for the agent's encrypted ones: the threshold's sample is chosen by them.
        refs = [f"{d}:{r}".encode() for r in ids[-1]]
        departments.append(DepartmentRecords(d, np.arange(len(frame)), refs, packed, {}))
    return departments, ids


def measure(scenario: Path, comparison: str, hardening: str, without: tuple[str, ...] = (),
            id_segment_bits: int | None = None) -> dict:
    """Quality of the scenario's schema under `hardening`, less the fields named in `without`
    (`id_segment_bits`: the schema's, else the scenario's or the default)."""
    schema = schema_for(scenario, comparison, hardening, id_segment_bits)
    if without:
        schema = replace(schema, fields=tuple(f for f in schema.fields if f.name not in without))
    departments, ids = encode_scenario(scenario, schema)
    with LocalEngine(blocking="auto") as engine:
        linkage = link(departments, schema.threshold, engine, lambda *a: None, auto=schema.auto_threshold,
                       schema=schema)
    links = pd.concat([pd.DataFrame({"department": d.department, "record_id": rid,
                                     "cluster_id": linkage.person_labels(i)})
                       for i, (d, rid) in enumerate(zip(departments, ids))])
    truth = pd.read_csv(scenario / "truth.csv", dtype=str)
    quality = pairwise_quality(links, truth)
    thresholds = list(linkage.thresholds.values())
    out = {"comparison": comparison, "hardening": hardening, **quality,
           "threshold_min": min(thresholds), "threshold_max": max(thresholds)}
    if schema.id_segment_words():
        blank = list(linkage.blank_thresholds.values())
        out.update(id_segment_bits=schema.id_segment_bits, blank_id_threshold_min=min(blank),
                   blank_id_threshold_max=max(blank))
    if (scenario / "groups.csv").exists():  # a realistic scenario: recall per group
        fairness = fairness_by_group(links, truth, pd.read_csv(scenario / "groups.csv", dtype=str))
        out["recall_by_group"] = {g: r["recall"] for g, r in fairness.items()}
        # A change that lifts one group's recall by making names agree more (married names,
        # permits) can link namesakes too: their false links are watched beside the recall.
        out["false_links_by_group"] = {g: r["false_links"] for g, r in fairness.items()}
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario")
    parser.add_argument("--work", type=Path, default=Path("bench-linkage"))
    parser.add_argument("--comparison", nargs="+", default=["record", "segments"])
    parser.add_argument("--hardening", default="balance")
    parser.add_argument("--id-segment-bits", type=int, default=None,
                        help="the schema's id_segment_bits (0: the ID hashed with the other fields)")
    args = parser.parse_args(argv)
    scenario = resolve_scenario(args.scenario, args.work)
    for comparison in args.comparison:
        print(json.dumps(measure(scenario, comparison, args.hardening, id_segment_bits=args.id_segment_bits)))


if __name__ == "__main__":
    main()
