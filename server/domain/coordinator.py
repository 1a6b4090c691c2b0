"""The coordinator the server holds: one service per concern over one shared
context, started and closed as a whole."""
from __future__ import annotations

from server.audit import AuditLog
from server.domain.access import Context
from server.domain.approvals import Approvals
from server.domain.audit_reads import AuditReads
from server.domain.listings import Listings
from server.domain.projects import Projects
from server.domain.retention import DEFAULT_KEEP_RUNS
from server.domain.reviews import Reviews
from server.domain.runs import Runs
from server.domain.schedules import Schedules
from server.domain.uploads import Uploads
from server.engine import LocalEngine
from server.limits import DEFAULT_RUN_STALL_S, Limits
from server.ownership import Ownership
from server.schedule import Scheduler
from server.store import Store


class Coordinator:
    def __init__(self, store: Store, audit: AuditLog, ownership: Ownership, engine=None, limits: Limits | None = None,
                 keep_runs: int = DEFAULT_KEEP_RUNS, run_stall_s: float = DEFAULT_RUN_STALL_S, incremental: bool = True):
        self.context = Context(store, audit, engine or LocalEngine(), limits or Limits(), ownership, keep_runs=keep_runs,
                               run_stall_s=run_stall_s, incremental=incremental)
        self.context.bursts.start()
        self.projects = Projects(self.context)
        self.uploads = Uploads(self.context)
        self.runs = Runs(self.context)
        self.schedules = Schedules(self.context, self.runs)
        self.reviews = Reviews(self.context)
        self.approvals = Approvals(self.context)
        self.audit = AuditReads(self.context)
        self.listings = Listings(self.context)

    @property
    def store(self) -> Store:
        return self.context.store

    @property
    def engine(self):
        return self.context.engine

    def start_scheduler(self, poll: float) -> None:
        """Runs on a cadence (server/schedule.py): the schedules are in the store, so they survive a restart."""
        self.schedules.scheduler = Scheduler(self.schedules.fire_due, poll=poll,
                                             on_step=self.schedules.clock_stepped).start()
        if not self.context.ownership.exclusive:  # PostgreSQL: a lease to renew, dead instances' runs to end
            self.context.ownership.start_heartbeat(self.runs.recover_interrupted)

    def close(self, timeout: float = 30.0) -> None:
        """Stop starting runs, let the running ones finish, then release the engine's workers."""
        if self.schedules.scheduler is not None:
            self.schedules.scheduler.stop(timeout)
        self.runs.join(timeout)
        self.context.bursts.stop()
        self.engine.close()
        self.context.ownership.release()
