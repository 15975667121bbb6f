"""Where a result came from: hierhead's version and the git commit of the code that ran (recorded in
every run's ``config.yaml`` and every results row, so a number can be traced to its code)."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

__all__ = ["provenance", "row_provenance", "registration", "uncommitted"]


def _git(where: Path, *args: str) -> str | None:
    """``git -C where ARGS``'s output, or None (no git, not a checkout, an unknown commit)."""
    try:
        done = subprocess.run(["git", "-C", str(where), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


@functools.lru_cache(maxsize=1)
def provenance() -> dict:
    """``{"version", "commit", "dirty"}``: the package version; the commit of the git checkout the package
    runs from (``None`` for an installed wheel, or without git) and whether its tracked files differ from
    that commit (uncommitted changes ran)."""
    from . import __version__

    here = Path(__file__).resolve().parent
    commit = _git(here, "rev-parse", "HEAD")
    inside = commit is not None and _git(here, "ls-files", "--error-unmatch", str(here / "__init__.py")) is not None
    if not inside:  # a wheel installed inside some other repository is not that repository's code
        return {"version": __version__, "commit": None, "dirty": None}
    return {"version": __version__, "commit": commit,
            "dirty": bool(_git(here, "status", "--porcelain", "--untracked-files=no"))}


def row_provenance() -> dict:
    """The provenance columns of a results row: ``version`` and ``commit`` (``+dirty`` when uncommitted
    changes ran; empty outside a git checkout)."""
    p = provenance()
    return {"version": p["version"], "commit": (p["commit"] or "") + ("+dirty" if p["dirty"] else "")}


def registration(path: Path, commits: list[str]) -> dict | None:
    """Whether a pre-registered file came first: ``{"commit", "date"}`` of the commit that first added ``path``
    (a plan file) and, of ``commits`` (the rows' ``commit`` column, ``+dirty`` or not), ``after``: how many ran
    code that descends from it, ``before``: the commits that do not, ``unknown``: those this history lacks. None
    when ``path`` is in no git history (not committed yet, or no git)."""
    where = Path(path).resolve().parent
    added = _git(where, "log", "--diff-filter=A", "--format=%H %cI", "--", Path(path).name)
    if not added:
        return None
    first, date = added.splitlines()[-1].split(" ", 1)  # the oldest addition
    out = {"commit": first, "date": date, "after": 0, "before": [], "unknown": []}
    verdict: dict[str, str] = {}
    for c in commits:
        c = c.split("+", 1)[0]
        if c not in verdict:
            if _git(where, "cat-file", "-e", f"{c}^{{commit}}") is None:
                verdict[c] = "unknown"
            else:
                verdict[c] = "after" if _git(where, "merge-base", "--is-ancestor", first, c) is not None else "before"
        if verdict[c] == "after":
            out["after"] += 1
        elif c not in out[verdict[c]]:
            out[verdict[c]].append(c)
    return out


def uncommitted(path: Path) -> str | None:
    """``"not committed"`` or ``"changed since its commit"`` for a file inside a git checkout whose committed
    version is not the one on disk (a plan run so would not be the registered one); None when it is committed as
    it is, or outside any checkout."""
    path = Path(path).resolve()
    state = _git(path.parent, "status", "--porcelain", "--", path.name)
    if not state:
        return None
    return "not committed" if state.startswith("??") else "changed since its commit"
