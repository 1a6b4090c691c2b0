"""`fedlink bench`: the real coordinator and one real agent per department on
loopback with mutual TLS, over a scenario folder (docs/data-format.md).

The bench plays every role at once. It alone may decrypt every department's
references (to write links.csv against the truth); it reads the coordinator's
link table directly for that, because no RPC hands out links: the
coordinator's interface never gives a department another's records.
"""
from __future__ import annotations

import json
import resource
import shutil
import time
import tomllib
from dataclasses import replace
from pathlib import Path

import pandas as pd
from rich.console import Console
from sqlalchemy import select

from agents.client import Agent
from agents.config import AgentConfig, load_config
from agents.refs import RefCipher, load_key, new_key
from agents.secret import new_secret
from bench.febrl import materialise, named_scenario
from bench.metrics import (fairness_by_group, flag_quality, missed_links_by_group, pair_quality, pairwise_quality,
                           record_groups)
from fedlink import files
from fedlink.audit import load_log_key, vkey_path
from fedlink.officer import Officer, verify_export
from fedlink.operator import Operator
from fedlink.pki import CA_FOLDER, WITNESSES_FILE, credentials_for, init_pki, party_folder
from fedlink.schema import DEPARTMENTS, Project, schema_from_dict
from fedlink.witness import Witness
from fedlink.witnessing import DEFAULT_QUORUM, Roster, witness_at
from server import store as t
from server.serve import start

PROJECT_ID = "bench"


def scenario_settings(scenario: Path) -> dict:
    path = scenario / "scenario.toml"
    return tomllib.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def resolve_scenario(scenario: Path | str, out: Path) -> Path:
    """A scenario folder as given, or a named one (e.g. "febrl4") written under out/scenario."""
    if Path(scenario).is_dir():
        return Path(scenario)
    if named_scenario(str(scenario)) is not None:
        return materialise(str(scenario), Path(out) / "scenario")
    raise FileNotFoundError(f"{scenario}: not a scenario folder nor a named scenario in bench/scenarios")


def scenario_departments(scenario: Path) -> list[str]:
    found = [d for d in DEPARTMENTS if (scenario / f"{d}.csv").exists()]
    if not found:
        raise FileNotFoundError(f"{scenario}: no department CSV ({', '.join(d + '.csv' for d in DEPARTMENTS)})")
    return found


def deliver_witnesses(pki: Path) -> None:
    """The CA operator sends the project's witnesses file (DIR/ca/witnesses.toml) to every party again."""
    pki = Path(pki).resolve()
    data = (pki / CA_FOLDER / WITNESSES_FILE).read_bytes()
    for folder in pki.iterdir():
        if folder.name != CA_FOLDER and (folder / f"{folder.name}.pem").is_file():
            files.write_atomic(folder / WITNESSES_FILE, data, 0o644)


def register_witness(pki: Path, party: str) -> Path:
    """The bench's stand-in for the witness ceremony: `party`'s witness key in its own
    folder (made once), its line in the project's witnesses file (the CA operator's),
    and that file delivered to every party."""
    pki = Path(pki).resolve()
    folder = party_folder(pki, party)
    key_path = folder / "witness.key"
    key = witness_at(key_path, folder / "witness.json", party).verifier
    path = pki / CA_FOLDER / WITNESSES_FILE
    roster = Roster.load(path) if path.exists() else Roster(path, DEFAULT_QUORUM, ())
    if key.encode() not in {k.encode() for k in roster.keys}:
        roster.with_key(key).write()
        deliver_witnesses(pki)
    return key_path


def bench_officer(pki: Path) -> Witness:
    """The bench's privacy officer as a witness (its key registered by `register_witness`)."""
    return witness_at(register_witness(pki, "officer"), party_folder(pki, "officer") / "witness.json", "officer")


def officer_witnesses(address: str, pki: Path, log_key: Path) -> int:
    """The privacy officer witnesses the log (as `fedlink audit witness` does); the size cosigned."""
    with Officer.connect(address, pki) as officer:
        witnessing = officer.witnessing(bench_officer(pki), Roster.load(party_folder(pki, "officer") / WITNESSES_FILE),
                                        load_log_key(log_key))
        return witnessing.contact().checkpoint.size


def write_agent_config(workdir: Path, department: str, extract: Path, address: str, columns: dict, *,
                       log_key: Path, project: str = PROJECT_ID, batch_size: int = 2000) -> Path:
    """The agent TOML of one department in the bench's layout (workdir/agents, workdir/pki),
    pinning the log key `log_key` (an audit-signing.vkey)."""
    agents = (workdir / "agents").resolve()
    pki = (workdir / "pki").resolve()
    return AgentConfig(
        path=agents / f"{department}.toml", department=department, project=project, coordinator=address,
        extract=extract.resolve(), secret_file=(workdir / "project.secret").resolve(),
        ref_key_file=agents / f"{department}.refkey", state_dir=agents / f"state-{department}",
        batch_size=batch_size, tls=credentials_for(pki, f"agent-{department}"), columns=dict(columns),
        audit_key=Path(log_key).resolve(), witnesses=party_folder(pki, f"agent-{department}") / WITNESSES_FILE,
        witness_key=register_witness(pki, f"agent-{department}")).write()


class BenchSession:
    """A coordinator on loopback with mTLS, a project, and one agent per department."""

    def __init__(self, scenario: Path, out: Path, *, threshold: float | None = None,
                 console: Console | None = None, project_overrides: dict | None = None,
                 engine: str | None = None, database: str | None = None):
        self.scenario, self.out = Path(scenario), Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.console = console
        self.settings = scenario_settings(self.scenario)
        self.departments = scenario_departments(self.scenario)
        self.pki = self.out / "pki"
        if not (self.pki / "ca" / "ca.pem").exists():
            init_pki(self.pki, self.departments)
        secret_file = self.out / "project.secret"
        if not secret_file.exists():
            new_secret(secret_file)
        # An empty coordinator database: a fresh SQLite file here, or the given (empty) server database.
        self.db = database or self.out / "coordinator.sqlite"
        if database is None:
            for stale in (self.db, self.db.with_suffix(".sqlite-wal"), self.db.with_suffix(".sqlite-shm")):
                stale.unlink(missing_ok=True)
        # A new coordinator database is a new log: a new audit key, and the witnesses forget the last one
        # (and the agents their last action in it: a bench run again in the same folder).
        agents = self.out / "agents"
        for state in [*agents.glob("state-*/witness.json"), *agents.glob("state-*/acted.json"),
                      *self.pki.glob("*/witness.json")]:
            state.unlink()
        shutil.rmtree(self.out / "log", ignore_errors=True)
        self.audit_key = self.out / "log" / "audit-signing.key"
        register_witness(self.pki, "officer")
        self.running = start("127.0.0.1:0", self.db, credentials=credentials_for(self.pki, "coordinator"),
                             engine=engine, audit_key=self.audit_key,
                             witnesses=party_folder(self.pki, "coordinator") / WITNESSES_FILE)
        self.address = f"127.0.0.1:{self.running.port}"
        overrides = dict(project_overrides or {})
        if "schema" in self.settings and "schema" not in overrides:
            overrides["schema"] = schema_from_dict(self.settings["schema"])
        project = Project.default(PROJECT_ID, self.departments, **overrides)
        ref = self.settings.get("project", {}).get("reference_date")
        if ref:
            project = replace(project, reference_date=ref)
        if threshold is not None:
            project = replace(project, schema=replace(project.schema, threshold=threshold, auto_threshold=False))
        self.project = project
        with Operator.connect(self.address, self.pki) as op:
            op.create_project(project)
        self.officer_witness()  # the first uploader finds another witness's cosignature
        self.configs = {}
        for d in self.departments:
            self.configs[d] = self.agent_config(d, self.scenario / f"{d}.csv")
            key = load_config(self.configs[d]).ref_key_file
            if not key.exists():
                new_key(key)

    def say(self, text: str) -> None:
        if self.console:
            self.console.print(text)

    def agent_config(self, department: str, extract: Path) -> Path:
        columns = self.settings.get("columns", {}).get(department, {})
        return write_agent_config(self.out, department, extract, self.address, columns,
                                  log_key=vkey_path(self.audit_key))

    def officer_witness(self) -> int:
        return officer_witnesses(self.address, self.pki, vkey_path(self.audit_key))

    def _officer(self) -> Witness:
        return bench_officer(self.pki)

    def agent(self, department: str) -> Agent:
        return Agent(load_config(self.configs[department]), show_progress=self.console is not None)

    def upload(self, department: str, extract: Path | None = None) -> tuple[int, float, float]:
        """Encode and upload one department's extract; (records, encode s, upload s)."""
        if extract is not None:
            self.configs[department] = self.agent_config(department, extract)
        with self.agent(department) as agent:
            t0 = time.perf_counter()
            remote = agent.project()
            prepared = agent.prepare(remote)
            t1 = time.perf_counter()
            summary = agent.upload(remote, prepared)
            t2 = time.perf_counter()
        self.say(f"{department}: {summary.record_count} records encoded in {t1 - t0:.1f} s, "
                 f"uploaded in {t2 - t1:.1f} s")
        return summary.record_count, t1 - t0, t2 - t1

    def run(self, as_of: str = "") -> tuple[str, dict, dict]:
        """Start a run, follow its stream; (run id, report, phase times)."""
        times = {}
        with Operator.connect(self.address, self.pki) as op:
            run_id = op.start_run(PROJECT_ID, as_of or self.project.reference_date)
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
        return run_id, report, times

    def worklists(self, run_id: str, suffix: str = "") -> tuple[dict[str, Path], pd.DataFrame]:
        """Every department pulls its worklist; (paths, all flags as department,record_id,need,tier,status)."""
        paths, flags = {}, []
        self.officer_witness()  # the last uploader finds a cosignature newer than its upload
        for d in self.departments:
            with Agent(load_config(self.configs[d]), show_progress=False) as agent:
                path = self.out / "worklists" / f"{d}{suffix}.csv"
                agent.write_worklist(path, run_id)
            paths[d] = path
            wl = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
            flags.append(pd.DataFrame({"department": d, "record_id": wl["record_id"], "need": wl["need"],
                                       "tier": wl["tier"].astype(int), "status": wl["status"]}))
        return paths, pd.concat(flags, ignore_index=True)

    def links(self, run_id: str) -> pd.DataFrame:
        """links.csv: every record's cluster, references decrypted with each department's own key."""
        with self.running.coordinator.store.read() as conn:
            rows = conn.execute(
                select(t.uploads.c.department, t.records.c.ref, t.links.c.person)
                .join(t.records, t.records.c.id == t.links.c.record_id)
                .join(t.uploads, t.uploads.c.upload_id == t.records.c.upload_id)
                .where(t.links.c.run_id == run_id)).all()
        configs = {d: load_config(c) for d, c in self.configs.items()}
        ciphers = {d: RefCipher(load_key(c.ref_key_file), c.project, d) for d, c in configs.items()}
        return pd.DataFrame([(d, ciphers[d].decrypt(ref), person) for d, ref, person in rows],
                            columns=["department", "record_id", "cluster_id"])

    def thresholds(self, run_id: str) -> dict[str, float]:
        """The threshold each department pair was linked at, from the run's stored report."""
        with self.running.coordinator.store.read() as conn:
            report = conn.execute(select(t.runs.c.report).where(t.runs.c.run_id == run_id)).scalar()
        return (report or {}).get("threshold_per_department_pair", {})

    def verify_audit(self) -> dict:
        """The privacy officer exports the log, verifies it offline (cosignatures and
        quorum included), and hands its own cosignature back."""
        with Officer.connect(self.address, self.pki) as officer:
            officer.export(self.out / "audit")
            verified = verify_export(self.out / "audit", load_log_key(vkey_path(self.audit_key)),
                                     Roster.load(self.pki / "officer" / WITNESSES_FILE), self._officer())
            officer.add_cosignature(verified.cosigned)
        c = verified.checkpoint
        return {"verified": True, "origin": c.origin, "tree_size": c.size, "root_hash": c.root.hex(),
                "cosigners": list(verified.cosigners), "checkpoint": str(verified.cosigned)}

    def close(self) -> None:
        self.running.stop(grace=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def run_bench(scenario: Path, out: Path, *, threshold: float | None = None, console: Console | None = None,
              project_overrides: dict | None = None, engine: str | None = None,
              database: str | None = None) -> dict:
    out = Path(out)
    scenario = resolve_scenario(scenario, out)
    with BenchSession(scenario, out, threshold=threshold, console=console,
                      project_overrides=project_overrides, engine=engine, database=database) as s:
        counts, encode_s, upload_s = {}, 0.0, 0.0
        for d in s.departments:
            counts[d], e, u = s.upload(d)
            encode_s += e
            upload_s += u
        run_id, report, times = s.run()
        times = {"normalise_encode": round(encode_s, 3), "upload": round(upload_s, 3), **times}
        t0 = time.perf_counter()
        worklists, flags = s.worklists(run_id)
        times["flag_delivery"] = round(time.perf_counter() - t0, 3)
        t0 = time.perf_counter()  # the bench's own bookkeeping from here: links.csv and the quality figures
        links = s.links(run_id)
        thresholds = s.thresholds(run_id)
        t_audit = time.perf_counter()
        audit = s.verify_audit()
        times["audit_verify"] = round(time.perf_counter() - t_audit, 3)
    links.to_csv(out / "links.csv", index=False)
    flags[["department", "record_id", "need", "tier"]].to_csv(out / "flags.csv", index=False)
    metrics = {
        "scenario": str(scenario), "run_id": run_id, "records_per_department": counts,
        "threshold": s.project.schema.threshold, "auto_threshold": s.project.schema.auto_threshold,
        "thresholds_used": thresholds, "times_s": times,
        "peak_memory_mb": None,  # after the bookkeeping, below
        "persons_linked": report.get("persons"), "worklists": {d: str(p) for d, p in worklists.items()},
        "audit": audit,
    }
    truth_path = Path(scenario) / "truth.csv"
    if truth_path.exists():
        truth = pd.read_csv(truth_path, dtype=str, keep_default_na=False)
        metrics["links"] = pairwise_quality(links, truth)
        metrics["links_per_department_pair"] = pair_quality(links, truth)
        groups = record_groups(scenario, s.departments, s.settings, s.project)
        metrics["missed_links_by_group"] = missed_links_by_group(links, truth, groups)
        labels_path = Path(scenario) / "groups.csv"  # a realistic scenario's per-record groups
        if labels_path.exists():
            metrics["fairness"] = fairness_by_group(links, truth, pd.read_csv(labels_path, dtype=str))
        needs_path = Path(scenario) / "needs.csv"
        if needs_path.exists():
            needs = pd.read_csv(needs_path, dtype=str, keep_default_na=False)
            metrics["flags"] = flag_quality(flags, truth, needs)
    times["bookkeeping"] = round(time.perf_counter() - t0 - times["audit_verify"], 3)
    metrics["peak_memory_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n")
    return metrics
