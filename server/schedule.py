"""Runs on a cadence: when a project's next run is due, and the thread in the
coordinator that starts it.

A schedule is data in the store (table `schedules`), so it survives a
restart: the coordinator that comes back starts what fell due while it was
down, once (not once per missed occurrence), for the latest missed occurrence.

Cadences (`every`):
- "Nmo" (1mo monthly, 3mo quarterly, 6mo, 12mo): on `day` (1-28, so every
  month has it) of every N-th month, counted from the start date's month;
- "Nd" / "Nw": every N days / weeks from the start date;
- "semester": on `day` of March and September, when the school terms begin
  (the school roll is compared with the population register each semester).
Every occurrence is at `at` (HH:MM, UTC). A run started for an occurrence is
"as of" its date, so a run that starts late still belongs to its month.
"""
from __future__ import annotations

import logging
import re
import threading
import time as _time
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Callable

log = logging.getLogger("fedlink.scheduler")

SEMESTER_MONTHS = (3, 9)
_EVERY = re.compile(r"^(\d{1,3})(mo|d|w)$")


class ScheduleError(ValueError):
    """A schedule that cannot be used; the message names the field."""


@dataclass(frozen=True)
class Cadence:
    every: str          # as the operator wrote it: "1mo", "14d", "semester"
    day: int = 1        # day of the month, for month cadences
    at: str = "02:00"   # UTC
    start: date = date(1970, 1, 1)

    @property
    def unit(self) -> tuple[int, str]:
        if self.every == "semester":
            return 6, "semester"
        m = _EVERY.match(self.every)
        return int(m.group(1)), m.group(2)

    @property
    def clock(self) -> time:
        hh, mm = self.at.split(":")
        return time(int(hh), int(mm), tzinfo=timezone.utc)


def parse_cadence(every: str, day: int = 0, at: str = "", start: str | date = "") -> Cadence:
    """Validate what an operator asked for; errors name the field."""
    every = (every or "").strip().lower()
    m = _EVERY.match(every)
    if every != "semester" and (m is None or int(m.group(1)) == 0):
        raise ScheduleError(f"every: {every!r} is not a cadence: use Nmo (1mo, 3mo, 6mo), Nd, Nw or semester")
    day = day or 1
    if not 1 <= day <= 28:
        raise ScheduleError(f"day: {day} must be 1-28, so that every month has it")
    if day != 1 and m is not None and m.group(2) in ("d", "w"):
        raise ScheduleError(f"day: a cadence of {every} runs every so many days from the start date; "
                            "day applies to month cadences and semester")
    at = at or "02:00"
    if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", at):
        raise ScheduleError(f"at: {at!r} is not a UTC time HH:MM")
    try:
        start = start if isinstance(start, date) else (date.fromisoformat(start) if start else date.today())
    except ValueError:
        raise ScheduleError(f"start: {start[:20]!r} is not an ISO date (YYYY-MM-DD)") from None
    return Cadence(every, day, at, start)


def _month_index(d: date) -> int:
    return d.year * 12 + d.month - 1


def _occurrence_dates(c: Cadence, on_or_after: date):
    """Occurrence dates of the cadence from `on_or_after` on, in order."""
    n, unit = c.unit
    begin = max(c.start, on_or_after)
    if unit in ("d", "w"):
        step = n * (7 if unit == "w" else 1)
        k = max(0, -(-(begin - c.start).days // step))
        while True:
            yield c.start + timedelta(days=k * step)
            k += 1
    months = _month_index(c.start)
    i = _month_index(begin) - 1  # the month before may not qualify; start a little early and filter
    while True:
        i += 1
        year, month = divmod(i, 12)
        month += 1
        if unit == "semester":
            if month not in SEMESTER_MONTHS:
                continue
        elif (i - months) % n:
            continue
        d = date(year, month, c.day)
        if d >= c.start:
            yield d


def next_due(c: Cadence, after: datetime) -> datetime:
    """The first occurrence strictly after `after` (UTC)."""
    for d in _occurrence_dates(c, after.astimezone(timezone.utc).date()):
        due = datetime.combine(d, c.clock)
        if due > after:
            return due
    raise AssertionError("unreachable: cadences never end")


def first_due(c: Cadence) -> datetime:
    """The first occurrence on or after the start date."""
    return next_due(c, datetime.combine(c.start, time(0, 0, tzinfo=timezone.utc)) - timedelta(microseconds=1))


def latest_passed(c: Cadence, next_at: datetime, now: datetime) -> datetime:
    """The latest occurrence at or before `now`, from a due `next_at`: a
    coordinator that was down for three months starts one run, for the latest
    missed occurrence, not three."""
    latest = next_at
    while True:
        following = next_due(c, latest)
        if following > now:
            return latest
        latest = following


def iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def from_iso(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def _boottime() -> float:
    """Seconds on a clock that no one sets and that counts a suspended machine's sleep too."""
    return _time.clock_gettime(getattr(_time, "CLOCK_BOOTTIME", _time.CLOCK_MONOTONIC))


class SteadyClock:
    """The scheduler's "now": the wall clock as it was when the coordinator
    started, advanced by the boot-time clock, which nobody steps. A wall clock
    that has moved away from it by more than `tolerance` seconds was stepped
    (by NTP, an operator, a restored snapshot): the step is reported, once, to
    `on_step(seconds)` (positive: ahead), and schedules keep firing by the
    steady time, so a clock set ahead does not start next month's run early or
    skip this month's, and a clock set back never starts one twice. After a
    deliberate correction, restart the coordinator to take the new time."""

    def __init__(self, on_step: Callable[[float], None] = lambda s: None, tolerance: float = 120.0,
                 wall: Callable[[], float] = _time.time, steady: Callable[[], float] = _boottime):
        self.on_step, self.tolerance, self._wall, self._steady = on_step, tolerance, wall, steady
        self._origin = wall() - steady()
        self._reported = 0.0  # the step last reported

    def __call__(self) -> datetime:
        steady = self._origin + self._steady()
        step = self._wall() - steady
        if abs(step) <= self.tolerance:
            self._reported = 0.0
        elif abs(step - self._reported) > self.tolerance:
            self._reported = step
            log.warning("the wall clock stepped %+.0f s away from the time the coordinator keeps; schedules "
                        "follow the kept time until a restart", step)
            self.on_step(step)
        return datetime.fromtimestamp(steady, timezone.utc)


class Scheduler:
    """The coordinator's scheduler thread: wakes every `poll` seconds (or when a
    schedule changes) and asks `fire(now)` to start what is due, `now` by a
    SteadyClock."""

    def __init__(self, fire: Callable[[datetime], list[str]], poll: float = 30.0,
                 on_step: Callable[[float], None] = lambda s: None):
        self._fire, self.poll, self.clock = fire, poll, SteadyClock(on_step)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)

    def start(self) -> "Scheduler":
        self._thread.start()
        return self

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._fire(self.clock())
            except Exception:  # a failing tick must not end the scheduler; the next one retries
                log.exception("scheduler tick failed")
            self._wake.wait(self.poll)
            self._wake.clear()
