"""The agent's memory on one large upload: a real coordinator (`fedlink coordinator serve`,
SQLite unless --database names PostgreSQL) and one `fedlink agent upload` process run
under `/usr/bin/time -v`, on loopback with mutual TLS.

    python -m bench.agent_memory OUT --extract population.csv [--department population]

Prints and writes OUT/agent_memory.json (OUT a new folder): the agent's peak
resident memory (time's "Maximum resident set size"), the upload's wall time
(read, encode, send, commit) and the coordinator's peak resident memory (VmHWM).
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

FEDLINK = [sys.executable, "-m", "fedlink.cli"]


def measure(out: Path, extract: Path, department: str, database: str | None = None, batch_size: int = 2000) -> dict:
    from agents.secret import new_secret
    from bench.harness import officer_witnesses, write_agent_config
    from bench.load import _memory_mib, serving_coordinator
    from fedlink.audit import vkey_path
    from fedlink.operator import Operator
    from fedlink.pki import init_pki
    from fedlink.schema import Project

    out = Path(out).resolve()
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"error: {out} is not empty; the bench starts from a new folder")
    out.mkdir(parents=True, exist_ok=True)
    pki = out / "pki"
    if not (pki / "ca" / "ca.pem").exists():
        init_pki(pki, (department,))
    if not (out / "project.secret").exists():
        new_secret(out / "project.secret")
    database = database or str(out / "coordinator.sqlite")
    with serving_coordinator(out, pki, database) as (coordinator, address, audit_key):
        with Operator.connect(address, pki) as op:
            op.create_project(Project.default("pilot", departments=(department,), reference_date="2025-06-30"))
        officer_witnesses(address, pki, vkey_path(audit_key))
        config = write_agent_config(out, department, Path(extract), address, {}, log_key=vkey_path(audit_key),
                                    project="pilot", batch_size=batch_size)
        keyfile = config.parent / f"{department}.refkey"
        if not keyfile.exists():
            from agents.refs import new_key
            new_key(keyfile)
        start = time.monotonic()
        done = subprocess.run(["/usr/bin/time", "-v", *FEDLINK, "agent", "upload", "--config", str(config),
                               "--quiet", "--json"], capture_output=True, text=True)
        seconds = time.monotonic() - start
        if done.returncode != 0:
            raise RuntimeError(f"the upload failed ({done.returncode}): {done.stderr[-3000:]}")
        peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
        summary = json.loads(done.stdout.strip().splitlines()[-1])
        figures = {"extract": str(extract), "records": int(summary.get("record_count", 0)),
                   "agent_peak_rss_mib": round(int(peak.group(1)) / 1024, 1), "upload_seconds": round(seconds, 1),
                   "coordinator_peak_rss_mib": round(_memory_mib(coordinator.pid), 1), "batch_size": batch_size,
                   "database": "postgresql" if "://" in database else "sqlite"}
        (out / "agent_memory.json").write_text(json.dumps(figures, indent=2))
        return figures


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("--extract", type=Path, required=True)
    p.add_argument("--department", default="population")
    p.add_argument("--database", default=None)
    p.add_argument("--batch-size", type=int, default=2000)
    a = p.parse_args(argv)
    print(json.dumps(measure(a.out, a.extract, a.department, a.database, a.batch_size), indent=2))


if __name__ == "__main__":
    main()
