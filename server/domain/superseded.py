"""Superseded uploads purged as soon as nothing needs them: when a
department's newer upload is committed, its older uploads that no run still
refers to are deleted with their records (filters, indicators, household
tokens), one audit event each (`upload.purged`), and SQLite gives the space
back at once (incremental vacuum of the freed pages); on PostgreSQL the rows
go and autovacuum makes their space reusable.

What stays is what retention keeps (server/domain/retention.py,
`kept_uploads`): the uploads of queued and running runs, of the finished runs
whose links and flags are kept (their worklists, the incremental carry of
server/pipeline/increments.py), and those holding a kept flag's record. The
probe trace needs no older upload: a commit marks the records that came with
it (`records.came_with`). A coordinator keeping every run (`--keep-runs 0`)
purges nothing."""
from __future__ import annotations

import logging

from server import queries as q
from server.domain.access import Context
from server.domain.retention import kept_uploads, reclaim

log = logging.getLogger("fedlink.coordinator")


def purge_superseded(ctx: Context, project_id: str, department: str, current: str) -> int:
    """After `current` became the department's upload: delete its older uploads no run needs, in their own
    transaction (the commit stands whatever happens here). Returns the records deleted."""
    if ctx.keep_runs <= 0:
        return 0
    try:
        with ctx.store.write() as conn:
            gone = [u for u in q.superseded_uploads(conn, project_id, department)
                    if u.upload_id not in kept_uploads(conn, project_id)]
            records = q.delete_uploads(conn, [u.upload_id for u in gone]) if gone else 0
            for u in gone:
                ctx.store.audit(conn, "coordinator", "upload.purged", project_id=project_id, department=department,
                                upload_id=u.upload_id, records=u.record_count, superseded_by=current)
        if gone:
            reclaim(ctx.store)
            log.info("purged %d superseded uploads of %s for %s: %d records", len(gone), department, project_id,
                     records, extra={"event": "upload.purged", "project_id": project_id, "department": department,
                                     "uploads": [u.upload_id for u in gone], "records": records})
        return records
    except Exception as e:  # the upload is committed; the purge is retried at the next commit or run
        log.exception("purging the superseded uploads of %s for %s failed; nothing was deleted", department,
                      project_id)
        with ctx.store.write() as conn:
            ctx.store.audit(conn, "coordinator", "retention.failed", project_id=project_id, department=department,
                            upload_id=current, error=f"{type(e).__name__}: {str(e)[:300]}")
        return 0
