"""The coordinator's limits: explicit, configurable (`fedlink coordinator serve
--max-...`), each refused with RESOURCE_EXHAUSTED and a message naming the
limit and the option that sets it.

| limit | default | option |
|---|---|---|
| one gRPC message | 16 MiB | --max-message-bytes |
| records in one batch | 50,000 | --max-batch-records |
| records in one department's upload | 20,000,000 | --max-records-per-upload |
| calls per minute per identity | 6,000 (0 = no limit) | --max-calls-per-minute |
| stream messages per minute per identity | 60,000 (0 = no limit) | --max-messages-per-minute |
| streams open at once per identity | 4 | --max-streams |
| seconds a stream may wait on its client | 120 | --stream-idle-seconds |
| open (uncommitted) uploads per department | 4 | --max-open-uploads |
| hours before an open upload expires | 24 | --upload-expiry-hours |

The batch count of an upload is bounded by its record count (a batch holds at
least one record). A call over a rate limit carries `retry-after-ms` in its
trailing metadata; agents wait that long and retry, while a refusal for size
is final (retrying cannot help). Messages are counted as well as calls: one
upload stream cannot send more batches a minute than the message limit. A
stream whose client neither sends nor reads for `stream_idle_s` is closed, so
idle streams cannot hold the coordinator's threads; with at most
`streams_per_identity` each, no one caller can take them all. An open upload
nobody commits expires (its batches are deleted, the expiry is audited), so
`BeginUpload` cannot pile up declared uploads.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

MIB = 1024 * 1024
# A run whose phase reports no progress for this long is failed (server/domain/runs.py): every phase
# reports within minutes at the 20M-record limit; a hung engine or store call reports never.
DEFAULT_RUN_STALL_S = 1800.0
# Columns holding counts are 32-bit integers on both databases.
INT32_MAX = 2**31 - 1


@dataclass(frozen=True)
class Limits:
    max_message_bytes: int = 16 * MIB
    max_batch_records: int = 50_000
    max_records_per_upload: int = 20_000_000
    calls_per_minute: int = 6_000
    messages_per_minute: int = 60_000
    streams_per_identity: int = 4
    stream_idle_s: int = 120
    open_uploads_per_department: int = 4
    upload_expiry_hours: int = 24

    def __post_init__(self):
        checks = {
            "max_message_bytes": (1024, 2**31 - 1),
            "max_batch_records": (1, 10_000_000),
            "max_records_per_upload": (1, INT32_MAX),
            "calls_per_minute": (0, 10**9),
            "messages_per_minute": (0, 10**9),
            "streams_per_identity": (1, 1000),
            "stream_idle_s": (1, 86_400),
            "open_uploads_per_department": (1, 1000),
            "upload_expiry_hours": (1, 24 * 365),
        }
        for name, (low, high) in checks.items():
            value = getattr(self, name)
            if not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"limit {name} must be an integer in {low}..{high}, not {value!r}")


    @property
    def transport_message_bytes(self) -> int:
        """gRPC's own receive limit: above the coordinator's, so that a message over
        `max_message_bytes` reaches the coordinator to be refused and audited, and
        bounded, so that no message larger than this is ever read into memory."""
        return min(2**31 - 1, 4 * self.max_message_bytes)


@dataclass
class RateLimiter:
    """A token bucket per caller identity: `calls_per_minute` calls (or
    messages), refilled evenly. `admit` returns 0 when the call may go on,
    else the milliseconds until it could."""

    calls_per_minute: int
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def admit(self, who: str, now: float | None = None) -> int:
        if self.calls_per_minute <= 0:
            return 0
        now = time.monotonic() if now is None else now
        rate = self.calls_per_minute / 60.0
        with self._lock:
            tokens, last = self._buckets.get(who, (float(self.calls_per_minute), now))
            tokens = min(float(self.calls_per_minute), tokens + (now - last) * rate)
            if tokens >= 1.0:
                self._buckets[who] = (tokens - 1.0, now)
                return 0
            self._buckets[who] = (tokens, now)
            return max(1, int((1.0 - tokens) / rate * 1000))


@dataclass
class StreamSlots:
    """At most `per_identity` streams open at once per caller."""

    per_identity: int
    _open: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, who: str) -> bool:
        with self._lock:
            if self._open.get(who, 0) >= self.per_identity:
                return False
            self._open[who] = self._open.get(who, 0) + 1
            return True

    def give_back(self, who: str) -> None:
        with self._lock:
            self._open[who] -= 1
            if not self._open[who]:
                del self._open[who]
