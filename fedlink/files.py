"""Writing files that must never be seen half-written or by the wrong user."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, data: bytes, mode: int = 0o600, *, replace: bool = True) -> None:
    """Write ``data`` to ``path`` via a temporary file, fsync, rename, then fsync the folder.

    A reader sees the old file or the new one, never part of either, and the
    rename survives a power cut. The temporary file is 0600 from the start,
    so a private key is never readable by others, whatever the umask.
    """
    path = Path(path)
    if not replace and path.exists():
        raise FileExistsError(f"{path} exists and is never overwritten")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
