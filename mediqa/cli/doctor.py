"""``mediqa doctor``: checks an installation the way IT would, and says what to fix."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from mediqa.cli.common import add_config_options

if TYPE_CHECKING:
    from mediqa.agent.config import AgentConfig

HELP = """\
Check the configuration, the export folder (readable, not writable by need), inotify limits, the
state directory, the inference backends and the model. Exits 1 when something must be fixed.

examples:
  mediqa doctor --folder /data/export
  mediqa doctor --config /etc/mediqa/agent.yaml --show-config
"""

Check = tuple[str, str, str]  # (status: ok|warn|fail, what, detail / remedy)

DEFAULT_LISTEN = "127.0.0.1:8765"  # console.listen when the config has no console block
SERVICE_TIMEOUT_S = 2.0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="check config, folders, limits, backends and model",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--folder", help="the export folder (overrides watch.folder)")
    p.add_argument("--show-config", action="store_true", help="print the resolved configuration as YAML")
    add_config_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mediqa.cli.common import config_from_args, config_source
    from mediqa.errors import MediqaError

    checks: list[Check] = []
    source = config_source(args)
    try:
        config = config_from_args(args)
    except MediqaError as exc:
        checks.append(("fail", "config", f"{source.describe()}: {exc}"))
        return _print(checks)
    checks.append(("ok", "config", source.describe()))
    if args.show_config:
        import yaml

        print(yaml.safe_dump(config.to_dict(), sort_keys=False))
    folder = args.folder or config.watch.folder
    checks.extend(_folder_checks(Path(folder).expanduser() if folder else None, config.watch.mode))
    checks.extend(_state_checks(config.state_path, Path(folder).expanduser() if folder else None))
    checks.extend(_inotify_checks())
    checks.extend(_scorer_checks(config))
    checks.extend(_service_checks(config))
    return _print(checks)


def _folder_checks(folder: Path | None, mode: str) -> list[Check]:
    if folder is None:
        return [("fail", "export folder", "not set: pass --folder DIR or set watch.folder")]
    if not folder.is_dir():
        return [("fail", "export folder", f"{folder} does not exist (is the share mounted?)")]
    out: list[Check] = []
    if not os.access(folder, os.R_OK | os.X_OK):
        out.append(("fail", "export folder", f"{folder} is not readable by this user: grant read access"))
    else:
        out.append(("ok", "export folder", f"{folder} is readable"))
    if os.access(folder, os.W_OK):
        out.append(("warn", "export folder", "is writable by the agent's user; read-only access is enough "
                                              "(the agent never writes there)"))
    fs = _filesystem_type(folder)
    if fs in ("cifs", "smb3", "nfs", "nfs4", "fuse.sshfs") and mode != "polling":
        out.append(("warn", "watch mode", f"{folder} is on {fs}: network mounts raise no file events; "
                                           "set watch.mode: polling"))
    return out


def _state_checks(state: Path, folder: Path | None) -> list[Check]:
    if folder is not None and (state.resolve() == folder.resolve() or folder.resolve() in state.resolve().parents):
        return [("fail", "state dir", f"{state} is inside the export folder: choose another state_dir")]
    try:
        state.mkdir(parents=True, exist_ok=True)
        probe = state / ".doctor-probe"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        from mediqa.cli.common import permission_remedy

        return [("fail", "state dir", f"{state} is not writable ({exc.strerror}): "
                                      f"{permission_remedy('doctor')}, or set state_dir")]
    return [("ok", "state dir", f"{state} is writable")]


def _inotify_checks() -> list[Check]:
    if not sys.platform.startswith("linux"):
        return []
    out: list[Check] = []
    for name, minimum in (("max_user_watches", 8192), ("max_user_instances", 128)):
        try:
            value = int(Path(f"/proc/sys/fs/inotify/{name}").read_text())
        except (OSError, ValueError):
            continue
        status = "ok" if value >= minimum else "warn"
        hint = "" if status == "ok" else f" (raise with sysctl fs.inotify.{name}={minimum * 8})"
        out.append((status, f"inotify {name}", f"{value}{hint}; one watch per folder is used"))
    return out


def _scorer_checks(config: AgentConfig) -> list[Check]:
    from mediqa.agent.scoring.factory import make_scorer
    from mediqa.errors import MediqaError

    out: list[Check] = _model_checks(config)
    if config.scoring.scorer == "learned" and any(c[1] == "model gate" and c[0] == "fail" for c in out):
        return out  # refused: the agent would stop there too, nothing more to try
    try:
        scorer = make_scorer(config)
    except MediqaError as exc:
        return [*out, ("fail", "scorer", str(exc))]
    describe: Callable[[], str] | None = getattr(scorer, "describe", None)
    out.append(("ok", "scorer", f"{scorer.name} on {scorer.backend}" + (f": {describe()}" if describe else "")))
    scorer.close()
    return out


def _model_checks(config: AgentConfig) -> list[Check]:
    """The model and the backend chain, shown even when the classical scorer is configured."""
    from mediqa.agent.scoring.models import OVERRIDE, evaluation_problems, file_sha256, resolve_model
    from mediqa.engines import select_backend
    from mediqa.errors import MediqaError
    from mediqa.model_card import read_card

    needed = config.scoring.scorer == "learned"
    bad = "fail" if needed else "warn"
    try:
        path = resolve_model(config.scoring.model)
        card = read_card(path)
        sha256 = file_sha256(path)
    except (MediqaError, OSError) as exc:
        return [(bad, "model", str(exc))]
    out: list[Check] = [("ok", "model", f"{path.name}: {card.name} v{card.version}, sha256 {sha256[:12]}, "
                                        f"{card.score_label}")]
    problems = evaluation_problems(card)
    if not problems:
        ev = card.metrics["evaluation"]
        floor = ", ".join(f"{k} >= {v:g}" for k, v in ev["floor"].items())
        data = "-".join(str(ev[k]) for k in ("dataset", "dataset_version") if ev.get(k))
        out.append(("ok", "model gate", f"evaluated: quality SRCC {ev['quality']['srcc']:.3f} on "
                                        f"{data or 'its evaluation set'} {ev.get('split', '')} (floor {floor})"))
    elif getattr(config.scoring, "allow_unevaluated_model", False):
        out.append(("warn", "model gate", f"UNEVALUATED model allowed by {OVERRIDE}: true: {'; '.join(problems)}; "
                                          "remove the override once an evaluated model is deployed"))
    else:
        out.append((bad, "model gate", f"refused: {'; '.join(problems)} (deploy an evaluated model, or set "
                                       f"{OVERRIDE}: true to run it anyway)"))
    try:
        backend, skipped = select_backend(path, config.scoring.backends, threads=config.scoring.threads,
                                          engine_cache=config.engine_cache_path, slices=config.scoring.slices)
    except MediqaError as exc:
        return [*out, (bad, "backends", str(exc))]
    for reason in skipped:
        status = "warn" if reason.kind in ("engine", "gate", "load") else "ok"
        out.append((status, f"backend {reason.backend}", f"skipped: {reason.message}"
                    + (f" ({reason.remedy})" if reason.remedy else "")))
    out.append(("ok", "backend in use", backend.describe()))
    backend.close()
    return out


def _service_checks(config: AgentConfig) -> list[Check]:
    """A running agent, asked through its console's ``/healthz`` and ``/metrics`` (loopback only)."""
    listen = str(getattr(getattr(config, "console", None), "listen", DEFAULT_LISTEN) or "")
    if listen.strip().lower() in ("", "off", "no", "false"):
        return [("ok", "service", "not checked: the console is off (console.listen: off)")]
    host, sep, port = listen.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not port.isdigit():
        return [("warn", "service", f"not checked: console.listen {listen!r} is not host:port")]
    ask = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)  # a wildcard answers on loopback
    if not _is_loopback(ask):
        return [("warn", "service", f"not checked: console.listen {listen} is not a loopback address "
                                    "(doctor only asks localhost)")]
    base = f"http://{'[' + ask + ']' if ':' in ask else ask}:{int(port)}"
    try:
        code, body = _fetch(f"{base}/healthz", SERVICE_TIMEOUT_S)
    except OSError as exc:
        reason = getattr(exc, "reason", exc)
        return [("warn", "service", f"not running (nothing answers on {base.removeprefix('http://')}: "
                                    f"{_short(reason)}); start it with: sudo systemctl start mediqa-agent")]
    health = _json_object(body)
    status = str(health.get("status", ""))
    if code == 200 and status == "ok":
        out: list[Check] = [("ok", "service", f"running, healthy ({base}/healthz)")]
    elif status == "degraded":
        listed = health.get("reasons")
        reasons = "; ".join(str(r) for r in listed) if isinstance(listed, list) and listed else "no reason given"
        out = [("fail", "service", f"running but degraded: {reasons} (journalctl -u mediqa-agent -p warning)")]
    else:
        return [("warn", "service", f"{base}/healthz answered HTTP {code} without a MedIQA status: is something "
                                    "else listening on that port?")]
    try:
        code, body = _fetch(f"{base}/metrics", SERVICE_TIMEOUT_S)
    except OSError as exc:
        return [*out, ("warn", "service metrics", f"{base}/metrics did not answer ({_short(exc)})")]
    if code != 200:
        return [*out, ("warn", "service metrics", f"{base}/metrics answered HTTP {code}")]
    scored = _metric_total(body.decode("utf-8", "replace"), "mediqa_series_scored_total")
    detail = f"{scored:g} series scored since start" if scored is not None else "answered (no series counter yet)"
    return [*out, ("ok", "service metrics", detail)]


def _fetch(url: str, timeout: float) -> tuple[int, bytes]:
    """GET ``url`` (always a loopback one) with no proxy: (HTTP status, body). Raises ``OSError``."""
    import urllib.error
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through $http_proxy
    try:
        with opener.open(urllib.request.Request(url, headers={"Accept": "application/json"}), timeout=timeout) as r:
            return int(r.status), r.read(1 << 20)
    except urllib.error.HTTPError as exc:  # 503 degraded is an answer, not a failure
        return int(exc.code), exc.read(1 << 20)


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _json_object(body: bytes) -> dict[str, object]:
    import json

    try:
        data = json.loads(body or b"{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _metric_total(text: str, name: str) -> float | None:
    """The sum of a Prometheus counter over its label sets (None when absent)."""
    total, seen = 0.0, False
    for line in text.splitlines():
        rest = line[len(name):] if line.startswith(name) else ""
        if not rest or rest[0] not in "{ ":
            continue
        fields = (rest.rpartition("}")[2] if rest[0] == "{" else rest).split()  # value [timestamp]
        try:
            total += float(fields[0])
            seen = True
        except (IndexError, ValueError):
            continue
    return total if seen else None


def _short(value: object) -> str:
    return " ".join(str(value).split())[:120]


def _filesystem_type(path: Path) -> str:
    try:
        best, fstype = "", ""
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and str(path.resolve()).startswith(parts[1]) and len(parts[1]) > len(best):
                best, fstype = parts[1], parts[2]
        return fstype
    except OSError:
        return ""


def _print(checks: list[Check]) -> int:
    marks = {"ok": "  ok ", "warn": " warn", "fail": " FAIL"}
    for status, what, detail in checks:
        print(f"{marks[status]}  {what:<24} {detail}")
    failed = sum(1 for c in checks if c[0] == "fail")
    print(f"{failed} problem(s) to fix" if failed else "all checks passed")
    return 1 if failed else 0
