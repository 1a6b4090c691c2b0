"""Load: one coordinator and N agents uploading at once, all real processes on
loopback with mutual TLS.

    python -m bench.load OUT [--agents 20] [--persons 2000] [--database URL]

Agents are spread over projects (each project takes five departments, each
department's certificate serves one agent per project). Every agent encodes
its extract first, then all start uploading together; the figures are the
records stored per second from the first agent's start to the last commit,
each batch's wait (from the agent handing it to gRPC to its acknowledgement:
p50, p99, max over every batch of every agent), the gaps each agent saw
between two acknowledgements (its stream going, nothing acknowledged: how
fairly the writer takes turns) and the wait for its first, the commits' times,
the coordinator's peak resident memory (VmHWM) and a trace of it, and the CPU seconds the coordinator and the agents
spent while uploading (the PostgreSQL server's own are not counted). What was lost is counted,
not assumed: per upload, the (reference, filter) pairs the agent sent that the
coordinator did not store, and the uploads whose state, record count or
upload digest differ from what the agent committed."""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import signal
import socket
from contextlib import contextmanager
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

FEDLINK = [sys.executable, "-m", "fedlink.cli"]
PER_PROJECT = ("population", "civil_affairs", "medical_insurance", "education", "housing")


def record_digest(ref: bytes, clk: bytes) -> str:
    """SHA-256 of one (reference, filter) pair, length-prefixed so no two pairs collide."""
    return hashlib.sha256(len(ref).to_bytes(2, "big") + ref + clk).hexdigest()


def count_lost(sent: list[str], stored: list[str]) -> int:
    """Records sent but not stored, as a multiset difference of record digests:
    a record stored twice does not make up for another one missing."""
    return sum((Counter(sent) - Counter(stored)).values())


def agent_main(config: str, go: str, result: str) -> None:
    """One agent process: encode, say ready, wait for the start, upload."""
    from agents.client import Agent
    from agents.config import load_config

    with Agent(load_config(Path(config)), show_progress=False) as agent:
        project = agent.project()
        prepared = agent.prepare(project)
        Path(result + ".ready").write_text("ready")
        while not Path(go).exists():
            time.sleep(0.01)
        waits: list[float] = []
        acks: list[float] = []  # when each acknowledgement came (this process's monotonic clock)
        sent: dict[int, list[str]] = {}  # per batch, its records' digests, as they went out (a resent batch once)
        agent.stub = _TimedStub(agent.stub, waits, acks, sent)
        cpu, start, began = _cpu_s(), time.time(), time.monotonic()
        summary = agent.upload(project, prepared)
        end, cpu = time.time(), _cpu_s() - cpu
    digests = [d for seq in sorted(sent) for d in sent[seq]]
    Path(result).write_text(json.dumps({
        "config": config, "department": agent.config.department, "project": agent.config.project,
        "records": prepared.record_count, "upload_id": summary.upload_id, "upload_digest": prepared.digest.hex(),
        "sent": digests, "start": start, "end": end, "batch_waits_s": waits,
        "first_ack_s": min(acks, default=began) - began, "ack_gaps_s": ack_gaps(acks), "cpu_s": cpu}))


def ack_gaps(acks: list[float]) -> list[float]:
    """The gaps an agent saw between two acknowledgements: what it waited with nothing acknowledged once its
    stream was going. A writer that served uploaders unfairly shows here as one agent's long gap, however
    short the other agents' batch waits are."""
    times = sorted(acks)
    return [b - a for a, b in zip(times, times[1:])]


class _TimedStub:
    """The agent's stub, timing each batch of UploadBatches from the moment gRPC
    takes it from the agent (it is made, and goes on the wire) to its acknowledgement,
    and keeping the digests of the records sent (so the extract is not encoded a third
    time, on cores the other agents are still uploading on)."""

    def __init__(self, stub, waits: list[float], acks: list[float], digests: dict[int, list[str]]):
        self._stub, self._waits, self._acks, self._digests = stub, waits, acks, digests

    def __getattr__(self, name):
        return getattr(self._stub, name)

    def UploadBatches(self, requests, **kwargs):
        sent: dict[int, float] = {}

        def stamped():
            for batch in requests:
                self._digests[batch.seq] = [record_digest(r.ref, r.clk) for r in batch.records]
                sent[batch.seq] = time.monotonic()
                yield batch
        for ack in self._stub.UploadBatches(stamped(), **kwargs):
            now = time.monotonic()
            self._waits.append(now - sent[ack.seq])
            self._acks.append(now)
            yield ack


def _watch_uploads(procs: list[subprocess.Popen], coordinator: int, deadline: float, out: Path) -> list:
    """Wait for every agent, sampling the coordinator's resident memory twice a second: [(s, MiB), ...], so
    its peak can be placed against the uploads' commits (which read a whole upload's filters)."""
    start, trace = time.monotonic(), []
    while any(p.poll() is None for p in procs):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the agents did not finish uploading in time; see {out}/agent-*/agent.log")
        trace.append((round(time.monotonic() - start, 1), round(_memory_mib(coordinator, "VmRSS"), 1)))
        time.sleep(0.5)
    failed = [p.returncode for p in procs if p.returncode != 0]
    if failed:
        raise RuntimeError(f"{len(failed)} agents failed (exit {failed[0]}); see {out}/agent-*/agent.log")
    return trace


def _cpu_s() -> float:
    """This process's CPU seconds, every thread's, user and system."""
    use = resource.getrusage(resource.RUSAGE_SELF)
    return use.ru_utime + use.ru_stime


def _process_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank q-th percentile (0 < q <= 100)."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, -(-len(ordered) * q // 100) - 1))] if ordered else float("nan")


@contextmanager
def serving_coordinator(out: Path, pki: Path, database: str):
    """`fedlink coordinator serve` on a free loopback port with mutual TLS, its log and
    audit key in `out` (one key per log), until the block ends: the process, its address
    and its audit key. Stopped with SIGINT, killed if it does not end in 30 s."""
    from fedlink.pki import WITNESSES_FILE, party_folder

    address = f"127.0.0.1:{_free_port()}"
    log = out / "coordinator.log"
    audit_key = out / "log" / "audit-signing.key"
    with log.open("w") as fh:
        coordinator = subprocess.Popen([*FEDLINK, "coordinator", "serve", "--listen", address, "--pki", str(pki),
                                        "--database", database, "--audit-key", str(audit_key),
                                        "--witnesses", str(party_folder(pki, "coordinator") / WITNESSES_FILE)],
                                       stdout=fh, stderr=subprocess.STDOUT)
    try:
        _wait_serving(address, pki, coordinator, log)
        yield coordinator, address, audit_key
    finally:
        if coordinator.poll() is None:
            coordinator.send_signal(signal.SIGINT)
            try:
                coordinator.wait(timeout=30)
            except subprocess.TimeoutExpired:
                coordinator.kill()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _memory_mib(pid: int, field: str = "VmHWM") -> float:
    """A process's peak (VmHWM) or present (VmRSS) resident memory."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _wait_serving(address: str, pki: Path, proc: subprocess.Popen, log: Path, limit: float = 90) -> None:
    from fedlink.pki import credentials_for
    from server.serve import wait_serving

    if not wait_serving(address, credentials_for(pki, "operator"), limit, alive=lambda: proc.poll() is None):
        if proc.poll() is not None:
            raise RuntimeError(f"coordinator exited: {log.read_text()}")
        raise RuntimeError(f"coordinator did not start: {log.read_text()}")


def run_load(out: Path, *, agents: int = 20, persons: int = 2000, database: str | None = None,
             batch_size: int = 500, limit_s: float = 600, seed: int = 5) -> dict:
    """Run the load; returns the figures, with what was lost counted per upload."""
    from agents.secret import new_secret
    from bench.synth import write_scenario
    from bench.harness import officer_witnesses, register_witness
    from fedlink.audit import vkey_path
    from fedlink.operator import Operator
    from fedlink.pki import init_pki
    from fedlink.schema import Project

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    scenario = out / "scenario"
    if not (scenario / "population.csv").exists():
        write_scenario(scenario, persons, seed=seed, reference_date="2025-06-30")
    pki = out / "pki"
    if not (pki / "ca" / "ca.pem").exists():
        init_pki(pki, PER_PROJECT)
    database = database or str(out / "coordinator.sqlite")
    register_witness(pki, "officer")
    procs: list[subprocess.Popen] = []
    with serving_coordinator(out, pki, database) as (coordinator, address, audit_key):
        try:
            projects = [f"load-{i}" for i in range((agents + len(PER_PROJECT) - 1) // len(PER_PROJECT))]
            secret = out / "project.secret"
            if not secret.exists():
                new_secret(secret)
            with Operator.connect(address, pki) as op:
                for p in projects:
                    op.create_project(Project.default(p, departments=PER_PROJECT, reference_date="2025-06-30"))
            officer_witnesses(address, pki, vkey_path(audit_key))  # the first uploaders find a cosignature
            go = out / "go"
            go.unlink(missing_ok=True)
            results = []
            for i in range(agents):
                project, department = projects[i // len(PER_PROJECT)], PER_PROJECT[i % len(PER_PROJECT)]
                config = _agent_config(out / f"agent-{i:02d}", pki, department, project, address,
                                       scenario / f"{department}.csv", secret, batch_size, vkey_path(audit_key))
                result = out / f"agent-{i:02d}" / "result.json"
                result.unlink(missing_ok=True)
                results.append(result)
                procs.append(subprocess.Popen([sys.executable, "-m", "bench.load", "agent", str(config), str(go),
                                               str(result)], stdout=subprocess.DEVNULL,
                                              stderr=(out / f"agent-{i:02d}" / "agent.log").open("w")))
            deadline = time.monotonic() + limit_s
            while not all(Path(str(r) + ".ready").exists() for r in results):
                for p in procs:
                    if p.poll() not in (None, 0):
                        raise RuntimeError(f"an agent failed while encoding (exit {p.returncode}); see {out}/agent-*")
                if time.monotonic() > deadline:
                    raise RuntimeError("agents did not finish encoding in time")
                time.sleep(0.05)
            rss_before, coordinator_cpu = _memory_mib(coordinator.pid), _process_cpu_s(coordinator.pid)
            go.write_text("go")
            trace = _watch_uploads(procs, coordinator.pid, deadline, out)
            peak, coordinator_cpu = _memory_mib(coordinator.pid), _process_cpu_s(coordinator.pid) - coordinator_cpu
            sent = [json.loads(r.read_text()) for r in results]
            per_upload = stored_against_sent(database, sent)
            records = sum(s["records"] for s in sent)
            waits = [w for s in sent for w in s["batch_waits_s"]]
            gaps = [g for s in sent for g in s["ack_gaps_s"]]
            first = min(s["start"] for s in sent)
            seconds = max(s["end"] for s in sent) - min(s["start"] for s in sent)
            figures = {"agents": agents, "projects": len(projects), "records": records, "seconds": round(seconds, 2),
                       "records_per_s": round(records / seconds, 1),
                       **{f"batch_wait_{name}_s": round(percentile(waits, q), 3)
                          for name, q in (("p50", 50), ("p99", 99), ("max", 100))},
                       **{f"ack_gap_{name}_s": round(percentile(gaps, q), 3)
                          for name, q in (("p50", 50), ("p99", 99), ("max", 100))},
                       **{f"first_ack_{name}_s": round(percentile([s["first_ack_s"] for s in sent], q), 3)
                          for name, q in (("p50", 50), ("max", 100))},
                       "worst_agent_max_ack_gap_s": round(max(max(s["ack_gaps_s"], default=0) for s in sent), 3),
                       "best_agent_max_ack_gap_s": round(min(max(s["ack_gaps_s"], default=0) for s in sent), 3),
                       "batches": len(waits), "coordinator_peak_rss_mib": round(peak, 1),
                       "coordinator_rss_trace": trace,
                       "commits_s": sorted(round(s["end"] - first, 2) for s in sent),
                       "coordinator_cpu_s": round(coordinator_cpu, 1),
                       "agents_cpu_s": round(sum(s["cpu_s"] for s in sent), 1),
                       "coordinator_rss_before_uploads_mib": round(rss_before, 1), "batch_size": batch_size,
                       "database": "postgresql" if "://" in database else "sqlite",
                       "lost": sum(u["lost"] for u in per_upload.values()),
                       "uploads_differing": sum(not u["upload_matches"] for u in per_upload.values()),
                       "per_upload": per_upload}
            (out / "load.json").write_text(json.dumps(figures, indent=2))
            return figures
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()


def stored_against_sent(database: str, sent: list[dict]) -> dict[str, dict]:
    """Per project/department: records sent, stored and lost, and whether the
    stored upload (state, record count, upload digest) is the one the agent committed."""
    from sqlalchemy import create_engine, text

    engine = create_engine(database if "://" in database else f"sqlite:///{database}")
    if database.startswith("postgresql://"):
        engine = create_engine("postgresql+psycopg://" + database.split("://", 1)[1])
    out = {}
    try:
        with engine.connect() as conn:
            for s in sent:
                up = conn.execute(text("select state, record_count, upload_digest from uploads where upload_id = :u"),
                                  {"u": s["upload_id"]}).one_or_none()
                pairs = conn.execute(text("select ref, clk from records where upload_id = :u"),
                                     {"u": s["upload_id"]}).all()
                stored = [record_digest(bytes(r), bytes(c)) for r, c in pairs]
                matches = up is not None and (up.state, up.record_count, bytes(up.upload_digest).hex()) == (
                    "committed", s["records"], s["upload_digest"])
                out[f"{s['project']}/{s['department']}"] = {
                    "sent": len(s["sent"]), "stored": len(stored), "lost": count_lost(s["sent"], stored),
                    "upload_matches": matches}
    finally:
        engine.dispose()
    return out


def _agent_config(folder: Path, pki: Path, department: str, project: str, address: str, extract: Path,
                  secret: Path, batch_size: int, log_key: Path) -> Path:
    from agents.config import AgentConfig
    from agents.refs import new_key
    from bench.harness import register_witness
    from fedlink.pki import WITNESSES_FILE, credentials_for, party_folder

    folder = folder.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    path = AgentConfig(
        path=folder / "agent.toml", department=department, project=project, coordinator=address,
        extract=extract.resolve(), secret_file=secret.resolve(), ref_key_file=folder / "ref.key",
        state_dir=folder / "state", batch_size=batch_size,
        tls=credentials_for(pki.resolve(), f"agent-{department}"), audit_key=log_key.resolve(),
        witnesses=party_folder(pki.resolve(), f"agent-{department}") / WITNESSES_FILE,
        witness_key=register_witness(pki, f"agent-{department}")).write()
    if not (folder / "ref.key").exists():
        new_key(folder / "ref.key")
    return path


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["agent"]:
        agent_main(*argv[1:4])
        return
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--persons", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--database", default=None, help="postgresql://... (default: a SQLite file in OUT)")
    parser.add_argument("--limit-s", type=float, default=600, help="for the encoding and the uploads together")
    args = parser.parse_args(argv)
    figures = run_load(args.out, agents=args.agents, persons=args.persons, database=args.database,
                       batch_size=args.batch_size, limit_s=args.limit_s)
    print(json.dumps({k: v for k, v in figures.items() if k not in ("per_upload", "coordinator_rss_trace")}, indent=2))
    if figures["lost"] or figures["uploads_differing"]:
        sys.exit(f"lost {figures['lost']} records; {figures['uploads_differing']} uploads differ "
                 f"(per upload in {args.out / 'load.json'})")


if __name__ == "__main__":
    main()
