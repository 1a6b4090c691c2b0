"""Projects: created by an operator, read by the departments that take part."""
from __future__ import annotations

from dataclasses import dataclass

from fedlink.identity import Identity
from fedlink.rules import IdleRule, idle_rules, load_rulepack
from fedlink.schema import Project, SchemaError
from server import queries as q
from server.domain.access import (
    AlreadyExists, Context, InvalidArgument, existing_project, guarded, require_member,
)


@dataclass(frozen=True)
class RuledProject:
    """A project as created or given new rules, with the rules that cannot fire in it."""

    project: Project
    idle_rules: tuple[IdleRule, ...]


class Projects:
    def __init__(self, ctx: Context):
        self.ctx = ctx

    @guarded("CreateProject", "operator")
    def create(self, who: Identity, project: Project) -> RuledProject:
        try:
            project.validate()
            pack = load_rulepack(project.rules_toml, source=f"project {project.project_id} rules")
        except (SchemaError, ValueError) as e:
            raise InvalidArgument(str(e)) from None
        if pack.suppression_k < project.suppression_floor:
            raise InvalidArgument(f"the rule pack's suppression_k = {pack.suppression_k} is below the project's "
                                  f"suppression_floor = {project.suppression_floor}")
        with self.ctx.store.write() as conn:
            if q.project(conn, project.project_id) is not None:
                raise AlreadyExists(f"project {project.project_id!r} already exists")
            q.insert_project(conn, project, str(who))
            self.ctx.store.audit(conn, str(who), "project.create", project_id=project.project_id,
                                 departments=sorted(project.departments), schema_digest=project.digest(),
                                 suppression_floor=project.suppression_floor)
        return RuledProject(project, idle_rules(pack, project.departments))

    @guarded("GetProject", "operator", "agent", "officer")
    def get(self, who: Identity, project_id: str) -> Project:
        with self.ctx.store.read() as conn:
            project = existing_project(conn, project_id)
        require_member(who, project)
        with self.ctx.store.write() as conn:
            self.ctx.store.audit(conn, str(who), "project.read", project_id=project_id,
                                 department=who.department or None)
        return project
