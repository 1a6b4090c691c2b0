"""README.md's "Running it by hand" runs as written: its shell blocks,
extracted from the README and executed in order by bash in an empty folder,
with `fedlink` on the PATH from this environment, make a three-department
pilot end to end (certificates, secret, coordinator in the background,
agent TOMLs, uploads, a run, the worklists). The only change made to the
text: port 50051 becomes a free one, so parallel tests do not collide."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd

from procs import free_port

README = Path(__file__).resolve().parents[1] / "README.md"
DEPARTMENTS = ("population", "civil_affairs", "medical_insurance")


def hand_run_section() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Running it by hand\n", 1)[1].split("\n## ", 1)[0]
    return "\n".join(re.findall(r"```sh\n(.*?)```", section, re.S))


def test_the_readme_hand_run_section_makes_a_pilot_with_worklists(tmp_path):
    script = hand_run_section()
    assert "fedlink agent init" in script and "--listen 0.0.0.0:50051" in script and "project.secret" in script
    script = script.replace("50051", str(free_port()))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    # Stop the background coordinator however the script ends.
    wrapped = "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n" + script + "\nwait\n"
    done = subprocess.run(["bash", "-c", wrapped], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    said = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 0, said[-4000:]
    assert "Traceback" not in said
    assert "rule school_age_not_enrolled (school dropout risk) cannot fire: education is not in the project" in said
    assert "nothing was sent" in said  # agent check
    for d in DEPARTMENTS:
        worklist = pd.read_csv(tmp_path / d / "worklist.csv", dtype=str, keep_default_na=False,
                               encoding="utf-8-sig")
        assert {"need", "explanation", "match_scores"} <= set(worklist.columns)
    flagged = sum(len(pd.read_csv(tmp_path / d / "worklist.csv", dtype=str)) for d in DEPARTMENTS)
    assert flagged > 0
    assert (tmp_path / "population" / "agent.toml").read_text().count("pki/") == 5  # relative, delivered paths (tls, audit_key, witnesses)
