"""Writing files that must never be seen half-written or by the wrong user.

Everything fedlink writes may hold personal data, a secret or the
coordinator's store: the coordinator's database (and its -wal and -shm
files), worklists, an agent's state, keys, the project secret, audit exports,
bench outputs and synthetic scenarios. So each entry point makes the process
create files 0600 and folders 0700, once, here (`keep_private`), instead of a
chmod beside each write."""
from __future__ import annotations

import logging
import os
import stat
import tempfile
from pathlib import Path

log = logging.getLogger("fedlink.files")

PRIVATE_UMASK = 0o077


def keep_private() -> None:
    """From now on, files this process creates are 0600 and folders 0700
    (whatever the library writing them asks for). Called by every entry point:
    the `fedlink` command (every side), the coordinator started in-process
    (server/serve.py) and an agent used as a library (agents/client.py)."""
    os.umask(PRIVATE_UMASK)


def tighten(path: Path) -> None:
    """A file written before fedlink kept its files private: others lose access to it."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        os.chmod(path, stat.S_IMODE(mode) & ~(stat.S_IRWXG | stat.S_IRWXO))
        log.warning("%s was readable by others (mode %o); it is now private", path, stat.S_IMODE(mode))


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
