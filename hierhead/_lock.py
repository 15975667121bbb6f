"""One process at a time in a folder: an exclusive, non-blocking ``flock`` held for a ``with`` block. The OS
drops it when the process ends, however it ends (a kill included), so a stale lock file never blocks anyone.
Hand-written because the standard library has the call (``fcntl.flock``) but no context manager for it."""

from __future__ import annotations

import contextlib
from pathlib import Path

__all__ = ["exclusive"]


@contextlib.contextmanager
def exclusive(path: Path, refusal: Exception):
    """Hold an exclusive lock on ``path`` (created if missing) for the block; raise ``refusal`` at once when
    another process holds it."""
    import fcntl

    with open(path, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise refusal from None
        yield
