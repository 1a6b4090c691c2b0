"""`fedlink bench`: the real coordinator and one real agent per department on
loopback with mutual TLS, over a scenario folder (DATA_FORMAT.md).

The bench plays every role at once. It alone may decrypt every department's
references (to write links.csv against the truth); it reads the coordinator's
link table directly for that, because no RPC hands out links: the
coordinator's interface never gives a department another's records.
"""
from __future__ import annotations

import json
import resource
import secrets
import time
import tomllib
from dataclasses import replace
from pathlib import Path

import pandas as pd
from rich.console import Console
from sqlalchemy import select

from agents.client import Agent
from agents.config import load_config
from agents.refs import RefCipher, load_key, new_key
from bench.metrics import flag_quality, pairwise_quality
from fedlink.officer import Officer, verify_export
from fedlink.operator import Operator
from fedlink.pki import credentials_for, init_pki
from fedlink.schema import DEPARTMENTS, Project
from server import store as t
from server.serve import start

PROJECT_ID = "bench"


def scenario_settings(scenario: Path) -> dict:
    path = scenario / "scenario.toml"
    return tomllib.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def scenario_departments(scenario: Path) -> list[str]:
    found = [d for d in DEPARTMENTS if (scenario / f"{d}.csv").exists()]
    if not found:
        raise FileNotFoundError(f"{scenario}: no department CSV ({', '.join(d + '.csv' for d in DEPARTMENTS)})")
    return found


def write_agent_config(workdir: Path, department: str, extract: Path, address: str, columns: dict) -> Path:
    pki = workdir / "pki"
    path = workdir / "agents" / f"{department}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        f'department = "{department}"', f'project = "{PROJECT_ID}"', f'coordinator = "{address}"',
        f'extract = "{extract.resolve()}"', f'secret_file = "{(workdir / "project.secret").resolve()}"',
        f'ref_key_file = "{(workdir / "agents" / (department + ".refkey")).resolve()}"',
        f'state_dir = "{(workdir / "agents" / ("state-" + department)).resolve()}"', "batch_size = 2000", "",
        "[tls]", f'cert = "{(pki / f"agent-{department}.pem").resolve()}"',
        f'key = "{(pki / f"agent-{department}.key").resolve()}"', f'ca = "{(pki / "ca.pem").resolve()}"',
    ]
    if columns:
        lines += ["", "[columns]"] + [f'{k} = "{v}"' for k, v in columns.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run_bench(scenario: Path, out: Path, *, threshold: float | None = None, console: Console | None = None,
              project_overrides: dict | None = None) -> dict:
    scenario, out = Path(scenario), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    say = console.print if console else (lambda *a, **k: None)
    settings = scenario_settings(scenario)
    departments = scenario_departments(scenario)
    times: dict[str, float] = {}

    # PKI, the shared project secret, each department's own reference key.
    pki = out / "pki"
    if not (pki / "ca.pem").exists():
        init_pki(pki, departments)
    secret_file = out / "project.secret"
    if not secret_file.exists():
        secret_file.write_text(secrets.token_hex(32) + "\n")
        secret_file.chmod(0o600)
    db = out / "coordinator.sqlite"
    for stale in (db, db.with_suffix(".sqlite-wal"), db.with_suffix(".sqlite-shm")):
        stale.unlink(missing_ok=True)

    running = start("127.0.0.1:0", db, credentials=credentials_for(pki, "coordinator"))
    address = f"127.0.0.1:{running.port}"
    try:
        project = Project.default(PROJECT_ID, departments, **(project_overrides or {}))
        overrides = settings.get("project", {})
        if overrides.get("reference_date"):
            project = replace(project, reference_date=overrides["reference_date"])
        if threshold is not None:
            project = replace(project, schema=replace(project.schema, threshold=threshold))
        with Operator.connect(address, pki) as op:
            op.create_project(project)

        configs = {}
        for d in departments:
            configs[d] = write_agent_config(out, d, scenario / f"{d}.csv", address,
                                            settings.get("columns", {}).get(d, {}))
            key = load_config(configs[d]).ref_key_file
            if not key.exists():
                new_key(key)

        encode_s = upload_s = 0.0
        counts = {}
        for d in departments:
            with Agent(load_config(configs[d]), show_progress=console is not None) as agent:
                t0 = time.perf_counter()
                remote = agent.project()
                prepared = agent.prepare(remote)
                t1 = time.perf_counter()
                summary = agent.upload(remote, prepared)
                t2 = time.perf_counter()
            encode_s += t1 - t0
            upload_s += t2 - t1
            counts[d] = summary.record_count
            say(f"{d}: {summary.record_count} records encoded in {t1 - t0:.1f} s, uploaded in {t2 - t1:.1f} s")
        times["normalise_encode"], times["upload"] = round(encode_s, 3), round(upload_s, 3)

        with Operator.connect(address, pki) as op:
            run_id = op.start_run(PROJECT_ID)
            phase_start: dict[str, float] = {}
            state = ""
            t0 = time.perf_counter()
            for p in op.progress(run_id):
                phase_start.setdefault(p.phase, time.perf_counter())
                state = p.state
            t_end = time.perf_counter()
            if state != "done":
                raise RuntimeError(f"run {run_id} ended {state}")
            report = op.report(run_id)
        rules_at = phase_start.get("rules", t_end)
        times["link"] = round(rules_at - t0, 3)
        times["rules"] = round(phase_start.get("store", t_end) - rules_at, 3)
        times["store"] = round(t_end - phase_start.get("store", t_end), 3)

        t0 = time.perf_counter()
        flags = []
        worklists = {}
        for d in departments:
            with Agent(load_config(configs[d]), show_progress=False) as agent:
                path = out / "worklists" / f"{d}.csv"
                agent.write_worklist(path, run_id)
                worklists[d] = str(path)
                wl = pd.read_csv(path, dtype=str, keep_default_na=False)
                flags.extend({"department": d, "record_id": r, "need": n, "tier": int(tier)}
                             for r, n, tier in zip(wl["record_id"], wl["need"], wl["tier"]))
        times["flag_delivery"] = round(time.perf_counter() - t0, 3)
        links = export_links(db, run_id, {d: load_config(c) for d, c in configs.items()})
        # The privacy officer's check of everything that happened, offline.
        with Officer.connect(address, pki) as officer:
            head = officer.export(out / "audit")
        verify_export(out / "audit", pki / "audit-signing.pub", out / "audit" / "verified-heads.jsonl")
    finally:
        running.stop(grace=5)

    links.to_csv(out / "links.csv", index=False)
    flags_frame = pd.DataFrame(flags, columns=["department", "record_id", "need", "tier"])
    flags_frame.to_csv(out / "flags.csv", index=False)
    metrics = {
        "scenario": str(scenario), "run_id": run_id, "records_per_department": counts,
        "threshold": project.schema.threshold if threshold is None else threshold,
        "times_s": times, "peak_memory_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "persons_linked": report.get("persons"), "worklists": worklists,
        "audit": {"verified": True, "tree_size": head.tree_size, "root_hash": head.root_hash.hex(),
                  "timestamp_ms": head.timestamp_ms, "signature": head.signature.hex(), "key_id": head.key_id.hex()},
    }
    truth_path = scenario / "truth.csv"
    if truth_path.exists():
        truth = pd.read_csv(truth_path, dtype=str, keep_default_na=False)
        metrics["links"] = pairwise_quality(links, truth)
        needs_path = scenario / "needs.csv"
        if needs_path.exists():
            needs = pd.read_csv(needs_path, dtype=str, keep_default_na=False)
            metrics["flags"] = flag_quality(flags_frame, truth, needs)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n")
    return metrics


def export_links(db: Path, run_id: str, configs: dict) -> pd.DataFrame:
    """links.csv: every record's cluster, references decrypted with each department's own key."""
    from server.store import connect

    engine = connect(db)
    with engine.connect() as conn:
        rows = conn.execute(
            select(t.uploads.c.department, t.records.c.ref, t.links.c.person)
            .join(t.records, t.records.c.id == t.links.c.record_id)
            .join(t.uploads, t.uploads.c.upload_id == t.records.c.upload_id)
            .where(t.links.c.run_id == run_id)).all()
    engine.dispose()
    ciphers = {d: RefCipher(load_key(c.ref_key_file), c.project, d) for d, c in configs.items()}
    return pd.DataFrame(
        [(d, ciphers[d].decrypt(ref), person) for d, ref, person in rows],
        columns=["department", "record_id", "cluster_id"])
