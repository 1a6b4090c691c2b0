"""Audit events that a caller could repeat without bound (refusals of every
kind, reads of the log's head) are written once per burst: the first at
once, then, when the burst's window closes, one event that counts the rest.
A flood of refused calls thus writes at most two events per caller, method
and status a window, and the log cannot be grown by being refused."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

# Beyond this many bursts open at once (a flood from many names), new ones are counted under actor "*".
MAX_OPEN_BURSTS = 10_000


@dataclass
class _Burst:
    first: float
    kind: str
    details: dict
    repeats: int = 0
    last: float = 0.0


@dataclass
class BurstLog:
    store: object  # server.store.Store
    window_s: float = 60.0
    _open: dict[tuple, _Burst] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def note(self, actor: str, kind: str, method: str, status: str = "", **details) -> None:
        """Record one occurrence: the first of a burst is written now, the rest are counted."""
        now = time.time()
        with self._lock:
            if len(self._open) >= MAX_OPEN_BURSTS and (actor, kind, method, status) not in self._open:
                actor = "*"
            key = (actor, kind, method, status)
            burst = self._open.get(key)
            if burst is not None and now - burst.first < self.window_s:
                burst.repeats += 1
                burst.last = now
                return
            self._open[key] = _Burst(now, kind, details, last=now)
            ended = [(key, burst)] if burst is not None and burst.repeats else []
        self._write_repeats(ended)
        self._write(actor, kind, method=method, **({"status": status} if status else {}), **details)

    def _write(self, actor: str, kind: str, **details) -> None:
        with self.store.write() as conn:
            self.store.audit(conn, actor, kind, **details)

    def _write_repeats(self, ended) -> None:
        for (actor, kind, method, status), burst in ended:
            self._write(actor, f"{kind}.repeated", method=method, **({"status": status} if status else {}),
                        count=burst.repeats, first_ts=burst.first, last_ts=burst.last)

    def flush(self, everything: bool = False) -> None:
        """Write the count of every burst whose window has closed (all of them when stopping)."""
        now = time.time()
        with self._lock:
            ended = [(k, b) for k, b in self._open.items() if everything or now - b.first >= self.window_s]
            for key, _ in ended:
                del self._open[key]
        self._write_repeats([(k, b) for k, b in ended if b.repeats])

    def start(self) -> BurstLog:
        def run():
            while not self._stop.wait(min(5.0, self.window_s / 4)):
                self.flush()
        self._thread = threading.Thread(target=run, name="audit-bursts", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self.flush(everything=True)
