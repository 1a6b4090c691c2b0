"""A store that is down, restarting or full, told apart from a bug.

A lost or refused database connection, a server shutting down, a SQLite file
that is locked or cannot be opened: UNAVAILABLE, which agents retry with
backoff. A full disk (SQLite's SQLITE_FULL, PostgreSQL's disk_full): the store
cannot take more, RESOURCE_EXHAUSTED naming the store, for its operator. The
messages carry the database's own reason, never a traceback."""
from __future__ import annotations

import sqlite3

from sqlalchemy import exc as sa_exc

UNAVAILABLE, FULL = "UNAVAILABLE", "RESOURCE_EXHAUSTED"
# PostgreSQL SQLSTATEs: connection exceptions (08...), operator intervention (57P01-57P05).
_PG_UNAVAILABLE = ("08", "57P")
_PG_FULL = ("53100", "53200")  # disk_full, out_of_memory
_SQLITE_UNAVAILABLE = ("database is locked", "unable to open database file", "disk i/o error")


def outage_kind(error: BaseException) -> str | None:
    """UNAVAILABLE, RESOURCE_EXHAUSTED, or None when the error is not the store's condition."""
    if not isinstance(error, sa_exc.DBAPIError):
        return None
    orig = error.orig
    if isinstance(orig, sqlite3.Error):
        text = str(orig).lower()
        if getattr(orig, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "database or disk is full" in text:
            return FULL
        return UNAVAILABLE if any(s in text for s in _SQLITE_UNAVAILABLE) else None
    state = getattr(orig, "sqlstate", None) or ""
    if state.startswith(_PG_FULL):
        return FULL
    if error.connection_invalidated or state.startswith(_PG_UNAVAILABLE):
        return UNAVAILABLE
    if isinstance(error, (sa_exc.OperationalError, sa_exc.InterfaceError)) and not state:
        return UNAVAILABLE  # no SQLSTATE: the driver never reached the server (refused, reset, timed out)
    return None


def reason(error: BaseException) -> str:
    """The database's own words, on one line."""
    orig = getattr(error, "orig", None) or error
    return " ".join(str(orig).split())[:300]


def store_problem(error: BaseException, store: str = "") -> str | None:
    """A sentence for an outage or a full store; None for anything else."""
    kind = outage_kind(error)
    where = f" ({store})" if store else ""
    if kind == FULL:
        return f"the coordinator's store{where} is full: {reason(error)}; its operator must free space"
    if kind == UNAVAILABLE:
        return f"the coordinator's database{where} is unavailable: {reason(error)}; retry shortly"
    return None
