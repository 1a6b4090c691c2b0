"""`python -m server.migrations revision "what changed"`: add the Alembic
revision for a change to `server/store.py`'s metadata (see __init__)."""
from __future__ import annotations

import sys

from server.migrations import new_revision


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "revision" or not argv[1].strip():
        print('usage: python -m server.migrations revision "what changed"', file=sys.stderr)
        return 2
    paths = new_revision(argv[1])
    if not paths:
        print("the migrations already match server/store.py's metadata: nothing to add", file=sys.stderr)
        return 0
    for p in paths:
        print(f"wrote {p}: review it, then commit it", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
