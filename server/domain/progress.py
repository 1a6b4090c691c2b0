"""A run's live progress: the events its watchers see, the time of its last
report (for the stall watchdog) and its phases' log lines and durations.
Shared by the run's worker thread and everyone watching it."""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from server.metrics import RUN_PHASE_SECONDS, RUNS

log = logging.getLogger("fedlink.coordinator")
FINAL_STATES = ("done", "failed")


@dataclass(frozen=True)
class RunEvent:
    run_id: str
    state: str      # queued, running, done, failed
    phase: str      # the run's phase (load, compare, cluster, rules, store), else its state
    done: int
    total: int
    message: str


@dataclass
class RunStatus:
    """Live progress of a run, shared between its worker thread and watchers.
    Every phase change is kept, so a watcher sees each phase however fast it
    went; within a phase a slow watcher gets the latest counts."""

    run_id: str
    project_id: str = ""
    events: list[RunEvent] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)
    progressed: float = field(default_factory=time.monotonic)  # the last report, for the stall watchdog

    def publish(self, state: str, phase: str, done: int, total: int, message: str) -> None:
        """A progress report; none after the run ended (a stuck worker woken after its run was failed)."""
        event = RunEvent(self.run_id, state, phase, done, total, message)
        with self.cond:
            if self.ended():
                return
            self.progressed = time.monotonic()
            if self.events and self.events[-1].phase == phase and self.events[-1].state == state:
                self.events[-1] = event
            else:
                self.events.append(event)
            self.cond.notify_all()

    def ended(self) -> bool:
        return bool(self.events) and self.events[-1].state in FINAL_STATES

    def stalled(self, limit: float) -> str | None:
        """The phase a run has reported nothing in for `limit` seconds, if so."""
        with self.cond:
            if self.events and not self.ended() and time.monotonic() - self.progressed > limit:
                return self.events[-1].phase
        return None


class PhaseClock:
    """A run's phases as they begin: a log line each, and each phase's duration in the metrics."""

    def __init__(self, run):  # a QueuedRun (server/domain/runs.py)
        self.run, self.began = run, time.monotonic()
        self.phase, self.since = "", self.began

    def enter(self, phase: str) -> bool:
        """Note a progress report; True when it begins a phase."""
        if phase == self.phase:
            return False
        self._close()
        self.phase, self.since = phase, time.monotonic()
        log.info("run %s: phase %s", self.run.run_id, phase,
                 extra={"event": "run.phase", "run_id": self.run.run_id, "project_id": self.run.project.project_id,
                        "phase": phase})
        return True

    def _close(self) -> None:
        if self.phase:
            RUN_PHASE_SECONDS.labels(self.phase).observe(time.monotonic() - self.since)

    def end(self, state: str, persons: int | None, error: str) -> None:
        self._close()
        RUNS.labels(state).inc()
        took = time.monotonic() - self.began
        fields = {"event": f"run.{state}", "run_id": self.run.run_id, "project_id": self.run.project.project_id,
                  "seconds": round(took, 3), "persons": persons}
        if state == "done":
            log.info("run %s of %s done in %.1f s: %s persons", self.run.run_id, self.run.project.project_id, took,
                     persons, extra=fields)
        else:
            log.error("run %s of %s failed after %.1f s: %s", self.run.run_id, self.run.project.project_id, took,
                      error, extra=fields)
