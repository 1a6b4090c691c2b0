"""What the console lists and records: every project with its departments, a
project's runs, and the pages a person opened in the console (server/console).
Each is an audit event like any other read; none holds a record's data."""
from __future__ import annotations

from dataclasses import dataclass

from fedlink.identity import Identity, IdentityError, validate_label
from server import queries as q
from server.domain.access import Context, InvalidArgument, checked_oidc, existing_project, guarded

MAX_RUNS = 500
VIEWER_ROLES = ("operator", "officer")


@dataclass(frozen=True)
class ProjectSummary:
    project_id: str
    departments: dict[str, tuple[str, ...]]
    reference_date: str
    threshold: float
    auto_threshold: bool
    created_by: str
    created_at: float
    runs: int


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    project_id: str
    state: str
    as_of: str
    started_by: str
    created_at: float
    finished_at: float
    persons: int


class Listings:
    def __init__(self, ctx: Context):
        self.ctx = ctx

    @guarded("ListProjects", "operator", "officer")
    def projects(self, who: Identity) -> list[ProjectSummary]:
        with self.ctx.store.read() as conn:
            rows = q.projects_with_run_counts(conn)
        out = []
        for row in rows:
            p = q.project_from_row(row)
            out.append(ProjectSummary(p.project_id, p.departments, p.reference_date, p.schema.threshold,
                                      p.schema.auto_threshold, row.created_by, row.created_at, int(row.runs)))
        with self.ctx.store.write() as conn:
            self.ctx.store.audit(conn, str(who), "project.list", projects=len(out))
        return out

    @guarded("ListRuns", "operator", "officer")
    def runs(self, who: Identity, project_id: str, limit: int = 0) -> list[RunSummary]:
        if limit > MAX_RUNS:
            raise InvalidArgument(f"limit {limit} is more than {MAX_RUNS} runs; page with a smaller limit")
        with self.ctx.store.read() as conn:
            existing_project(conn, project_id)
            rows = q.recent_runs(conn, project_id, limit or 50)
        with self.ctx.store.write() as conn:
            self.ctx.store.audit(conn, str(who), "run.list", project_id=project_id, runs=len(rows))
        return [RunSummary(r.run_id, r.project_id, r.state, r.as_of, r.started_by, r.created_at,
                           r.finished_at or 0.0, int((r.report or {}).get("persons", 0))) for r in rows]

    @guarded("RecordView", "console")
    def record_view(self, who: Identity, viewer: str, page: str, oidc: str = "") -> int:
        """A console page opened by `viewer` (role:name, as the console read it off their certificate
        or their OpenID sign-in, whose "ISSUER SUBJECT" is `oidc`)."""
        role, _, name = viewer.partition(":")
        if role not in VIEWER_ROLES:
            raise InvalidArgument(f"viewer {viewer[:80]!r} is not operator:NAME or officer:NAME")
        try:
            validate_label(name, f"{role} name")
        except IdentityError as e:
            raise InvalidArgument(f"viewer: {e}") from None
        if not page.startswith("/") or len(page) > 200 or "?" in page:
            raise InvalidArgument("page: the path of a console page, starting with / and without a query")
        with self.ctx.store.write() as conn:
            return self.ctx.store.audit(conn, str(who), "console.view", viewer=viewer, page=page,
                                        **({"oidc": checked_oidc(oidc, name)} if oidc else {}))
