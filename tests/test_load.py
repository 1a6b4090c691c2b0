"""Load, bounded: a real coordinator process and 20 real agent processes
uploading at once over loopback mTLS; what was lost is counted per upload
(records the agent sent against records the coordinator stored, and the
upload's state, count and digest). The figures for the docs come from the
same code at a larger size: `python -m bench.load OUT`."""
from __future__ import annotations

import json

from bench.load import ack_gaps, count_lost, record_digest, run_load, stored_against_sent
from dbutil import execute, new_database


def test_lost_records_are_counted_not_assumed():
    sent = [record_digest(bytes([i]), b"\x0f" * 8) for i in range(5)]
    assert count_lost(sent, sent) == 0
    assert count_lost(sent, sent[1:]) == 1
    # A duplicate stored record does not stand in for a missing one.
    assert count_lost(sent, sent[1:] + sent[2:3]) == 1
    # The filter is part of what must arrive: a changed filter is a lost record.
    assert count_lost(sent, sent[1:] + [record_digest(bytes([0]), b"\xf0" * 8)]) == 1


def test_ack_gaps_are_the_waits_with_nothing_acknowledged():
    assert ack_gaps([10.5, 12.0, 11.0]) == [0.5, 1.0]
    assert ack_gaps([10.5]) == ack_gaps([]) == []


def test_twenty_agents_upload_at_once_and_nothing_is_lost(tmp_path):
    database = str(new_database(tmp_path))
    figures = run_load(tmp_path / "load", agents=20, persons=120, database=database, batch_size=50, limit_s=280)
    uploads = figures["per_upload"]
    assert figures["agents"] == 20 and len(uploads) == 20
    assert all(u["sent"] > 0 and u["stored"] == u["sent"] and u["upload_matches"] for u in uploads.values())
    assert figures["lost"] == 0 and figures["uploads_differing"] == 0
    assert figures["records"] == sum(u["sent"] for u in uploads.values()) > 20 * 50
    # Every acknowledgement of every agent is a gap counted, and no gap is longer than that agent's upload.
    for result in (json.loads(p.read_text()) for p in (tmp_path / "load").glob("agent-*/result.json")):
        assert len(result["ack_gaps_s"]) == len(result["batch_waits_s"]) - 1
        assert all(gap >= 0 for gap in result["ack_gaps_s"])
        assert result["first_ack_s"] + sum(result["ack_gaps_s"]) <= result["end"] - result["start"]
    # (several batches of one agent can be acknowledged by one round, so a gap can be 0)
    assert 0 <= figures["ack_gap_p50_s"] <= figures["ack_gap_max_s"] == figures["worst_agent_max_ack_gap_s"] > 0
    assert len(figures["commits_s"]) == 20 and figures["coordinator_rss_trace"]
    print(f"\nload: {({k: v for k, v in figures.items() if k != 'per_upload'})}")

    # The same count on the same store sees a record removed and an upload altered.
    sent = [json.loads(p.read_text()) for p in sorted((tmp_path / "load").glob("agent-*/result.json"))]
    victim = sent[0]["upload_id"]
    execute(database, "delete from records where id = (select min(id) from records where upload_id = :u)", u=victim)
    execute(database, "update uploads set record_count = record_count - 1 where upload_id = :u", u=victim)
    recounted = stored_against_sent(database, sent)
    damaged = recounted[f"{sent[0]['project']}/{sent[0]['department']}"]
    assert damaged["lost"] == 1 and not damaged["upload_matches"]
    assert sum(u["lost"] for u in recounted.values()) == 1
