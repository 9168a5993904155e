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


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="check config, folders, limits, backends and model",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--folder", help="the export folder (overrides watch.folder)")
    p.add_argument("--show-config", action="store_true", help="print the resolved configuration as YAML")
    add_config_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mediqa.cli.common import config_from_args
    from mediqa.errors import MediqaError

    checks: list[Check] = []
    try:
        config = config_from_args(args)
    except MediqaError as exc:
        checks.append(("fail", "config", str(exc)))
        return _print(checks)
    checks.append(("ok", "config", args.config or "packaged default (configs/agent.yaml)"))
    if args.show_config:
        import yaml

        print(yaml.safe_dump(config.to_dict(), sort_keys=False))
    folder = args.folder or config.watch.folder
    checks.extend(_folder_checks(Path(folder).expanduser() if folder else None, config.watch.mode))
    checks.extend(_state_checks(config.state_path, Path(folder).expanduser() if folder else None))
    checks.extend(_inotify_checks())
    checks.extend(_scorer_checks(config))
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
        return [("fail", "state dir", f"{state} is not writable ({exc.strerror}): fix permissions or state_dir")]
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
    from mediqa.agent.scoring.models import resolve_model
    from mediqa.engines import select_backend
    from mediqa.errors import MediqaError
    from mediqa.model_card import read_card

    needed = config.scoring.scorer == "learned"
    bad = "fail" if needed else "warn"
    try:
        path = resolve_model(config.scoring.model)
        card = read_card(path)
    except MediqaError as exc:
        return [(bad, "model", str(exc))]
    out: list[Check] = [("ok", "model", f"{path.name}: {card.name} v{card.version}, {card.score_label}")]
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
