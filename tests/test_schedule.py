"""Runs on a cadence: when a run is due (pure functions), and a real
coordinator whose scheduler thread starts a due run, audited, with the
schedule kept in the store across a restart."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import grpc
import pytest

from dbutil import dbapi, execute, scalar

from agents.client import Agent
from agents.config import load_config
from server.schedule import ScheduleError, first_due, from_iso, iso, latest_passed, next_due, parse_cadence


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


@pytest.mark.parametrize("every, day, start, after, expected", [
    # monthly on the 5th at 02:00 UTC
    ("1mo", 5, "2025-06-10", "2025-06-10T00:00", "2025-07-05T02:00:00Z"),
    ("1mo", 5, "2025-06-01", "2025-06-05T01:59", "2025-06-05T02:00:00Z"),
    ("1mo", 5, "2025-06-01", "2025-06-05T02:00", "2025-07-05T02:00:00Z"),
    ("1mo", 28, "2025-01-01", "2025-01-28T03:00", "2025-02-28T02:00:00Z"),
    ("1mo", 1, "2025-11-01", "2025-12-01T02:00", "2026-01-01T02:00:00Z"),  # across the year
    # quarterly, counted from the start month
    ("3mo", 1, "2025-02-15", "2025-02-15T00:00", "2025-05-01T02:00:00Z"),
    ("3mo", 1, "2025-02-15", "2025-05-01T02:00", "2025-08-01T02:00:00Z"),
    # each semester: March and September
    ("semester", 1, "2025-04-01", "2025-04-01T00:00", "2025-09-01T02:00:00Z"),
    ("semester", 1, "2025-04-01", "2025-09-01T02:00", "2026-03-01T02:00:00Z"),
    # every 14 days / 1 week from the start date
    ("14d", 0, "2025-06-01", "2025-06-01T02:00", "2025-06-15T02:00:00Z"),
    ("1w", 0, "2025-06-02", "2025-06-03T00:00", "2025-06-09T02:00:00Z"),
])
def test_next_due(every, day, start, after, expected):
    assert iso(next_due(parse_cadence(every, day, "02:00", start), utc(after))) == expected


def test_the_first_run_is_on_or_after_the_start_date():
    assert iso(first_due(parse_cadence("1mo", 1, "06:30", "2025-07-01"))) == "2025-07-01T06:30:00Z"
    assert iso(first_due(parse_cadence("1mo", 1, "06:30", "2025-07-02"))) == "2025-08-01T06:30:00Z"


def test_after_downtime_one_run_for_the_latest_missed_occurrence():
    c = parse_cadence("1mo", 1, "02:00", "2025-01-01")
    missed_since = from_iso("2025-02-01T02:00:00Z")
    now = utc("2025-05-17T12:00")
    assert iso(latest_passed(c, missed_since, now)) == "2025-05-01T02:00:00Z"
    assert iso(next_due(c, now)) == "2025-06-01T02:00:00Z"


@pytest.mark.parametrize("every, day, at, start, message", [
    ("monthly", 1, "", "", "every: 'monthly' is not a cadence"),
    ("0mo", 1, "", "", "every: '0mo' is not a cadence"),
    ("1mo", 31, "", "", "day: 31 must be 1-28"),
    ("14d", 5, "", "", "day: a cadence of 14d runs every so many days"),
    ("1mo", 1, "25:00", "", "at: '25:00' is not a UTC time"),
    ("1mo", 1, "", "2025-13-01", "start: '2025-13-01' is not an ISO date"),
])
def test_a_bad_schedule_is_refused_naming_the_field(every, day, at, start, message):
    with pytest.raises(ScheduleError, match=message):
        parse_cadence(every, day, at, start)


def _upload_all(agent_config, departments=("population", "education", "civil_affairs")):
    for d in departments:
        with Agent(load_config(agent_config(d)), show_progress=False) as agent:
            agent.upload()


def test_a_due_schedule_starts_a_run_and_survives_a_restart(pki, tmp_path, agent_config, coordinator, operator,
                                                             project):
    from fedlink.operator import Operator
    from fedlink.pki import credentials_for
    from server.serve import start

    _upload_all(agent_config)
    with pytest.raises(grpc.RpcError) as e:
        operator.set_schedule("pilot", "fortnightly")
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "every: 'fortnightly'" in e.value.details()

    # Monthly on the 1st, from a start date in the past, asked to start now: the occurrence is due now.
    s = operator.set_schedule("pilot", "1mo", day=1, at="02:00", start="2025-06-01", start_now=True)
    assert (s.every, s.day, s.at, s.next_due) == ("1mo", 1, "02:00", "2025-06-01T02:00:00Z")
    c = coordinator.coordinator
    run_id = _wait_for_scheduled_run(c)
    assert operator.watch(run_id) == "done"
    s = operator.schedule("pilot")
    assert s.last_run_id == run_id and s.next_due > iso(datetime.now(timezone.utc)) and not s.last_error
    with dbapi(coordinator.database) as db:
        started = [json.loads(b) for (b,) in db.execute(
            "select body from audit_events where kind = 'run.start' order by seq").fetchall()]
        kinds = [k for (k,) in db.execute("select kind from audit_events where kind like 'schedule.%'").fetchall()]
    assert started[-1]["actor"] == "coordinator:scheduler" and started[-1]["details"]["run_id"] == run_id
    assert started[-1]["details"]["every"] == "1mo"
    assert "schedule.set" in kinds

    # A new coordinator on the same database finds the schedule; moved due again, it starts the next run.
    coordinator.stop(grace=2)
    execute(coordinator.database, "update schedules set next_due = '2025-07-01T02:00:00Z'")
    again = start("127.0.0.1:0", coordinator.database, credentials=credentials_for(pki, "coordinator"),
                  audit_key=coordinator.audit_key)
    try:
        second = _wait_for_scheduled_run(again.coordinator, after=run_id)
        with Operator.connect(f"127.0.0.1:{again.port}", pki) as op:
            assert op.watch(second) == "done"
            assert op.schedule("pilot").last_run_id == second
            assert op.set_schedule("pilot", "").every == ""  # removed
    finally:
        again.stop(grace=2)
    assert scalar(coordinator.database, "select count(*) from schedules") == 0
    assert scalar(coordinator.database, "select count(*) from audit_events where kind = 'schedule.clear'") == 1


def _wait_for_scheduled_run(c, after: str = "") -> str:
    """The scheduler thread starts the run; wait for it to be recorded (pytest-timeout bounds the wait)."""
    import time

    from sqlalchemy import select

    from server import store as t

    while True:
        with c.store.read() as conn:
            run = conn.execute(select(t.schedules.c.last_run_id)).scalar()
        if run and run != after:
            return run
        c.schedules.scheduler.wake()
        time.sleep(0.05)


def test_a_due_run_with_nothing_uploaded_is_skipped_and_says_why(coordinator, operator, project):
    c = coordinator.coordinator
    c.schedules.scheduler.stop()  # this test plays the clock itself
    operator.set_schedule("pilot", "1mo", day=1, start="2025-06-01", start_now=True)
    assert c.schedules.fire_due(utc("2025-06-01T02:00")) == []
    s = operator.schedule("pilot")
    assert "no committed upload" in s.last_error and s.last_due == "2025-06-01T02:00:00Z"
    assert s.next_due == "2025-07-01T02:00:00Z"
    assert scalar(coordinator.database, "select count(*) from audit_events where kind = 'schedule.skipped'") == 1


def test_only_operators_set_schedules(agent_config, coordinator, project):
    from fedlink.v1 import coordinator_pb2 as pb
    from fedlink.v1 import coordinator_pb2_grpc as pb_grpc

    with Agent(load_config(agent_config("population")), show_progress=False) as agent:
        stub = pb_grpc.CoordinatorStub(agent.channel)
        with pytest.raises(grpc.RpcError) as e:
            stub.SetSchedule(pb.SetScheduleRequest(project_id="pilot", every="1mo"), timeout=30)
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_a_time_already_past_today_means_the_next_occurrence(agent_config, coordinator, operator, project):
    """Set at any time after 00:00 UTC, a daily 00:00 schedule from today waits for
    tomorrow; only --start-now runs today's at once."""
    _upload_all(agent_config)
    now = datetime.now(timezone.utc)
    s = operator.set_schedule("pilot", "1d", at="00:00")
    tomorrow = (now.date() + timedelta(days=1)).isoformat()
    assert s.next_due == f"{tomorrow}T00:00:00Z"
    c = coordinator.coordinator
    c.schedules.scheduler.wake()
    assert c.schedules.fire_due(datetime.now(timezone.utc)) == []  # nothing is due: nothing starts
    assert scalar(coordinator.database, "select count(*) from runs") == 0

    s = operator.set_schedule("pilot", "1d", at="00:00", start_now=True)
    assert s.next_due == f"{now.date().isoformat()}T00:00:00Z"
    run_id = _wait_for_scheduled_run(c)
    assert operator.watch(run_id) == "done"
    assert operator.schedule("pilot").next_due == f"{tomorrow}T00:00:00Z"
    with dbapi(coordinator.database) as db:
        bodies = [json.loads(b)["details"] for (b,) in db.execute(
            "select body from audit_events where kind = 'schedule.set' order by seq").fetchall()]
    assert [b["start_now"] for b in bodies] == [False, True]


def test_the_cli_says_when_the_first_run_is(coordinator, project, pki, tmp_path):
    import subprocess
    import sys

    def schedule(*args):
        return subprocess.run([sys.executable, "-m", "fedlink.cli", "project", "schedule", "pilot", "--every", "1d",
                               "--at", "00:00", "--coordinator", coordinator.address, "--pki", str(pki), "--json",
                               *args], capture_output=True, text=True, timeout=60, cwd=tmp_path)

    later, now = schedule(), schedule("--start-now")
    today = datetime.now(timezone.utc).date()
    assert later.returncode == 0 and json.loads(later.stdout)["next_due"] == f"{today + timedelta(days=1)}T00:00:00Z"
    assert now.returncode == 0 and json.loads(now.stdout)["next_due"] == f"{today}T00:00:00Z"
