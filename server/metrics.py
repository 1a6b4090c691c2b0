"""The coordinator's Prometheus metrics: RPC latency by method and status
code, records stored and held per department, run phase durations, runs by
outcome, open uploads, the audit log's size and the database errors.

Counters and histograms are process-wide and updated where things happen;
the figures held in the store (records per department, open uploads, audit
events) are read at each scrape by `StoreFigures`, so they are true after a
restart and across coordinators sharing a database. Each serving coordinator
exposes its own registry (`registry`)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select

from server import store as t

# From a 2 ms read to a ten-minute upload stream.
RPC_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
# From a second to hours: a million-record compare phase takes minutes.
PHASE_BUCKETS = (0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400)

RPC_SECONDS = Histogram("fedlink_rpc_duration_seconds", "Time to answer an RPC (a stream: until its end)",
                        ["method", "code"], buckets=RPC_BUCKETS, registry=None)
RECORDS_STORED = Counter("fedlink_records_stored_total", "Encoded records stored by upload batches",
                         ["department"], registry=None)
RUN_PHASE_SECONDS = Histogram("fedlink_run_phase_duration_seconds", "Time each phase of a run took",
                              ["phase"], buckets=PHASE_BUCKETS, registry=None)
RUNS = Counter("fedlink_runs_total", "Runs ended, by outcome", ["state"], registry=None)
STORE_ERRORS = Counter("fedlink_store_errors_total", "Errors the database driver raised", ["error"], registry=None)

_UPDATED = (RPC_SECONDS, RECORDS_STORED, RUN_PHASE_SECONDS, RUNS, STORE_ERRORS)


class StoreFigures:
    """Gauges read from the store at scrape time."""

    def __init__(self, store: t.Store):
        self.store = store

    def collect(self):
        held = GaugeMetricFamily("fedlink_current_records", "Records in each department's current upload",
                                 labels=["project", "department"])
        open_uploads = GaugeMetricFamily("fedlink_open_uploads", "Uploads begun and not yet committed")
        audit = GaugeMetricFamily("fedlink_audit_events", "Events in the audit log")
        u = t.uploads.c
        with self.store.read() as conn:
            for project, department, records in conn.execute(
                    select(u.project_id, u.department, u.record_count).where(u.state == "committed")):
                held.add_metric([project, department], records)
            open_uploads.add_metric([], conn.execute(select(func.count()).where(u.state == "open")).scalar())
            audit.add_metric([], conn.execute(select(func.count()).select_from(t.audit_events)).scalar())
        yield from (held, open_uploads, audit)


def registry(store: t.Store) -> CollectorRegistry:
    """What one coordinator's /metrics serves."""
    reg = CollectorRegistry()
    for metric in _UPDATED:
        reg.register(metric)
    reg.register(StoreFigures(store))
    ProcessCollector(registry=reg)
    return reg
