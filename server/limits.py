"""The coordinator's limits: explicit, configurable (`fedlink coordinator serve
--max-...`), each refused with RESOURCE_EXHAUSTED and a message naming the
limit and the option that sets it.

| limit | default | option |
|---|---|---|
| one gRPC message | 16 MiB | --max-message-bytes |
| records in one batch | 50,000 | --max-batch-records |
| records in one department's upload | 20,000,000 | --max-records-per-upload |
| calls per minute per identity | 6,000 (0 = no limit) | --max-calls-per-minute |

The batch count of an upload is bounded by its record count (a batch holds at
least one record). A call over the rate limit carries `retry-after-ms` in its
trailing metadata; agents wait that long and retry, while a refusal for size
is final (retrying cannot help).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

MIB = 1024 * 1024
# Columns holding counts are 32-bit integers on both databases.
INT32_MAX = 2**31 - 1


@dataclass(frozen=True)
class Limits:
    max_message_bytes: int = 16 * MIB
    max_batch_records: int = 50_000
    max_records_per_upload: int = 20_000_000
    calls_per_minute: int = 6_000

    def __post_init__(self):
        checks = {
            "max_message_bytes": (1024, 2**31 - 1),
            "max_batch_records": (1, 10_000_000),
            "max_records_per_upload": (1, INT32_MAX),
            "calls_per_minute": (0, 10**9),
        }
        for name, (low, high) in checks.items():
            value = getattr(self, name)
            if not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"limit {name} must be an integer in {low}..{high}, not {value!r}")


@dataclass
class RateLimiter:
    """A token bucket per caller identity: `calls_per_minute` calls, refilled
    evenly. `admit` returns 0 when the call may go on, else the milliseconds
    until it could."""

    calls_per_minute: int
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)
    _refused: dict[str, int] = field(default_factory=dict)
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
                self._refused.pop(who, None)
                return 0
            self._buckets[who] = (tokens, now)
            self._refused[who] = self._refused.get(who, 0) + 1
            return max(1, int((1.0 - tokens) / rate * 1000))

    def refused_in_a_row(self, who: str) -> int:
        with self._lock:
            return self._refused.get(who, 0)
