"""Runs: queued by an operator (or a schedule) on the departments' current
uploads, executed on a worker thread, watched phase by phase, and read back as
a report of suppressed counts."""
from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field, fields
from datetime import date
from typing import Iterator

from fedlink.identity import Identity
from fedlink.rules import IdleRule
from fedlink.schema import Project
from server import faults
from server import queries as q
from server.domain import retention
from server.domain.progress import FINAL_STATES, PhaseClock, RunEvent, RunStatus
from server.domain.access import Context, FailedPrecondition, InvalidArgument, NotFound, existing_project, guarded
from server.domain.uploads import ExtractQuality
from server.outages import store_problem
from server.pipeline import execute_run
from server.metrics import RUNS
from server.pipeline.report import suppress

log = logging.getLogger("fedlink.coordinator")


@dataclass(frozen=True)
class QueuedRun:
    run_id: str
    project: Project
    as_of: date
    uploads: dict[str, str]  # department -> the upload the run uses


@dataclass(frozen=True)
class CountCell:
    key: str
    count: int        # 0 when suppressed
    suppressed: bool  # fewer than k people: the count is withheld


@dataclass(frozen=True)
class UploadHealth:
    """The encoding health recorded when a department's upload was committed (server/health.py)."""

    department: str
    upload_id: str
    fill_rate: float
    fill_min: float
    fill_max: float
    empty_filters: int
    max_duplicates: int
    duplicate_limit: int
    position_min: float
    position_max: float
    chi2_per_dof: float
    constant_positions: int
    dead_positions: int
    warnings: tuple[str, ...]


@dataclass(frozen=True)
class ProbeSignals:
    """Per department and run, what probing through its own extract would leave (server/pipeline/probes.py)."""

    department: str
    records_first_seen: int
    records_short_lived: int
    flags_on_first_seen_records: int
    flags_held: int


@dataclass(frozen=True)
class PairScores:
    """One department pair's histogram of sampled best scores (server/pipeline/report.py) and its threshold."""

    pair: str
    threshold: float
    floor: float
    bin_width: float
    bins: tuple[CountCell, ...]
    below_floor: CountCell


@dataclass(frozen=True)
class Report:
    run_id: str
    state: str
    persons: int = 0
    suppression_k: int = 0
    records_per_department: tuple[CountCell, ...] = ()
    linked_pairs_per_department_pair: tuple[CountCell, ...] = ()
    persons_by_department_count: tuple[CountCell, ...] = ()
    flags_per_need: tuple[CountCell, ...] = ()
    flags_per_status: tuple[CountCell, ...] = ()
    flags_per_need_tier: tuple[CountCell, ...] = ()  # "need/tier": each flagged person at their need's tier
    absence_uncertain: tuple[CountCell, ...] = ()
    threshold_per_department_pair: dict[str, float] = field(default_factory=dict)
    outcomes_per_rule: tuple[CountCell, ...] = ()  # caseworkers' review feedback, "rule/outcome"
    encoding_health: tuple[UploadHealth, ...] = ()  # of each department's upload the run used
    idle_rules: tuple[IdleRule, ...] = ()  # rules that could not fire on the uploads the run used
    upload_quality: tuple[ExtractQuality, ...] = ()  # the agents' data-quality summaries of those uploads
    probe_signals: tuple[ProbeSignals, ...] = ()  # per department: what probing through its extract would leave
    pair_scores: tuple[PairScores, ...] = ()  # per department pair, from runs that recorded them
    retention: retention.Retention | None = None  # what the store held after the run, and what it deleted


# The report's tables of counts, each stored by the run as a list of cells.
_CELL_TABLES = tuple(f.name for f in fields(Report) if f.type == "tuple[CountCell, ...]")


class Runs:
    def __init__(self, ctx: Context):
        self.ctx = ctx
        self._status: dict[str, RunStatus] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._closing = threading.Event()  # the coordinator stops: outcome retries give up
        self._watchdog: threading.Thread | None = None

    @guarded("StartRun", "operator")
    def start(self, who: Identity, project_id: str, as_of: str = "", *, wait: bool = False) -> str:
        try:
            day = date.fromisoformat(as_of) if as_of else None
        except ValueError:
            raise InvalidArgument(f"as_of {as_of[:20]!r} is not an ISO date (YYYY-MM-DD)") from None
        with self.ctx.store.write() as conn:
            if day is None:  # the date the project's agents took ages and periods at, else today
                reference = existing_project(conn, project_id).reference_date
                day = date.fromisoformat(reference) if reference else date.today()
            queued = self.queue(conn, str(who), project_id, day)
        return self.launch(queued, wait=wait)

    def queue(self, conn, actor: str, project_id: str, day: date, **why) -> QueuedRun:
        """Record a queued run on the departments' current uploads, in the caller's transaction."""
        project = existing_project(conn, project_id)
        used = q.committed_uploads(conn, project_id)
        if not used:
            raise FailedPrecondition(f"project {project_id} has no committed upload yet")
        running = q.active_run(conn, project_id)
        if running:
            raise FailedPrecondition(f"run {running} of project {project_id} is still going")
        run_id = uuid.uuid4().hex[:16]
        owner = self.ctx.ownership.instance_id
        number = q.insert_run(conn, run_id, project_id, actor, day.isoformat(), used, owner)
        self.ctx.store.audit(conn, actor, "run.start", project_id=project_id, run_id=run_id, number=number, owner=owner,
                             as_of=day.isoformat(), uploads=used, threshold=project.schema.threshold,
                             auto_threshold=project.schema.auto_threshold, engine=self.ctx.engine.name, **why)
        log.info("run %s of %s started by %s, as of %s, on the uploads of %s", run_id, project_id, actor,
                 day.isoformat(), ", ".join(sorted(used)),
                 extra={"event": "run.start", "run_id": run_id, "project_id": project_id, "actor": actor,
                        "as_of": day.isoformat(), "departments": sorted(used), "engine": self.ctx.engine.name})
        return QueuedRun(run_id, project, day, used)

    def launch(self, run: QueuedRun, *, wait: bool = False) -> str:
        status = RunStatus(run.run_id, run.project.project_id)
        status.publish("queued", "queued", 0, 0, "")
        with self._lock:
            self._status[run.run_id] = status
            if self._watchdog is None:
                self._watchdog = threading.Thread(target=self._watch_stalls, name="run-watchdog", daemon=True)
                self._watchdog.start()
        worker = threading.Thread(target=self._execute, args=(run, status), name=f"run-{run.run_id}", daemon=True)
        self._threads.append(worker)
        worker.start()
        if wait:
            worker.join()
        return run.run_id

    def _execute(self, run: QueuedRun, status: RunStatus) -> None:
        phases = PhaseClock(run)
        try:
            report, final, error = self._compute(run, status, phases)
        except BaseException as e:  # noqa: BLE001 - the thread must not end with its run left "running"
            report, final, error = None, "failed", f"the run's worker ended: {type(e).__name__}: {e}"
        if not self._record_outcome(run, status, final, report, error):
            return
        phases.end(final, (report or {}).get("persons"), error)
        if report is not None:
            self._retain(run, report)
        status.publish(final, final, 0, 0, error or "finished")

    def _watch_stalls(self) -> None:
        """Fail a run whose worker is alive but reports nothing (a hung engine, a store call that
        never returns) for `run_stall_s`: otherwise it stays "running" for ever and holds its project."""
        limit = self.ctx.run_stall_s
        while not self._closing.wait(min(5.0, limit / 4)):
            for status in list(self._status.values()):
                phase = status.stalled(limit)
                if phase is None:
                    continue
                try:
                    self._fail_stalled(status, phase, limit)
                except Exception as e:  # the store is down: the next round tries again
                    log.warning("run %s stalled in phase %s, but failing it did not reach the store (%s)",
                                status.run_id, phase, store_problem(e, self.ctx.store.name) or e)

    def _fail_stalled(self, status: RunStatus, phase: str, limit: float) -> None:
        error = (f"no progress in phase {phase} for {limit:g} s: the run's worker is stuck (a hung engine or store "
                 "call); start the run again, and see the coordinator's log (--run-stall-seconds sets the limit)")
        with self.ctx.store.write() as conn:
            if not q.set_run_state(conn, status.run_id, "failed", owner=self.ctx.ownership.instance_id, error=error):
                return  # it ended, or was recovered, meanwhile
            q.discard_run_results(conn, status.run_id)  # stored by a worker stuck after its store phase
            self.ctx.store.audit(conn, "coordinator", "run.failed", project_id=status.project_id,
                                 run_id=status.run_id, persons=None, error=error, stalled_phase=phase)
        log.error("run %s of %s failed: %s", status.run_id, status.project_id, error,
                  extra={"event": "run.stalled", "run_id": status.run_id, "project_id": status.project_id,
                         "phase": phase})
        RUNS.labels("failed").inc()
        status.publish("failed", "failed", 0, 0, error)

    def _compute(self, run: QueuedRun, status: RunStatus, phases: PhaseClock) -> tuple[dict | None, str, str]:

        def progress(phase: str, done: int, total: int, message: str = "") -> None:
            status.publish("running", phase, done, total, message)
            if phases.enter(phase):
                faults.pause(f"run.{phase}")

        try:
            with self.ctx.store.write() as conn:
                q.set_run_state(conn, run.run_id, "running")
            report = execute_run(self.ctx.store, run.project, run.run_id, run.as_of, run.uploads, self.ctx.engine,
                                 progress, incremental=self.ctx.incremental)
            faults.pause("run.finishing")
            return report, "done", ""
        except Exception as e:  # the run fails cleanly: recorded, watchers told, nothing half-written
            log.exception("run %s of %s failed", run.run_id, run.project.project_id,
                          extra={"event": "run.error", "run_id": run.run_id, "project_id": run.project.project_id})
            return None, "failed", store_problem(e, self.ctx.store.name) or f"{type(e).__name__}: {e}"

    def _record_outcome(self, run: QueuedRun, status: RunStatus, final: str, report: dict | None,
                        error: str) -> bool:
        """Mark the run done or failed, retrying until the store takes it (a
        database restart, an outage, a full disk): a run never stays "running"
        because its last write failed. Watchers see each retry. False when the
        run was ended meanwhile (the stall watchdog, another coordinator's
        recovery): this late outcome is discarded."""
        delay = 0.5
        while True:
            try:
                with self.ctx.store.write() as conn:
                    if not q.set_run_state(conn, run.run_id, final, owner=self.ctx.ownership.instance_id,
                                           report=report, error=error or None):
                        log.warning("run %s was ended meanwhile (failed as stalled, or recovered by another "
                                    "coordinator); its late outcome here (%s) is discarded", run.run_id, final)
                        return False
                    self.ctx.store.audit(conn, "coordinator", f"run.{final}", project_id=run.project.project_id,
                                         run_id=run.run_id, persons=(report or {}).get("persons"),
                                         error=error or None, probe_signals=(report or {}).get("probe_signals"))
                return True
            except Exception as e:
                why = store_problem(e, self.ctx.store.name) or f"{type(e).__name__}: {e}"
                if self._closing.is_set():
                    log.error("run %s: its outcome (%s) was not recorded before the stop (%s); the next start "
                              "marks it failed", run.run_id, final, why)
                    return False
                log.warning("run %s: recording its outcome (%s) failed (%s); retrying in %.1f s",
                            run.run_id, final, why, delay)
                status.publish("running", "store", 0, 0, f"recording the outcome ({final}): {why}; retrying")
                self._closing.wait(delay)
                delay = min(delay * 2, 30.0)

    def _retain(self, run: QueuedRun, report: dict) -> None:
        """Retention after a finished run (server/domain/retention.py); its figures join the run's report.
        A failure leaves the run done and is logged and audited, never silent."""
        try:
            with self.ctx.store.write() as conn:
                held = retention.purge(self.ctx.store, conn, run.project.project_id, self.ctx.keep_runs)
                q.set_run_state(conn, run.run_id, "done", report={**report, "retention": held.to_json()})
            if held.records_purged:
                retention.reclaim(self.ctx.store)
        except Exception as e:
            log.exception("retention after run %s failed; nothing was deleted", run.run_id)
            with self.ctx.store.write() as conn:
                self.ctx.store.audit(conn, "coordinator", "retention.failed", project_id=run.project.project_id,
                                     run_id=run.run_id, error=f"{type(e).__name__}: {str(e)[:300]}")

    @staticmethod
    def _row(conn, run_id: str):
        row = q.run(conn, run_id)
        if row is None:
            raise NotFound(f"run {run_id!r} does not exist")
        return row

    @guarded("WatchRun", "operator")
    def watch(self, who: Identity, run_id: str, *, poll: float = 1.0) -> Iterator[RunEvent]:
        with self.ctx.store.read() as conn:
            row = self._row(conn, run_id)
        with self.ctx.store.write() as conn:
            self.ctx.store.audit(conn, str(who), "run.watch", project_id=row.project_id, run_id=run_id)
        status = self._status.get(run_id)
        if status is None:  # a run from before a restart: its state is all there is
            return iter([RunEvent(run_id, row.state, row.state, 0, 0, row.error or "")])
        return self._follow(status, poll)

    @staticmethod
    def _follow(status: RunStatus, poll: float) -> Iterator[RunEvent]:
        sent, last = 0, None
        while True:
            with status.cond:
                def stale():  # the last event handed out was updated since
                    return sent > 0 and status.events[sent - 1] != last
                if len(status.events) <= sent and not stale():
                    status.cond.wait(timeout=poll)
                # The final counts of the phase last sent, then every newer phase.
                batch = ([status.events[sent - 1]] if stale() else []) + status.events[sent:]
                sent = len(status.events)
            for event in batch:
                last = event
                yield event
                if event.state in FINAL_STATES:
                    return

    def wait(self, run_id: str, timeout: float | None = None) -> str:
        """Wait for a run's worker to end; its state."""
        for th in list(self._threads):
            if th.name == f"run-{run_id}":
                th.join(timeout)
        with self.ctx.store.read() as conn:
            return self._row(conn, run_id).state

    def join(self, timeout: float) -> None:
        """Let the running runs end (the coordinator is stopping): an outcome still unrecorded after
        `timeout` is given up, and the next start fails its run."""
        deadline = time.monotonic() + timeout
        for th in self._threads:
            th.join(max(0.0, deadline - time.monotonic()))
        self._closing.set()
        for th in self._threads:
            th.join(5)

    @guarded("GetReport", "operator", "officer")
    def report(self, who: Identity, run_id: str) -> Report:
        with self.ctx.store.read() as conn:
            row = self._row(conn, run_id)
            feedback = q.outcome_counts(conn, row.project_id)
            health = _health_of_uploads(conn, row.project_id, row.uploads or {})
            quality = _quality_of_uploads(conn, row.project_id, row.uploads or {})
        with self.ctx.store.write() as conn:
            self.ctx.store.audit(conn, str(who), "report.read", project_id=row.project_id, run_id=run_id)
        stored = row.report or {}
        cells = {name: tuple(CountCell(**c) for c in stored.get(name, [])) for name in _CELL_TABLES}
        cells["outcomes_per_rule"] = tuple(CountCell(**c) for c in suppress(feedback, stored.get("suppression_k", 5)))
        return Report(run_id, row.state, stored.get("persons", 0), stored.get("suppression_k", 0),
                      threshold_per_department_pair=stored.get("threshold_per_department_pair", {}),
                      encoding_health=health, upload_quality=quality, pair_scores=_pair_scores(stored),
                      idle_rules=tuple(
                          IdleRule(i["rule"], i["need"], tuple(tuple(m) for m in i["missing"]))
                          for i in stored.get("idle_rules", [])), **cells,
                      probe_signals=tuple(ProbeSignals(d, **v) for d, v in stored.get("probe_signals", {}).items()),
                      retention=retention.Retention(**stored["retention"]) if "retention" in stored else None)

    def recover_interrupted(self) -> list[str]:
        """A run left queued or running by a coordinator instance that is gone
        (a crash, a kill, a lost lease: server/ownership.py) was cut off. Its
        links and flags are written in one transaction at its end, so none of
        them were committed, or, if the process died after storing them but
        before marking the run done, they are removed; the run is marked failed
        (an audit event says so) and the operator starts it again. A run whose
        owner is alive, this instance or another sharing the database, is
        never touched. Called at start and, on PostgreSQL, at every heartbeat."""
        message = "interrupted: the coordinator stopped during the run; start the run again"
        with self.ctx.store.write() as conn:
            live = self.ctx.ownership.live_owners(conn)
            stale = [r for r in q.active_runs(conn) if r.owner not in live]
            for r in stale:
                q.discard_run_results(conn, r.run_id)
                q.set_run_state(conn, r.run_id, "failed", error=message)
                self.ctx.store.audit(conn, "coordinator", "run.failed", project_id=r.project_id, run_id=r.run_id,
                                     persons=None, error=message, was=r.state, owner=r.owner)
        return [r.run_id for r in stale]


def _pair_scores(stored: dict) -> tuple[PairScores, ...]:
    thresholds = stored.get("threshold_per_department_pair", {})
    return tuple(PairScores(pair, thresholds.get(pair, 0.0), h["floor"], h["bin_width"],
                            tuple(CountCell(**c) for c in h["bins"]), CountCell(**h["below_floor"]))
                 for pair, h in sorted(stored.get("score_histogram_per_department_pair", {}).items()))


def _health_of_uploads(conn, project_id: str, upload_ids: dict[str, str]) -> tuple[UploadHealth, ...]:
    """The recorded health of each department's upload (its accepted upload.health audit event)."""
    wanted = {u: d for d, u in upload_ids.items()}
    figures = [f.name for f in fields(UploadHealth) if f.name != "department"]
    found = {}
    for body in q.audit_bodies(conn, project_id, "upload.health"):
        details = json.loads(body)["details"]
        if details["upload_id"] in wanted and details["accepted"]:
            found[details["upload_id"]] = UploadHealth(
                department=wanted[details["upload_id"]],
                **{k: tuple(details[k]) if k == "warnings" else details[k] for k in figures})
    return tuple(found[u] for u in sorted(found, key=lambda u: wanted[u]))


def _quality_of_uploads(conn, project_id: str, upload_ids: dict[str, str]) -> tuple[ExtractQuality, ...]:
    """The data-quality summary each department's agent sent with the upload (its upload.begin audit event)."""
    wanted = {u: d for d, u in upload_ids.items()}
    found = {}
    for body in q.audit_bodies(conn, project_id, "upload.begin"):
        details = json.loads(body)["details"]
        if details["upload_id"] in wanted and details.get("quality"):
            found[details["upload_id"]] = ExtractQuality.from_details(details["quality"], wanted[details["upload_id"]],
                                                                      details["upload_id"])
    return tuple(found[u] for u in sorted(found, key=lambda u: wanted[u]))
