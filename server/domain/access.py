"""Who may do what: domain errors, role and membership checks, and `guarded`,
the one place a failed call is refused and audited.

Every call takes the caller's `Identity`, read by the servicer from the
verified client certificate, and checks it here, so the rules hold and are
tested without a network. Failures are `DomainError`s that the servicer maps
to gRPC status codes; every call, done or refused, leaves an audit event."""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

from fedlink.identity import Identity
from fedlink.schema import Project
from server import queries as q
from server.audit import AuditLog
from server.admission import WriteQueue
from server.bursts import BurstLog
from server.limits import DEFAULT_RUN_STALL_S, Limits
from server.store import Store

log = logging.getLogger("fedlink.coordinator")


class DomainError(Exception):
    code = "INTERNAL"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class NotFound(DomainError):
    code = "NOT_FOUND"


class PermissionDenied(DomainError):
    code = "PERMISSION_DENIED"


class InvalidArgument(DomainError):
    code = "INVALID_ARGUMENT"


class FailedPrecondition(DomainError):
    code = "FAILED_PRECONDITION"


class AlreadyExists(DomainError):
    code = "ALREADY_EXISTS"


class ResourceExhausted(DomainError):
    """Over one of the coordinator's limits (server/limits.py). With
    `retry_after_ms` (the rate limit) the caller may retry after that long."""
    code = "RESOURCE_EXHAUSTED"

    def __init__(self, message: str, retry_after_ms: int = 0):
        super().__init__(message)
        self.retry_after_ms = retry_after_ms


@dataclass(frozen=True)
class Context:
    """What every concern of the domain works with."""

    store: Store
    audit_log: AuditLog
    engine: object  # a matching engine (server/engine.py)
    limits: Limits
    ownership: object = None  # this instance's claim on the database (server/ownership.py)
    bursts: BurstLog | None = None  # refusals and head reads, one event per burst (server/bursts.py)
    keep_runs: int = 2  # retention: the runs whose uploads are kept (server/domain/retention.py); 0 keeps all
    run_stall_s: float = DEFAULT_RUN_STALL_S  # a run with no progress for this long is failed (server/domain/runs.py)
    incremental: bool = True  # runs re-score only what changed since the last (server/pipeline/increments.py)

    def __post_init__(self):
        if self.bursts is None:
            object.__setattr__(self, "bursts", BurstLog(self.store))
        # Upload batches are written in turns per department, a round per commit (server/admission.py).
        object.__setattr__(self, "writes", WriteQueue(self.store))

    def refuse(self, who: Identity | str, method: str, error: DomainError, **details) -> None:
        """Record a refused call, in its own transaction (the refused call's, if any, was rolled
        back); a burst of the same refusal is one event and a count."""
        self.bursts.note(str(who), "call.refused", method, error.code, reason=error.message[:300], **details)
        # The reason is the coordinator's own message: names and counts, no record's data.
        log.warning("%s by %s refused: %s: %s", method, who, error.code, error.message[:300],
                    extra={"event": "call.refused", "method": method, "caller": str(who), "status": error.code})


def guarded(method: str, *roles: str):
    """Decorate a concern's call `(self, who, ...)`: the caller needs one of
    `roles` (any caller when none are named), and a `DomainError` raised by
    the call is audited as refused before it reaches the servicer."""
    def decorate(call):
        @functools.wraps(call)
        def checked(self, who: Identity, *args, **kwargs):
            try:
                if roles and who.role not in roles:
                    raise PermissionDenied(
                        f"{method} needs the {' or '.join(roles)} role; your certificate says {who.role}")
                return call(self, who, *args, **kwargs)
            except DomainError as e:
                self.ctx.refuse(who, method, e)
                raise
        return checked
    return decorate


def existing_project(conn, project_id: str) -> Project:
    found = q.project(conn, project_id)
    if found is None:
        raise NotFound(f"project {project_id!r} does not exist")
    return found


def require_member(who: Identity, project: Project) -> None:
    """An agent acts only for a department that takes part in the project."""
    if who.role == "agent" and who.department not in project.departments:
        raise PermissionDenied(f"department {who.department} does not take part in project {project.project_id}")


def require_own_department(who: Identity, department: str, what: str) -> None:
    if department != who.department:
        raise PermissionDenied(f"{what} belongs to another department")


def checked_oidc(value: str, name: str) -> str:
    """The OpenID identity a console sends beside a person ("ISSUER SUBJECT"), whose subject is the
    person's name (server/console/oidc.py); refused when it is not that."""
    issuer, _, subject = value.rpartition(" ")
    if len(value) > 400 or not issuer.startswith(("https://", "http://")) or " " in issuer or subject != name:
        raise InvalidArgument(f"oidc {value[:80]!r}: \"ISSUER SUBJECT\" of the person, whose subject is their "
                              f"name {name!r}")
    return value
