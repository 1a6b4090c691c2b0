"""The coordinator's operations log: one line per upload begun and committed,
run started, phase and ended, call refused and scheduled run, as text or as
JSON lines, on stderr.

A line carries identifiers the coordinator holds anyway (project, department,
upload and run ids, counts, the caller's certificate name), never a record's
reference, filter or indicator: those are personal data under a key, and the
coordinator writes none of them here (tests/test_operations.py reads the log
of a real run for them). Structured fields travel as `extra={"event": ...}`,
so the JSON form has them as keys.

gRPC's C core writes a few lines of its own to stderr, in its own format
(`I1202 06:02:41 ... Handshake failed`: a client without a valid
certificate); `GRPC_VERBOSITY=ERROR` in the coordinator's environment keeps
only its errors."""
from __future__ import annotations

import json
import logging
import sys
from datetime import datetime

FORMATS = ("text", "json")
LEVELS = ("debug", "info", "warning", "error")
# The fields of a LogRecord itself; the rest of its __dict__ came in `extra`.
_RECORD_FIELDS = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (ISO 8601 with zone), level, logger, message and the extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        line = {"time": datetime.fromtimestamp(record.created).astimezone().isoformat(timespec="milliseconds"),
                "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        line.update({k: v for k, v in vars(record).items() if k not in _RECORD_FIELDS})
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatTime(self, record, datefmt=None) -> str:
        return datetime.fromtimestamp(record.created).astimezone().isoformat(timespec="milliseconds")


def configure(log_format: str = "text", level: str = "info") -> None:
    """The process's logging, for `coordinator serve`. Alembic's per-revision
    INFO lines show only at debug: the store logs one line with the schema version."""
    if log_format not in FORMATS:
        raise ValueError(f"--log-format {log_format!r}: use one of {', '.join(FORMATS)}")
    if level.lower() not in LEVELS:
        raise ValueError(f"--log-level {level!r}: use one of {', '.join(LEVELS)}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    quiet = logging.DEBUG if level.lower() == "debug" else logging.WARNING
    for noisy in ("alembic", "distributed", "numba"):
        logging.getLogger(noisy).setLevel(quiet)
