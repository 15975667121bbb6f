"""Where a result came from: hierhead's version and the git commit of the code that ran (recorded in
every run's ``config.yaml`` and every results row, so a number can be traced to its code)."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

__all__ = ["provenance", "row_provenance"]


@functools.lru_cache(maxsize=1)
def provenance() -> dict:
    """``{"version", "commit", "dirty"}``: the package version; the commit of the git checkout the package
    runs from (``None`` for an installed wheel, or without git) and whether its tracked files differ from
    that commit (uncommitted changes ran)."""
    from . import __version__

    here = Path(__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(here), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    inside = commit is not None and git("ls-files", "--error-unmatch", str(here / "__init__.py")) is not None
    if not inside:  # a wheel installed inside some other repository is not that repository's code
        return {"version": __version__, "commit": None, "dirty": None}
    return {"version": __version__, "commit": commit, "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def row_provenance() -> dict:
    """The provenance columns of a results row: ``version`` and ``commit`` (``+dirty`` when uncommitted
    changes ran; empty outside a git checkout)."""
    p = provenance()
    return {"version": p["version"], "commit": (p["commit"] or "") + ("+dirty" if p["dirty"] else "")}
