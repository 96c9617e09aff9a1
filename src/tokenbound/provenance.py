"""Which tokenbound made a file: the package version and the git commit of the checkout.

`package_info()` is the one place that computes them; every file that records provenance
(config.json of a training run, meta.json of a stream, report.json, an experiment's
results.json) takes them from here. Importable by every package (like `tokenbound.errors`).
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

from tokenbound import __version__


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The commit of the tokenbound checkout in use, "+dirty" when tracked files are modified
    (None outside a git checkout). Computed once per process."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=5)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=here, capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() + ("+dirty" if dirty else "")


def package_info() -> dict:
    """`{"tokenbound_version": ..., "git_commit": ...}`."""
    return {"tokenbound_version": __version__, "git_commit": git_commit()}
