"""``mediqa replay SRC DEST``: copy series into a folder file by file, the way a console exports.

Used by the demo, the end-to-end tests and the benchmark. Files are written in chunks straight
into DEST (a reader can see them half-written, as on a real console) unless ``--atomic``.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

HELP = """\
Copy every file under SRC into DEST at a given rate, keeping the relative layout, the way a scanner
console exports a series. DEST is created if needed. SRC is only read.

examples:
  mediqa replay /data/series1 /tmp/export --rate 200      200 files/s, chunked writes
  mediqa replay /data/study /tmp/export --rate 0 --atomic as fast as possible, temp name + rename
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("replay", help="copy series into a folder at a console-like rate",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", type=Path, help="folder (or file) to copy from")
    p.add_argument("dest", type=Path, help="export folder to copy into")
    p.add_argument("--rate", type=float, default=100.0, help="files per second (0 = no limit; default 100)")
    p.add_argument("--atomic", action="store_true", help="write to a temporary name, then rename")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mediqa.errors import MediqaError

    if not args.src.exists():
        raise MediqaError(f"{args.src} does not exist")
    n = replay(args.src, args.dest, rate=args.rate, atomic=args.atomic)
    print(f"replayed {n} files into {args.dest}")
    return 0


def check_replay(src: Path, dest: Path, rate: float) -> None:
    """SRC is only ever read: DEST equal to SRC, inside it or around it (after links and ``..``) is refused,
    as is a negative rate. Raises ``MediqaError`` (one line)."""
    from mediqa.errors import MediqaError

    if not rate >= 0:  # also NaN
        raise MediqaError(f"--rate {rate} is negative", "give files per second, or 0 for no limit")
    source, target = src.resolve(), dest.resolve()
    if src.is_dir() and (target == source or source in target.parents):
        raise MediqaError(f"DEST {dest} is {'SRC' if target == source else 'inside SRC'} ({src})",
                          "replay into a separate folder: SRC is only read, never written")
    if target in source.parents:  # a file's own folder included: its copy would overwrite it
        raise MediqaError(f"SRC {src} is inside DEST {dest}",
                          "replay into a separate folder: SRC is only read, never written")


def replay(src: Path, dest: Path, rate: float = 100.0, atomic: bool = False, chunk: int = 64 * 1024,
           sleep: Callable[[float], None] = time.sleep, on_file: Callable[[Path], None] | None = None) -> int:
    from mediqa.errors import MediqaError

    check_replay(src, dest, rate)
    files = [src] if src.is_file() else sorted(p for p in src.rglob("*") if p.is_file())
    interval = 1.0 / rate if rate > 0 else 0.0
    start = time.perf_counter()
    for i, path in enumerate(files):
        rel = path.name if src.is_file() else path.relative_to(src)
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists() and os.path.samefile(path, target):  # a hard link, a bind mount: never truncate SRC
            raise MediqaError(f"DEST file {target} is the SRC file {path} itself",
                              "replay into a separate folder: SRC is only read, never written")
        if atomic:
            tmp = target.with_name(f".{target.name}.part")
            shutil.copyfile(path, tmp)
            os.replace(tmp, target)
        else:
            with open(path, "rb") as fin, open(target, "wb") as fout:
                while block := fin.read(chunk):
                    fout.write(block)
        if on_file:
            on_file(target)
        if interval:
            delay = start + (i + 1) * interval - time.perf_counter()
            if delay > 0:
                sleep(delay)
    return len(files)
