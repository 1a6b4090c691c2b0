"""Who may write what, when more than one coordinator process could reach
one database.

SQLite: one coordinator per database file, by construction. The coordinator
holds an exclusive `flock` on `<database>.lock` for its whole life; a second
one is refused at start with the database and the holder's pid. The kernel
drops the lock when the process ends, however it ends (kill -9 too), so a
crashed coordinator never blocks the next one.

PostgreSQL: coordinators share the database. Each holds a lease, a row of
`coordinator_leases` that it renews every `ttl / 3` seconds (a heartbeat). A
run is owned by the instance that executes it (`runs.owner`); recovery fails
only runs whose owner's lease has expired, so a second instance starting up
never touches the first one's run. The oldest live lease runs the schedules.
Lease times are the database's clock, never a coordinator's, so a coordinator
whose clock steps cannot make a live lease look expired, or a dead one alive.
Any instance serves reads and uploads: writes are serialised by the store's
advisory lock (server/store.py)."""
from __future__ import annotations

import fcntl
import logging
import os
import socket
import threading
import uuid
from pathlib import Path
from typing import Callable

from sqlalchemy import and_, delete, select, text, update

from server import faults
from server import store as t
from server.store import Store

log = logging.getLogger("fedlink.coordinator")

LEASE_TTL_S = 15.0


class DatabaseInUse(RuntimeError):
    """Another coordinator serves this SQLite database."""


def database_now(conn) -> float:
    """Seconds since the epoch by the database's clock."""
    if conn.dialect.name == "postgresql":
        return float(conn.execute(text("SELECT extract(epoch from clock_timestamp())")).scalar())
    return float(conn.execute(text("SELECT (julianday('now') - 2440587.5) * 86400.0")).scalar())


def lock_sqlite_file(database: Path):
    """Take `<database>.lock` exclusively for this process's life; the open file, to keep."""
    path = Path(f"{database}.lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    handle = os.fdopen(fd, "r+", encoding="ascii")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise DatabaseInUse(
            f"the database {database} is in use by another coordinator (pid {holder}, lock {path}); one "
            "coordinator serves a SQLite database: stop that one first, or use PostgreSQL to run several") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


class Ownership:
    """This coordinator instance's claim on the database (see the module's doc)."""

    def __init__(self, store: Store, database: str | Path, address: str = "", ttl: float = LEASE_TTL_S):
        self.store, self.ttl = store, ttl
        self.instance_id = uuid.uuid4().hex[:16]
        self.exclusive = store.dialect == "sqlite"
        self._file = lock_sqlite_file(Path(str(database))) if self.exclusive else None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if not self.exclusive:
            with store.write() as conn:
                now = database_now(conn)
                conn.execute(t.coordinator_leases.insert().values(
                    instance_id=self.instance_id, pid=os.getpid(), host=MACHINE,
                    address=address[:255], started_at=now, renewed_at=now, expires_at=now + ttl))

    def live_owners(self, conn) -> set[str]:
        """Instances whose lease has not expired (on SQLite: this one, the only one there can be).
        A lease taken on this machine (same boot, same pid namespace) by a process
        that no longer exists is dead now, without waiting for it to expire: a
        coordinator restarted after a crash recovers its predecessor's runs at once."""
        if self.exclusive:
            return {self.instance_id}
        c = t.coordinator_leases.c
        rows = conn.execute(select(c.instance_id, c.host, c.pid).where(c.expires_at > database_now(conn))).all()
        return {r.instance_id for r in rows
                if r.instance_id == self.instance_id or r.host != MACHINE or _process_exists(r.pid)}

    def runs_schedules(self, conn) -> bool:
        """Whether this instance holds the oldest live lease, which runs the schedules."""
        if self.exclusive:
            return True
        c = t.coordinator_leases.c
        oldest = conn.execute(select(c.instance_id).where(c.expires_at > database_now(conn))
                              .order_by(c.started_at, c.instance_id).limit(1)).scalar()
        return oldest == self.instance_id

    def renew(self) -> None:
        if self.exclusive:
            return
        with self.store.write() as conn:
            now = database_now(conn)
            c = t.coordinator_leases.c
            renewed = conn.execute(update(t.coordinator_leases).where(c.instance_id == self.instance_id)
                                   .values(renewed_at=now, expires_at=now + self.ttl)).rowcount
            if not renewed:  # expired and removed by another instance while this one could not reach the database
                log.warning("this coordinator's lease had been removed; taking a new one")
                conn.execute(t.coordinator_leases.insert().values(
                    instance_id=self.instance_id, pid=os.getpid(), host=MACHINE, address="",
                    started_at=now, renewed_at=now, expires_at=now + self.ttl))
            # Leases long expired are only clutter: their runs were recovered by then.
            conn.execute(delete(t.coordinator_leases).where(and_(
                c.expires_at < now - 100 * self.ttl, c.instance_id != self.instance_id)))

    def start_heartbeat(self, on_beat: Callable[[], None]) -> None:
        """Renew the lease every ttl/3 and call `on_beat` (recovery of dead instances' runs)."""
        def beat():
            while not self._stop.wait(self.ttl / 3):
                try:
                    self.renew()
                    on_beat()
                except Exception as e:  # the store is down: the next beat tries again
                    log.warning("lease heartbeat failed (%s); retrying in %.0f s", _short(e), self.ttl / 3)
        self._thread = threading.Thread(target=beat, name="lease", daemon=True)
        self._thread.start()

    def release(self) -> None:
        """At a clean stop: the lease ends now, not in `ttl` seconds; the file lock is let go."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._file is not None:
            self._file.close()
            self._file = None
            return
        try:
            with self.store.write() as conn:
                conn.execute(delete(t.coordinator_leases).where(
                    t.coordinator_leases.c.instance_id == self.instance_id))
        except Exception as e:  # the lease then simply expires
            log.warning("could not end this coordinator's lease (%s); it expires in %.0f s", _short(e), self.ttl)


def _machine() -> str:
    """This host, its boot and its pid namespace: where a lease's pid means this machine's process."""
    def read(path: str, link: bool = False) -> str:
        try:
            return os.readlink(path) if link else Path(path).read_text().strip()[:8]
        except OSError:
            return "?"
    return f"{socket.gethostname()} boot {read('/proc/sys/kernel/random/boot_id')} " \
           f"{read('/proc/self/ns/pid', link=True)}"[:255]


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


MACHINE = faults.machine() or _machine()  # a fault test may place it elsewhere


def _short(error: Exception) -> str:
    return " ".join(str(error).split())[:200]
