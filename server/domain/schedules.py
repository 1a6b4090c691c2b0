"""Schedules: a project's run cadence (server/schedule.py), set by an
operator, and the runs the scheduler thread starts when one falls due."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone

from fedlink.identity import Identity
from server import queries as q
from server.domain.access import Context, DomainError, InvalidArgument, existing_project, guarded
from server.domain.runs import Runs
from server.schedule import ScheduleError, first_due, from_iso, iso, latest_passed, next_due, parse_cadence

SCHEDULER = "coordinator:scheduler"
log = logging.getLogger("fedlink.coordinator")


def _first_run(cadence, start_now: bool, now: datetime) -> datetime:
    """The first occurrence from the start date; one already past only when asked for."""
    first = first_due(cadence)
    return first if start_now or first > now else next_due(cadence, now)


@dataclass(frozen=True)
class ScheduleInfo:
    project_id: str
    every: str = ""        # "" when the project has no schedule
    day: int = 0
    at: str = ""
    next_due: str = ""     # ISO UTC of the next run
    last_run_id: str = ""  # the last run the schedule started
    last_due: str = ""     # the occurrence it was started for
    last_error: str = ""   # why the last due run could not start, if it could not

    @classmethod
    def of(cls, project_id: str, row) -> "ScheduleInfo":
        if row is None:
            return cls(project_id)
        return cls(project_id, row.every, row.day, row.at, row.next_due, row.last_run_id or "",
                   row.last_due or "", row.last_error or "")

    def cadence(self) -> dict:
        """What the audit events record of a schedule, before and after a change."""
        return {"every": self.every, "day": self.day, "at": self.at, "next_due": self.next_due}


class Schedules:
    scheduler = None  # the Scheduler thread, when serving (Coordinator.start_scheduler)

    def __init__(self, ctx: Context, runs: Runs):
        self.ctx = ctx
        self.runs = runs

    @guarded("SetSchedule", "operator")
    def set(self, who: Identity, project_id: str, every: str, day: int = 0, at: str = "",
            start: str = "", start_now: bool = False, *, now: datetime | None = None) -> ScheduleInfo:
        """Set (or with an empty `every`, remove) the project's cadence; audited with what it was before.
        The first run is the first occurrence from the start date that is still
        to come (today at 02:00 set at 10:00 is tomorrow's, or next month's);
        with `start_now` an occurrence already past runs at once."""
        cadence = None
        if every:
            try:
                cadence = parse_cadence(every, day, at, start)
            except ScheduleError as e:
                raise InvalidArgument(f"schedule of {project_id}: {e}") from None
        with self.ctx.store.write() as conn:
            existing_project(conn, project_id)
            before = ScheduleInfo.of(project_id, q.schedule(conn, project_id))
            if cadence is None:
                q.replace_schedule(conn, project_id, str(who))
                self.ctx.store.audit(conn, str(who), "schedule.clear", project_id=project_id,
                                     before=before.cadence())
                after = ScheduleInfo(project_id)
            else:
                first = _first_run(cadence, start_now, now or datetime.now(timezone.utc))
                q.replace_schedule(conn, project_id, str(who), every=cadence.every, day=cadence.day, at=cadence.at,
                                   start=cadence.start.isoformat(), next_due=iso(first))
                after = ScheduleInfo.of(project_id, q.schedule(conn, project_id))
                self.ctx.store.audit(conn, str(who), "schedule.set", project_id=project_id,
                                     before=before.cadence(), after=after.cadence(),
                                     start=cadence.start.isoformat(), start_now=start_now)
        log.info("schedule of %s %s by %s", project_id,
                 f"set: every {after.every}, next run due {after.next_due}" if cadence else "removed", who,
                 extra={"event": "schedule.set" if cadence else "schedule.clear", "project_id": project_id,
                        "next_due": after.next_due})
        if self.scheduler is not None:
            self.scheduler.wake()  # a schedule that is already due starts now, not at the next poll
        return after

    @guarded("GetSchedule", "operator", "officer")
    def get(self, who: Identity, project_id: str) -> ScheduleInfo:
        with self.ctx.store.write() as conn:
            existing_project(conn, project_id)
            row = q.schedule(conn, project_id)
            self.ctx.store.audit(conn, str(who), "schedule.read", project_id=project_id)
        return ScheduleInfo.of(project_id, row)

    def fire_due(self, now: datetime) -> list[str]:
        """Start the runs that are due at `now` (the scheduler thread calls this).
        Claiming an occurrence and queueing its run are one write transaction,
        so two coordinators on one database never start the same run twice."""
        with self.ctx.store.read() as conn:
            if not self.ctx.ownership.runs_schedules(conn):
                return []  # another coordinator on this database holds the oldest lease: it fires them
            due = q.due_projects(conn, iso(now))
        started = []
        for project_id in due:
            queued = self._fire_one(project_id, now)
            if queued:
                started.append(self.runs.launch(queued))
        return started

    def clock_stepped(self, seconds: float) -> None:
        """The wall clock moved `seconds` (positive: ahead) from the scheduler's steady time: audited."""
        with self.ctx.store.write() as conn:
            self.ctx.store.audit(conn, SCHEDULER, "clock.stepped", direction="ahead" if seconds > 0 else "back",
                                 seconds=round(seconds, 3), kept="schedules follow the time kept since the start")

    def _fire_one(self, project_id: str, now: datetime):
        with self.ctx.store.write() as conn:
            row = q.due_schedule(conn, project_id, iso(now))
            if row is None or q.active_run(conn, project_id):
                return None  # taken by another coordinator, or a run is still going: try again next tick
            cadence = parse_cadence(row.every, row.day, row.at, row.start)
            occurrence = latest_passed(cadence, from_iso(row.next_due), now)
            try:
                queued = self.runs.queue(conn, SCHEDULER, project_id, occurrence.date(),
                                         scheduled_for=iso(occurrence), every=row.every)
                error = None
            except DomainError as e:  # e.g. nothing uploaded yet: this occurrence is skipped, and says why
                queued, error = None, e.message
                self.ctx.store.audit(conn, SCHEDULER, "schedule.skipped", project_id=project_id,
                                     scheduled_for=iso(occurrence), reason=error[:300])
                log.warning("scheduled run of %s for %s skipped: %s", project_id, iso(occurrence), error,
                            extra={"event": "schedule.skipped", "project_id": project_id,
                                   "scheduled_for": iso(occurrence)})
            if queued:
                log.info("scheduled run %s of %s started for %s", queued.run_id, project_id, iso(occurrence),
                         extra={"event": "schedule.fired", "project_id": project_id, "run_id": queued.run_id,
                                "scheduled_for": iso(occurrence)})
            q.record_schedule_fired(conn, project_id, next_due=iso(next_due(cadence, now)), last_due=iso(occurrence),
                                    last_error=error, last_run_id=queued.run_id if queued else row.last_run_id)
            return queued
