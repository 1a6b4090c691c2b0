"""Load, bounded: a real coordinator process and 20 real agent processes
uploading at once over loopback mTLS; nothing lost (counts and digests of
every upload checked against what each agent sent). The figures for the docs
come from the same code at a larger size: `python -m bench.load OUT`."""
from __future__ import annotations

from bench.load import run_load
from dbutil import new_database


def test_twenty_agents_upload_at_once_and_nothing_is_lost(tmp_path):
    figures = run_load(tmp_path / "load", agents=20, persons=120, database=str(new_database(tmp_path)),
                       batch_size=50, limit_s=280)
    assert figures["agents"] == 20 and figures["lost"] == 0
    assert figures["records"] > 20 * 50
    print(f"\nload: {figures}")
