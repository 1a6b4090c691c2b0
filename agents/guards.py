"""The agent's upload guards: what it refuses to send, or to commit, unless
the operator of the agent says `--force`.

An extract that would remove more than `max_removed_share` of the
department's current records at the coordinator (a header-only file, a
test extract, the wrong export) is refused after a dry-run commit, so nothing
is removed; a field with more than `max_unreadable_share` unreadable values,
or a name, birth date or ID field blank in more than `max_blank_share` of the
records (an export without IDs, dates in a form nobody reads), is refused
before anything is sent. The thresholds are the agent TOML's.
"""
from __future__ import annotations

from agents.config import AgentConfig
from agents.quality import QualitySummary

# The fields that carry the linkage: a blank one leaves a record little to link on.
IDENTITY_KINDS = ("name", "date", "resident_id")


class UploadRefused(Exception):
    """An upload the guards stop; the message names each reason and the override."""

    def __init__(self, department: str, reasons: list[str], *, sent: bool):
        where = ("its batches are stored but not committed: the current upload stays in use" if sent
                 else "nothing was sent")
        super().__init__(f"{department}: upload refused ({where}): {'; '.join(reasons)}. Check the extract; "
                         "if it is right, run `fedlink agent upload --force`")
        self.reasons = reasons


def quality_refusals(summary: QualitySummary, config: AgentConfig) -> list[str]:
    """Why the extract's fields are too unreadable to send (empty: they are not)."""
    if not summary.records:
        return []
    out = []
    for f in summary.fields:
        unreadable, blank = f.unreadable / summary.records, f.blank / summary.records
        if unreadable > config.max_unreadable_share:
            out.append(f"field {f.column}: {f.unreadable} of {summary.records} values unreadable ({unreadable:.1%}), "
                       f"over max_unreadable_share {config.max_unreadable_share:g}")
        if f.kind in IDENTITY_KINDS and blank > config.max_blank_share:
            out.append(f"field {f.column}: blank in {f.blank} of {summary.records} records ({blank:.1%}), "
                       f"over max_blank_share {config.max_blank_share:g}")
    return out


def removal_refusal(kept: int, removed: int, config: AgentConfig) -> str | None:
    """Why an upload removes too much of the department's current upload (None: it does not)."""
    current = kept + removed
    if not current or removed / current <= config.max_removed_share:
        return None
    return (f"it would remove {removed} of the {current} records of the current upload ({removed / current:.1%}), "
            f"over max_removed_share {config.max_removed_share:g}; their open flags would resolve")
