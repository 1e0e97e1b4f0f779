"""Private files: what ispvm writes is readable by its own user only.

The database, its write-ahead log and the log file hold topology, incidents,
webhook payloads and error texts, so they are created 0600 and the
directories ispvm creates for them 0700, whatever the umask. DuckDB creates
its ``.wal`` (and spill files) itself, with no way to pass a mode, and
deletes and re-creates the WAL at every checkpoint: the only guarantee for
those is the process umask, so :func:`restrict_umask` adds 077 to it. Files
and directories that already exist are left as the operator set them, but a
looser mode is reported by :func:`loose_mode_warning`.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700


def restrict_umask() -> None:
    """From now on this process creates files with no group or other bits."""
    old = os.umask(0o077)  # reading the umask means setting it; the interim value is only stricter
    os.umask(old | 0o077)


def make_private_dir(path: Path) -> None:
    """Create ``path`` and any missing parents, each new one 0700; existing ones are not touched."""
    missing = []
    cur = path
    while not cur.exists():
        missing.append(cur)
        if cur.parent == cur:
            break
        cur = cur.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=PRIVATE_DIR)
        except FileExistsError:  # made meanwhile by someone else: theirs, leave it be
            continue
        os.chmod(directory, PRIVATE_DIR)  # mkdir's mode is masked by the umask


def create_private_file(path: Path) -> bool:
    """Create an empty 0600 file unless one exists; True when this call created it."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except FileExistsError:
        return False
    try:
        os.fchmod(fd, PRIVATE_FILE)
    finally:
        os.close(fd)
    return True


def loose_mode_warning(path: Path, holds: str) -> str | None:
    """A warning when ``path`` exists and its group or others may use it; None when it is private."""
    try:
        st = path.stat()
    except OSError:
        return None
    mode = stat.S_IMODE(st.st_mode)
    if not mode & 0o077:
        return None
    who = "everyone" if mode & 0o007 else "its group"
    private = PRIVATE_DIR if stat.S_ISDIR(st.st_mode) else PRIVATE_FILE
    return (f"{path} is open to {who} (mode {mode:04o}) and holds {holds}: "
            f"run `chmod {private:o} {path}`")
