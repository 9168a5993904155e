#!/usr/bin/env python3
"""mypy over the installed package layout (``make lint``), with errors reported at the source paths.

The design card's folders install under one namespace (``agent/`` -> ``mediqa.agent``; see setup.py).
mypy resolves imports from folders, not from the editable install's import hook, so on the source tree
it cannot find ``mediqa.agent`` and (with missing imports ignored) silently types every import across
packages as ``Any``. This script lays out ``build/typecheck/mediqa`` as the package installs (symbolic
links, by the same rule as setup.py), runs mypy on it and on ``scripts/``, and maps the reported paths
back to the repository's own (``build/typecheck/mediqa/agent/x.py`` -> ``agent/x.py``).

    python scripts/typecheck.py            # what `make lint` runs; exit status is mypy's
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TREE = REPO / "build" / "typecheck"
ROOT = "mediqa"


def layers() -> list[str]:
    """The packaging rule of setup.py: a top-level folder with an __init__.py installs as mediqa.<folder>."""
    return sorted(p.name for p in REPO.iterdir() if (p / "__init__.py").is_file() and p.name != ROOT)


def build_tree() -> Path:
    """Links for every module of the root package and every layer; idempotent, so two runs can overlap."""
    package = TREE / ROOT
    package.mkdir(parents=True, exist_ok=True)
    wanted = {e.name: e for e in (REPO / ROOT).iterdir() if e.name != "__pycache__"}
    wanted.update({layer: REPO / layer for layer in layers()})
    for link in package.iterdir():
        if link.name not in wanted or not link.is_symlink() or Path(os.readlink(link)) != wanted[link.name]:
            if link.is_dir() and not link.is_symlink():
                shutil.rmtree(link)
            else:
                link.unlink(missing_ok=True)
    for name, target in wanted.items():
        with contextlib.suppress(FileExistsError):  # another run made it a moment ago
            os.symlink(target, package / name)
    return package


def to_source(line: str) -> str:
    """``mediqa/agent/x.py`` (in the tree) -> ``agent/x.py``; ``mediqa/errors.py`` stays as it is."""
    match = re.match(rf"^{ROOT}/([^/:]+)/", line)
    if match and match.group(1) in layers():
        return line[len(ROOT) + 1:]
    return line


def main() -> int:
    build_tree()
    env = dict(os.environ, MYPYPATH=str(TREE))
    mypy = [sys.executable, "-m", "mypy", "--config-file", str(REPO / "pyproject.toml")]
    status = 0
    for args, cwd in (([*mypy, "-p", ROOT], TREE), ([*mypy, "scripts"], REPO)):
        run = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
        for line in (run.stdout + run.stderr).splitlines():
            print(to_source(line))
        status = status or run.returncode
    return status


if __name__ == "__main__":
    raise SystemExit(main())
