#!/usr/bin/env bash
# CI check of the Debian package, end to end, on a Debian 12 machine, as root:
#   build (make deb) -> dpkg -i -> files, user, permissions, conffile -> systemd-analyze security
#   (exposure <= 2.0) and verify -> the unit's ExecStart run as the mediqa user on a temporary export
#   folder and config -> /healthz -> READY=1 / WATCHDOG=1 on a stand-in notify socket -> replay a
#   generated series -> /metrics mediqa_series_scored_total >= 1 -> SIGTERM, exit 0 -> rebuild with a
#   bumped version -> upgrade keeps state DB, results and a locally edited conffile -> purge removes it all.
# systemd does not run here (CI machines are containers): the ExecStart line is run with setpriv, so the
# sandbox directives are checked by systemd-analyze, not enforced. Every step has a time limit.
#
#   bash packaging/ci/deb_check.sh            exit 0 = all passed; otherwise the code of the failed step
#   DEB_CHECK_KEEP=1 bash packaging/ci/deb_check.sh   leave the package installed and the work dir on failure
#
# Exit codes: 2 preconditions; 10 build; 11 install; 12 installed files/user/perms/conffile;
# 13 systemd-analyze; 20 agent exited before /healthz; 21 no /healthz; 22 no READY=1/WATCHDOG=1;
# 23 replay; 24 series not scored (/metrics); 25 stop; 30 rebuild; 31 upgrade; 32 state or conffile
# not kept; 40 purge; 41 leftovers after purge.
set -uo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
PKG=mediqa-edge
UNIT=/usr/lib/systemd/system/mediqa-agent.service
STATE=/var/lib/mediqa
CONF=/etc/mediqa/agent.yaml
VENV_PY=/opt/mediqa/bin/python
MAX_EXPOSURE=2.0
BUILD_TIMEOUT=${DEB_CHECK_BUILD_TIMEOUT:-1500}   # the first build downloads ~150 MB of wheels
HEALTH_TIMEOUT=${DEB_CHECK_HEALTH_TIMEOUT:-90}
SCORE_TIMEOUT=${DEB_CHECK_SCORE_TIMEOUT:-120}
KEEP=${DEB_CHECK_KEEP:-0}

WORK=""
AGENT_PID=""
AGENT_RC=""
LISTENER_PID=""
INSTALLED=0
STEP=0
T0=$SECONDS

say() { printf '%s\n' "$*"; }
step() { STEP=$((STEP + 1)); STEP_T0=$SECONDS; say ""; say "[$STEP] $*"; }
ok() { say "    ok: $* ($((SECONDS - STEP_T0)) s)"; }
fail() {  # fail CODE MESSAGE...
    local code=$1
    shift
    say ""
    say "deb_check: FAILED at step $STEP (exit $code): $*" >&2
    exit "$code"
}
show_log() {  # show_log FILE TITLE: the last lines of a log, indented
    [ -s "$1" ] || return 0
    say "    --- $2 (last 40 lines) ---"
    tail -n 40 "$1" | sed 's/^/    | /'
}

cleanup() {
    local rc=$?
    [ -n "$AGENT_PID" ] && kill -TERM "$AGENT_PID" 2>/dev/null && sleep 2 && kill -KILL "$AGENT_PID" 2>/dev/null
    [ -n "$LISTENER_PID" ] && kill "$LISTENER_PID" 2>/dev/null
    if [ "$rc" -ne 0 ] && [ "$KEEP" = 1 ]; then
        say "deb_check: DEB_CHECK_KEEP=1: package left installed, work dir kept: $WORK"
        return
    fi
    if [ "$INSTALLED" = 1 ] && dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null | grep -q installed; then
        timeout 120 dpkg --purge "$PKG" >/dev/null 2>&1 || say "deb_check: cleanup: dpkg --purge $PKG failed" >&2
    fi
    [ -n "$WORK" ] && rm -rf "$WORK"
    say "deb_check: finished with exit $rc after $((SECONDS - T0)) s"
}
trap cleanup EXIT

http_get() {  # http_get URL: the body on stdout, non-zero if unreachable or not 2xx
    if command -v curl >/dev/null; then
        curl -fsS --max-time 3 "$1"
    else
        timeout 5 "$VENV_PY" -I -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode())' "$1"
    fi
}

agent_alive() { [ -n "$AGENT_PID" ] && kill -0 "$AGENT_PID" 2>/dev/null; }

reap_agent() {  # sets AGENT_RC to the agent's exit code once it has exited (it is our child)
    AGENT_RC=0
    wait "$AGENT_PID" 2>/dev/null || AGENT_RC=$?
    AGENT_PID=""
}

sha_tree() { (cd "$1" && find . -type f -print0 | sort -z | xargs -0 -r sha256sum); }

# --- 0. preconditions ---------------------------------------------------------------------------
step "preconditions"
[ "$(id -u)" = 0 ] || fail 2 "run as root (it installs and purges the package)"
for tool in dpkg dpkg-deb setpriv runuser systemd-analyze make timeout; do
    command -v "$tool" >/dev/null || fail 2 "$tool is missing"
done
if dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null | grep -q installed; then
    fail 2 "$PKG is already installed here: this check installs and purges it; remove it first"
fi
[ -e "$STATE" ] && fail 2 "$STATE exists without the package: refusing to risk someone's state (remove it first)"
WORK=$(mktemp -d /tmp/mediqa-deb-check.XXXXXX)
chmod 0711 "$WORK"  # the mediqa user must reach the export folder and the config inside
UPSTREAM=$(/usr/bin/python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' \
    "$REPO/pyproject.toml") || fail 2 "cannot read the version from pyproject.toml"
V1=${UPSTREAM}-1
V2=${UPSTREAM}-1+ci1
dpkg --compare-versions "$V2" gt "$V1" || fail 2 "version $V2 does not sort after $V1"
ARCH=$(dpkg --print-architecture)
ok "work dir $WORK; versions $V1 then $V2"

# --- 1. build -----------------------------------------------------------------------------------
step "make deb (DEB_VERSION=$V1)"
if ! DEB_VERSION=$V1 DEB_OUT=$WORK/dist timeout "$BUILD_TIMEOUT" make -C "$REPO" deb >"$WORK/build1.log" 2>&1; then
    show_log "$WORK/build1.log" "make deb"
    fail 10 "make deb failed (log above)"
fi
DEB1=$WORK/dist/${PKG}_${V1}_${ARCH}.deb
[ -f "$DEB1" ] || fail 10 "make deb did not produce $DEB1"
ok "$(basename "$DEB1"), $(du -h "$DEB1" | cut -f1)"

# --- 2. install ---------------------------------------------------------------------------------
step "dpkg -i"
INSTALLED=1
if ! timeout 300 dpkg -i "$DEB1" </dev/null >"$WORK/install1.log" 2>&1; then
    show_log "$WORK/install1.log" "dpkg -i"
    fail 11 "dpkg -i failed"
fi
grep -q "not started" "$WORK/install1.log" || fail 11 "postinst did not say how to set watch.folder (log: $WORK/install1.log)"
ok "installed $(dpkg-query -W -f='${Version}' "$PKG"); postinst printed the watch.folder steps"

# --- 3. files, user, permissions, conffile -------------------------------------------------------
step "installed files, user, permissions, conffile"
check() { "$@" >/dev/null 2>&1 || fail 12 "check failed: $*"; }
[ "$(readlink /usr/bin/mediqa)" = /opt/mediqa/bin/mediqa ] || fail 12 "/usr/bin/mediqa is not a link to /opt/mediqa/bin/mediqa"
[ "$(head -n1 /opt/mediqa/bin/mediqa)" = "#!/opt/mediqa/bin/python" ] \
    || fail 12 "bad shebang in /opt/mediqa/bin/mediqa: $(head -n1 /opt/mediqa/bin/mediqa)"
readlink -f "$VENV_PY" | grep -q '^/usr/bin/python3' || fail 12 "$VENV_PY does not resolve to the system python"
if left=$(grep -rlF "build/deb/root" /opt/mediqa | head -3) && [ -n "$left" ]; then
    fail 12 "files in /opt/mediqa still name the build's staging path: $left"
fi
check test -f "$UNIT"
check "$VENV_PY" -I -c 'import mediqa.cli.main, mediqa.agent.report.systemd_notify, mediqa.agent.report.journal_log, onnxruntime, pynetdicom, highdicom, prometheus_client'
"$VENV_PY" -I -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("torch") is not None)' \
    || fail 12 "torch is importable from /opt/mediqa: the runtime venv must not carry the training stack"
IFS=: read -r _ _ uid _ _ home shell < <(getent passwd mediqa) || fail 12 "no mediqa user"
[ "$uid" -lt 1000 ] || fail 12 "mediqa is not a system user (uid $uid)"
[ "$home" = "$STATE" ] || fail 12 "mediqa's home is $home, not $STATE"
case $shell in */nologin|/bin/false) ;; *) fail 12 "mediqa has a login shell: $shell";; esac
[ "$(stat -c '%a %U %G' "$STATE")" = "700 mediqa mediqa" ] || fail 12 "$STATE is $(stat -c '%a %U %G' "$STATE"), not 700 mediqa mediqa"
runuser -u mediqa -- test -w /opt/mediqa && fail 12 "/opt/mediqa is writable by the mediqa user"
runuser -u mediqa -- /usr/bin/mediqa --version >/dev/null 2>&1 || fail 12 "mediqa --version fails as the mediqa user"
dpkg-query -W -f='${Conffiles}\n' "$PKG" | grep -q " $CONF " || fail 12 "$CONF is not a conffile"
"$VENV_PY" -I - "$CONF" <<'PY' || fail 12 "$CONF does not have state_dir /var/lib/mediqa and an empty watch.folder"
import sys, yaml
data = yaml.safe_load(open(sys.argv[1], encoding="utf-8"))
assert data["state_dir"] == "/var/lib/mediqa" and not data["watch"]["folder"], data
PY
[ -L /etc/systemd/system/multi-user.target.wants/mediqa-agent.service ] || fail 12 "the unit was not enabled"
ok "links, shebangs, venv, no torch, user mediqa (uid $uid, $shell), $STATE 0700, conffile, unit enabled"

# --- 4. systemd-analyze ---------------------------------------------------------------------------
step "systemd-analyze security and verify on the installed unit"
timeout 60 systemd-analyze security --offline=yes "$UNIT" >"$WORK/security.log" 2>&1
exposure=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' "$WORK/security.log")
[ -n "$exposure" ] || { show_log "$WORK/security.log" "systemd-analyze security"; fail 13 "no exposure level in the output"; }
awk -v e="$exposure" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(e <= m) }' || {
    grep '✗' "$WORK/security.log" | sed 's/^/    /'
    fail 13 "exposure $exposure > $MAX_EXPOSURE"
}
if ! timeout 60 systemd-analyze verify "$UNIT" >"$WORK/verify.log" 2>&1; then
    show_log "$WORK/verify.log" "systemd-analyze verify"
    fail 13 "systemd-analyze verify failed"
fi
ok "exposure $exposure (<= $MAX_EXPOSURE), verify clean"

# --- 5. the unit's ExecStart as the mediqa user ----------------------------------------------------
step "run the unit's ExecStart as mediqa on a temporary export folder (127.0.0.1 only)"
EXPORT=$WORK/export
mkdir -m 0755 "$EXPORT"
PORT=$("$VENV_PY" -I -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$WORK/agent.yaml" <<YAML
# deb_check's temporary config: the packaged defaults plus a folder and a local listener.
watch:
  folder: $EXPORT
console:
  listen: 127.0.0.1:$PORT
YAML
chmod 0644 "$WORK/agent.yaml"
# ExecStart= and Environment= from the installed unit; --config points at the temporary config.
"$VENV_PY" -I - "$UNIT" "$WORK/agent.yaml" "$WORK/exec.args" "$WORK/exec.env" <<'PY' || fail 20 "cannot parse ExecStart= from $UNIT"
import shlex, sys
unit, config, args_out, env_out = sys.argv[1:]
text = open(unit, encoding="utf-8").read().replace("\\\n", " ")
section, execs, envs = "", [], []
for line in (raw.strip() for raw in text.splitlines()):
    if line.startswith("["):
        section = line
    elif section == "[Service]" and "=" in line and not line.startswith(("#", ";")):
        key, _, value = line.partition("=")
        if key == "ExecStart":
            execs.append(value)
        elif key == "Environment":
            envs += shlex.split(value)
if len(execs) != 1:
    sys.exit(f"expected one ExecStart=, found {len(execs)}")
args = shlex.split(execs[0].lstrip("-@:+!|"))
if "--config" in args:
    args[args.index("--config") + 1] = config
else:
    args += ["--config", config]
open(args_out, "w").write("\0".join(args) + "\0")
open(env_out, "w").write("\0".join(envs) + ("\0" if envs else ""))
PY
mapfile -d '' ARGS <"$WORK/exec.args"
mapfile -d '' UNIT_ENV <"$WORK/exec.env"
say "    ExecStart: ${ARGS[*]}"
# A stand-in for systemd's notify socket (abstract: no file permissions for the mediqa user to need).
NOTIFY_NAME=mediqa-deb-check-$$
timeout 1800 "$VENV_PY" -I -c '
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("\0" + sys.argv[1])
with open(sys.argv[2], "a", encoding="utf-8") as log:
    while True:
        log.write(s.recv(65536).decode("utf-8", "replace") + "\n")
        log.flush()
' "$NOTIFY_NAME" "$WORK/notify.log" &
LISTENER_PID=$!
(
    umask 0077
    cd /
    exec timeout --kill-after=10 900 setpriv --reuid=mediqa --regid=mediqa --init-groups --no-new-privs \
        --inh-caps=-all --bounding-set=-all -- \
        env -i PATH=/usr/bin:/bin HOME="$STATE" LANG=C.UTF-8 "${UNIT_ENV[@]}" \
        NOTIFY_SOCKET="@$NOTIFY_NAME" WATCHDOG_USEC=10000000 "${ARGS[@]}"
) >"$WORK/agent.log" 2>&1 &
AGENT_PID=$!
ok "agent started (pid $AGENT_PID), console on 127.0.0.1:$PORT"

step "wait for /healthz (up to $HEALTH_TIMEOUT s)"
deadline=$((SECONDS + HEALTH_TIMEOUT))
until http_get "http://127.0.0.1:$PORT/healthz" >"$WORK/healthz.txt" 2>/dev/null; do
    if ! agent_alive; then
        reap_agent
        show_log "$WORK/agent.log" "agent output"
        fail 20 "the agent exited with code $AGENT_RC before /healthz answered. If the log says the key 'console' is" \
            "unknown, the console listener (console.listen serving /healthz and /metrics) is not in this build yet"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
        show_log "$WORK/agent.log" "agent output"
        fail 21 "no answer from http://127.0.0.1:$PORT/healthz after $HEALTH_TIMEOUT s although the agent runs:" \
            "is console.listen implemented (mediqa watch serving /healthz and /metrics)?"
    fi
    sleep 0.5
done
ok "/healthz: $(head -c 200 "$WORK/healthz.txt" | tr '\n' ' ')"

step "sd_notify: READY=1 and WATCHDOG=1 on the stand-in socket"
deadline=$((SECONDS + 15))
until grep -q '^READY=1' "$WORK/notify.log" 2>/dev/null && grep -q '^WATCHDOG=1' "$WORK/notify.log" 2>/dev/null; do
    if [ "$SECONDS" -ge "$deadline" ]; then
        show_log "$WORK/notify.log" "notify messages"
        fail 22 "no READY=1 and WATCHDOG=1 within 15 s of /healthz: the unit is Type=notify with WatchdogSec=," \
            "so the agent must call systemd_notify.ready() after warm-up and Heartbeat.beat() in its loop"
    fi
    sleep 0.5
done
ok "$(sort -u "$WORK/notify.log" | grep -c .) distinct messages: $(sort -u "$WORK/notify.log" | cut -c1-40 | tr '\n' ' ')"

step "replay a generated CT series into the export folder"
timeout 120 "$VENV_PY" -I -c 'import sys; from pathlib import Path; from mediqa.agent.samples import write_phantom_ct; write_phantom_ct(Path(sys.argv[1]), noise_hu=4.0, seed=0)' "$WORK/series" \
    || fail 23 "could not generate the phantom series"
timeout 120 /opt/mediqa/bin/mediqa replay "$WORK/series" "$EXPORT/ct1" --rate 50 >"$WORK/replay.log" 2>&1 \
    || { show_log "$WORK/replay.log" "replay"; fail 23 "mediqa replay failed"; }
ok "$(cat "$WORK/replay.log")"

step "poll /metrics until mediqa_series_scored_total >= 1 (up to $SCORE_TIMEOUT s)"
deadline=$((SECONDS + SCORE_TIMEOUT))
scored=0
while :; do
    if http_get "http://127.0.0.1:$PORT/metrics" >"$WORK/metrics.txt" 2>/dev/null; then
        scored=$(awk '$1 ~ /^mediqa_series_scored_total($|\{)/ { s += $NF } END { print s + 0 }' "$WORK/metrics.txt")
        awk -v s="$scored" 'BEGIN { exit !(s >= 1) }' && break
    fi
    agent_alive || { show_log "$WORK/agent.log" "agent output"; fail 24 "the agent exited while the series was pending"; }
    if [ "$SECONDS" -ge "$deadline" ]; then
        show_log "$WORK/agent.log" "agent output"
        grep -m5 '^mediqa_' "$WORK/metrics.txt" 2>/dev/null | sed 's/^/    metrics: /'
        fail 24 "mediqa_series_scored_total is $scored after $SCORE_TIMEOUT s (expected >= 1)"
    fi
    sleep 1
done
[ -s "$STATE/results.jsonl" ] || fail 24 "the series was scored but $STATE/results.jsonl is empty"
ok "mediqa_series_scored_total $scored; results.jsonl has $(wc -l <"$STATE/results.jsonl") line(s)"

step "stop with SIGTERM (as systemd does; TimeoutStopSec=30)"
kill -TERM "$AGENT_PID"
deadline=$((SECONDS + 35))
while agent_alive && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.5; done
agent_alive && fail 25 "the agent did not stop within 35 s of SIGTERM"
reap_agent
[ "$AGENT_RC" = 0 ] || { show_log "$WORK/agent.log" "agent output"; fail 25 "the agent exited with $AGENT_RC on SIGTERM (expected 0)"; }
grep -q '^STOPPING=1' "$WORK/notify.log" || say "    warning: no STOPPING=1 was sent (systemd_notify.stopping() on SIGTERM)"
kill "$LISTENER_PID" 2>/dev/null
LISTENER_PID=""
ok "exit 0"

# --- 6. upgrade -----------------------------------------------------------------------------------
step "edit the conffile locally and record the state"
printf '# edited locally by deb_check at %s: must survive the upgrade\n' "$(date -u +%FT%TZ)" >>"$CONF"
conf_sha=$(sha256sum "$CONF" | cut -d' ' -f1)
sha_tree "$STATE" >"$WORK/state-before.sha"
if ! grep -q 'state.sqlite$' "$WORK/state-before.sha" || ! grep -q 'results.jsonl$' "$WORK/state-before.sha"; then
    fail 32 "the state dir lacks state.sqlite or results.jsonl: $(cut -c67- "$WORK/state-before.sha" | tr '\n' ' ')"
fi
ok "$(wc -l <"$WORK/state-before.sha") state files recorded"

step "make deb (DEB_VERSION=$V2)"
if ! DEB_VERSION=$V2 DEB_OUT=$WORK/dist timeout "$BUILD_TIMEOUT" make -C "$REPO" deb >"$WORK/build2.log" 2>&1; then
    show_log "$WORK/build2.log" "make deb"
    fail 30 "the second make deb failed"
fi
DEB2=$WORK/dist/${PKG}_${V2}_${ARCH}.deb
[ -f "$DEB2" ] || fail 30 "make deb did not produce $DEB2"
ok "$(basename "$DEB2")"

step "upgrade with dpkg -i (no prompt allowed: stdin is /dev/null)"
if ! timeout 300 dpkg -i "$DEB2" </dev/null >"$WORK/install2.log" 2>&1; then
    show_log "$WORK/install2.log" "dpkg -i (upgrade)"
    fail 31 "the upgrade failed"
fi
[ "$(dpkg-query -W -f='${Version}' "$PKG")" = "$V2" ] || fail 31 "installed version is not $V2"
ok "now $V2"

step "state DB, results and the edited conffile are kept"
[ "$(sha256sum "$CONF" | cut -d' ' -f1)" = "$conf_sha" ] || fail 32 "$CONF changed during the upgrade"
ls /etc/mediqa/*.dpkg-* >/dev/null 2>&1 && fail 32 "dpkg left $(ls /etc/mediqa/*.dpkg-*)"
sha_tree "$STATE" >"$WORK/state-after.sha"
diff "$WORK/state-before.sha" "$WORK/state-after.sha" >/dev/null || fail 32 "the state dir changed during the upgrade"
[ "$(stat -c '%a %U %G' "$STATE")" = "700 mediqa mediqa" ] || fail 32 "$STATE permissions changed: $(stat -c '%a %U %G' "$STATE")"
ok "conffile and $(wc -l <"$WORK/state-after.sha") state files identical"

# --- 7. purge -------------------------------------------------------------------------------------
step "dpkg --purge"
if ! timeout 300 dpkg --purge "$PKG" </dev/null >"$WORK/purge.log" 2>&1; then
    show_log "$WORK/purge.log" "dpkg --purge"
    fail 40 "dpkg --purge failed"
fi
INSTALLED=0
left=""
for path in /opt/mediqa /usr/bin/mediqa "$UNIT" /etc/mediqa "$STATE" /etc/systemd/system/multi-user.target.wants/mediqa-agent.service; do
    [ -e "$path" ] || [ -L "$path" ] && left="$left $path"
done
[ -z "$left" ] || fail 41 "left after purge:$left"
dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null | grep -q installed && fail 41 "dpkg still lists $PKG as installed"
ok "package, venv, unit, config and state removed (the mediqa user is kept, as Debian does)"

say ""
say "deb_check: all $STEP steps passed"
