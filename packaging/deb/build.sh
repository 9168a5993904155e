#!/usr/bin/env bash
# `make deb`: build dist/mediqa-edge_<version>_<arch>.deb from this checkout. Needs: Debian 12 (or a
# distribution with the same python3.X the package will depend on) with python3-venv; network access
# to PyPI the first time (later runs use uv's cache). Runs as any user (no root, no fakeroot).
#
#   DEB_VERSION=0.1.0-2 make deb        the full Debian version (default: <pyproject version>-1)
#   DEB_PYTHON=/usr/bin/python3.11      the interpreter the venv is built on and depends on
#   DEB_OUT=dist  DEB_WORK=build/deb    where the .deb and the staging tree go
#
# How the venv works at /opt/mediqa although it is built elsewhere: it is created inside the staging
# root at $DEB_WORK/root/opt/mediqa from the system interpreter (its bin/python links to
# /usr/bin/python3.X), filled from the hashed lock, then every text file that names the staging path
# (the console scripts' shebangs, bin/activate*, pyvenv.cfg) is rewritten to /opt/mediqa, and the
# build fails if any file still names it. Byte code is compiled last, with the final paths and
# unchecked-hash validation, so the read-only /opt/mediqa never needs (or tries) a rewrite.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
# shellcheck source=packaging/deb/tools.sh
source packaging/deb/tools.sh

PREFIX=/opt/mediqa
PACKAGE=mediqa-edge
RUNTIME_LOCK=packaging/requirements-runtime.lock
WORK=$(realpath -m "${DEB_WORK:-build/deb}")
OUT=$(realpath -m "${DEB_OUT:-dist}")
PYTHON=$(readlink -f "${DEB_PYTHON:-/usr/bin/python3}")
STAGE=$WORK/root
VENV=$STAGE$PREFIX

step() { echo "==> $*"; }
die() { echo "make deb: $*" >&2; exit 1; }

case "$STAGE" in *[!A-Za-z0-9/._+-]*) die "the work dir $WORK has characters a path rewrite cannot take";; esac
[ -x "$PYTHON" ] || die "no interpreter at ${DEB_PYTHON:-/usr/bin/python3}"
[ -f "$RUNTIME_LOCK" ] || die "$RUNTIME_LOCK is missing: run make lock"
PYVER=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
UPSTREAM=$("$PYTHON" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
VERSION=${DEB_VERSION:-$UPSTREAM-1}
[[ $VERSION =~ ^[0-9][A-Za-z0-9.+~-]*$ ]] || die "DEB_VERSION=$VERSION is not a Debian version (e.g. 0.1.0-2)"
ARCH=$(dpkg --print-architecture 2>/dev/null || echo amd64)
[ "$PYVER" = 3.11 ] || echo "make deb: warning: the lock is resolved for Python 3.11, building on $PYVER" >&2

ensure_tools pinned-only

step "source: a clean copy of the checkout (tracked and untracked, not ignored) in $WORK/src"
rm -rf "$WORK/src" "$WORK/wheel" "$STAGE"
mkdir -p "$WORK/src" "$WORK/wheel" "$OUT"
"$PYTHON" - "$REPO" "$WORK/src" <<'PY'
import shutil, subprocess, sys
from pathlib import Path
repo, dest = Path(sys.argv[1]), Path(sys.argv[2])
try:
    out = subprocess.run(["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         check=True, capture_output=True).stdout
    files = [Path(p) for p in out.decode().split("\0") if p]
except (OSError, subprocess.CalledProcessError):  # not a git checkout: everything but the usual droppings
    skip = {".git", ".venv", "build", "dist", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
    files = [p.relative_to(repo) for p in repo.rglob("*") if p.is_file() and not skip & set(p.relative_to(repo).parts)]
for rel in files:
    src = repo / rel
    if src.is_file() and not src.is_symlink():  # tracked files deleted in the work tree are left out
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / rel)
PY

step "wheel (setuptools pinned by $TOOLS_LOCK)"
"$UV" build --quiet --wheel --out-dir "$WORK/wheel" --build-constraint "$TOOLS_LOCK" "$WORK/src"
WHEEL=$(ls "$WORK"/wheel/*.whl)
"$PYTHON" - "$WHEEL" <<'PY'
import sys, zipfile
names = set(zipfile.ZipFile(sys.argv[1]).namelist())
need = ["mediqa/configs/agent.yaml", "mediqa/agent/models/edge-default.onnx", "mediqa/cli/main.py",
        "mediqa/agent/report/systemd_notify.py", "mediqa/agent/report/journal_log.py"]
missing = [n for n in need if n not in names]
if missing:
    sys.exit(f"make deb: the wheel lacks {missing}")
PY

step "venv at $PREFIX (staged in $STAGE) from $PYTHON, runtime lock with hashes"
"$PYTHON" -m venv --without-pip "$VENV"
"$UV" pip install --quiet --python "$VENV/bin/python" --require-hashes --no-deps --only-binary :all: \
    --link-mode copy -r "$RUNTIME_LOCK"
"$UV" pip install --quiet --python "$VENV/bin/python" --no-deps --link-mode copy "$WHEEL"
"$UV" pip check --python "$VENV/bin/python" \
    || die "the lock does not satisfy the project's dependencies: run make lock (and commit the lock)"
if "$UV" pip list --python "$VENV/bin/python" --format freeze | grep -Ei '^(torch|torchvision)=='; then
    die "torch reached the runtime venv"
fi

step "relocate: $VENV -> $PREFIX"
grep -rlIF -- "$VENV" "$VENV" | while IFS= read -r f; do
    sed -i "s#$VENV#$PREFIX#g" "$f"
done
if left=$(grep -rlF -- "$STAGE" "$VENV"); then
    die "files still name the staging path: $left"
fi
for f in "$VENV"/bin/*; do
    if [ ! -f "$f" ] || [ -L "$f" ]; then continue; fi
    if head -c2 "$f" | grep -q '#!'; then
        case $(head -n1 "$f") in
        "#!$PREFIX/bin/python"*|"#!/bin/sh"|"#!/bin/bash"|"#!/usr/bin/env "*) ;;
        *) die "unexpected shebang in $f: $(head -n1 "$f")";;
        esac
    fi
done

step "conffile /etc/mediqa/agent.yaml (state_dir: /var/lib/mediqa, watch.folder empty)"
"$PYTHON" packaging/deb/make_conffile.py configs/agent.yaml "$STAGE/etc/mediqa/agent.yaml"
# -I: isolated (the checkout's own mediqa/ in the current directory must not shadow the venv's); -B: no byte code yet.
"$VENV/bin/python" -I -B - "$STAGE/etc/mediqa/agent.yaml" <<'PY'
import sys
from mediqa.agent.config import load_config
config = load_config(sys.argv[1])
assert config.state_dir == "/var/lib/mediqa", config.state_dir
assert config.watch.folder == "", config.watch.folder
PY

step "byte code (final paths, unchecked-hash)"
"$VENV/bin/python" -m compileall -q -f -j 0 -s "$STAGE" -p / --invalidation-mode unchecked-hash "$VENV/lib" >/dev/null \
    || echo "make deb: warning: some files did not compile (kept as source)" >&2
if left=$(grep -rlF -- "$STAGE" "$VENV"); then
    die "byte code names the staging path: $(echo "$left" | head -3)"
fi

step "docs"
DOC=$STAGE/usr/share/doc/$PACKAGE
mkdir -p "$DOC"
{ echo "MedIQA Edge (mediqa-edge), licensed under the Apache License, Version 2.0:"; echo; cat LICENSE; } > "$DOC/copyright"
cp docs/*.md docs/*.png README.md "$DOC/"  # every page the agent's messages and config name (docs/dicom.md ...)
cp "$RUNTIME_LOCK" "$DOC/requirements-runtime.lock"

step "package"
DEB=$OUT/${PACKAGE}_${VERSION}_${ARCH}.deb
rm -f "$DEB"
MEDIQA_STAGE=$STAGE MEDIQA_DEB_VERSION=$VERSION MEDIQA_DEB_ARCH=$ARCH MEDIQA_DEB_PYTHON=python$PYVER \
MEDIQA_DEB_MAINTAINER=${DEB_MAINTAINER:-MedIQA Edge maintainers <mediqa-edge@example.invalid>} \
    "$NFPM" package --config packaging/deb/nfpm.yaml --packager deb --target "$DEB" >/dev/null
echo "built $DEB ($(du -h "$DEB" | cut -f1); installed size $(du -sh "$STAGE" | cut -f1))"
