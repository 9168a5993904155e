"""Options and set-up shared by the agent's commands (config, state dir, scorer)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mediqa.agent.config import AgentConfig, load_config
from mediqa.errors import ConfigError, MediqaError

log = logging.getLogger("mediqa")

SERVICE_USER = "mediqa"

# Where the installed service's configuration lives (the .deb's conffile). A module constant so tests can
# point it elsewhere; every command that reads the agent's config or state finds it the same way.
SYSTEM_CONFIG = Path("/etc/mediqa/agent.yaml")
CONFIG_ENV = "MEDIQA_CONFIG"
# Commands that work in their own temporary folders: only --config, else the packaged default.
PACKAGED_ONLY = frozenset({"demo"})
PACKAGED = "packaged default"


class OptionError(MediqaError):
    """A malformed command-line option (``--set`` that is not KEY=VALUE): a user error (exit 1) even under
    ``mediqa watch``, where errors in the configuration itself are ``ConfigError`` (exit 78)."""


@dataclass(frozen=True)
class ConfigSource:
    """Which configuration file a command reads, and why: ``how`` is --config, $MEDIQA_CONFIG, system or
    packaged default (``path`` None: the packaged configs/agent.yaml)."""

    path: Path | None
    how: str

    def describe(self) -> str:
        if self.path is None:
            return "packaged default (configs/agent.yaml)"
        return f"{self.path} ({self.how})"


def config_source(args: argparse.Namespace) -> ConfigSource:
    """``--config FILE``, else ``$MEDIQA_CONFIG``, else /etc/mediqa/agent.yaml when it exists, else packaged.

    So ``mediqa alerts`` or ``mediqa engine build`` run by an administrator read the service's file and
    therefore its state dir and engine cache. ``demo`` (temporary folders) takes only ``--config``.
    """
    given = getattr(args, "config", None)
    if given:
        return ConfigSource(Path(given).expanduser(), "--config")
    if getattr(args, "command", None) in PACKAGED_ONLY:
        return ConfigSource(None, PACKAGED)
    env = os.environ.get(CONFIG_ENV, "").strip()
    if env:
        return ConfigSource(Path(env).expanduser(), f"${CONFIG_ENV}")
    if os.path.lexists(SYSTEM_CONFIG):  # present but unreadable is an error below, never a silent default
        return ConfigSource(SYSTEM_CONFIG, "system")
    return ConfigSource(None, PACKAGED)


def load_config_source(source: ConfigSource, overrides: dict[str, Any] | None = None) -> AgentConfig:
    """``load_config`` on ``source``, with errors that say where the path came from."""
    if source.path is not None:
        try:
            readable = source.path.is_file() and os.access(source.path, os.R_OK)
        except OSError:
            readable = False
        if not readable:
            origin = {"--config": "given with --config", f"${CONFIG_ENV}": f"named by ${CONFIG_ENV}",
                      "system": "the installed service's configuration"}.get(source.how, source.how)
            if os.path.lexists(source.path):
                raise ConfigError(f"config file {source.path} ({origin}) cannot be read by this user",
                                  "check its permissions (it holds no secrets: mode 0644 is usual)")
            remedy = "check the path" if source.how == "--config" else f"fix the path, or unset ${CONFIG_ENV}"
            raise ConfigError(f"config file {source.path} ({origin}) does not exist", remedy)
    return load_config(source.path, overrides)


def add_config_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="YAML",
                   help=f"agent configuration (default: ${CONFIG_ENV}, else {SYSTEM_CONFIG} when it exists, "
                        "else the packaged configs/agent.yaml)")
    p.add_argument("--state-dir", metavar="DIR", help="override state_dir (SQLite state, results, engine cache)")
    p.add_argument("--scorer", choices=("learned", "classical"), help="override scoring.scorer")
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                   help="override any config key, e.g. --set completion.quiet_period_s.CT=3 (YAML value)")


def config_from_args(args: argparse.Namespace, **extra: Any) -> AgentConfig:
    import yaml

    overrides: dict[str, Any] = dict(extra)
    if getattr(args, "state_dir", None):
        overrides["state_dir"] = args.state_dir
    if getattr(args, "scorer", None):
        overrides["scoring.scorer"] = args.scorer
    for item in getattr(args, "set", []) or []:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise OptionError(f"--set {item!r} is not KEY=VALUE", "e.g. --set completion.quiet_period_s.CT=3")
        try:
            overrides[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:  # a tag (!!python/...), an unclosed quote: one line, never a traceback
            problem = getattr(exc, "problem", None) or type(exc).__name__
            raise OptionError(f"--set {key.strip()}: not a plain YAML value ({' '.join(str(problem).split())})",
                              "give a number, a word or a quoted string; tags are not accepted") from None
    config = load_config_source(config_source(args), overrides)
    configure_logging(getattr(args, "verbose", 0), config.log_level)
    return config


def configure_logging(verbosity: int, configured: str = "INFO") -> None:
    """The one place logging is set up: a stderr handler (once), the level from ``-v`` or the config.

    ``-vv`` is DEBUG and ``-v`` at least INFO whatever the config says; without ``-v`` the config's
    ``log_level`` applies (INFO until a config is read).
    """
    level = logging.getLevelName(configured.upper())
    if not isinstance(level, int):
        level = logging.INFO
    if verbosity >= 2:
        level = logging.DEBUG
    elif verbosity == 1:
        level = min(level, logging.INFO)
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S"))
        root.addHandler(handler)
    root.setLevel(level)


def log_config(config: AgentConfig) -> None:
    log.info("resolved config: %s", json.dumps(config.to_dict(), sort_keys=True))


def ensure_folder(path: str | None, config: AgentConfig, command: str = "watch") -> Path:
    """The agent's folders before anything starts: the export folder readable, the state dir writable.

    Every problem is a ``ConfigError`` (one line, exit 78 under ``mediqa watch``: restarting cannot fix it).
    """
    chosen = path or config.watch.folder
    if not chosen:
        raise ConfigError("no export folder given", "pass --folder DIR or set watch.folder in the config")
    folder = Path(chosen).expanduser()
    try:
        is_dir = folder.is_dir()
    except PermissionError:
        raise ConfigError(f"export folder {folder} is not readable by user {current_user()}",
                          f"grant read access ({_READ_ACCESS}), or {permission_remedy(command)}") from None
    if not is_dir:
        raise ConfigError(f"export folder {folder} does not exist or is not a folder", "check the path / the mount")
    check_readable(folder, "export folder", command)
    check_state_writable(config.state_path, command)
    return folder


# --- permissions: one line that names the path, the user and the remedy ------------------------------------

_READ_ACCESS = "e.g. setfacl -R -m u:mediqa:rX FOLDER; docs/install.md section 3.2"


def current_user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a uid without a passwd entry (containers)
        return str(os.getuid()) if hasattr(os, "getuid") else "?"


def permission_remedy(command: str) -> str:
    return f"run as the service user (sudo -u {SERVICE_USER} mediqa {command}), or check the permissions"


def accessible(path: Path, mode: int) -> bool:
    try:
        return os.access(path, mode)
    except OSError:
        return False


def check_readable(path: Path, what: str, command: str) -> None:
    """``path`` (a folder: listable too) can be read by this user, else a ``ConfigError`` with the remedy."""
    try:
        is_dir = path.is_dir()
    except PermissionError:
        is_dir = True  # a parent denies the walk: the same answer
        ok = False
    else:
        ok = accessible(path, os.R_OK | os.X_OK if is_dir else os.R_OK)
    if not ok:
        grant = f"grant read access ({_READ_ACCESS})" if what == "export folder" else "grant read access"
        raise ConfigError(f"{what} {path} is not readable by user {current_user()}",
                          f"{grant}, or {permission_remedy(command)}")


def check_state_writable(state: Path, command: str) -> None:
    """The agent's state dir can be created or written, and its database opened for writing (WAL needs the
    folder writable too); a state owned by the service user is a ``ConfigError`` that says so."""
    from mediqa.agent.state.db import STATE_FILE

    user = current_user()
    try:
        exists = state.exists()
    except PermissionError:
        exists, parent_ok = False, False
    else:
        parent_ok = True
    if not exists:
        ancestor = state.parent
        while parent_ok and not ancestor.exists() and ancestor != ancestor.parent:
            ancestor = ancestor.parent
        if not parent_ok or not accessible(ancestor, os.W_OK | os.X_OK):
            raise ConfigError(f"state dir {state} cannot be created by user {user} (no write access to "
                              f"{ancestor if parent_ok else state.parent})",
                              f"{permission_remedy(command)}, or set state_dir")
        return
    if not state.is_dir():
        raise ConfigError(f"state dir {state} is not a folder", "set state_dir to a folder")
    if not accessible(state, os.R_OK | os.W_OK | os.X_OK):
        raise ConfigError(f"state dir {state} is not writable by user {user}", permission_remedy(command))
    for name in (STATE_FILE, f"{STATE_FILE}-wal", f"{STATE_FILE}-shm"):
        file = state / name
        if file.exists() and not accessible(file, os.R_OK | os.W_OK):
            raise ConfigError(f"state database {file} cannot be opened for writing by user {user} "
                              "(it belongs to another user)", permission_remedy(command))


def check_state_readable(state: Path, command: str) -> Path:
    """The state database of ``state`` for reading: it must exist (never created here) and be readable.

    Returns its path; raises ``MediqaError`` when there is no state, ``ConfigError`` for permissions.
    """
    from mediqa.agent.state.db import STATE_FILE

    user = current_user()
    try:
        is_dir = state.is_dir()
        present = is_dir or state.exists()
    except PermissionError:
        raise ConfigError(f"state dir {state} is not readable by user {user}", permission_remedy(command)) from None
    if not present:
        raise MediqaError(f"no agent state at {state}",
                          "is this the service's state_dir? pass --config /etc/mediqa/agent.yaml or --state-dir DIR")
    if not is_dir:
        raise ConfigError(f"state dir {state} is not a folder", "set state_dir to a folder")
    if not accessible(state, os.R_OK | os.X_OK):
        raise ConfigError(f"state dir {state} is not readable by user {user}", permission_remedy(command))
    db = state / STATE_FILE
    if not db.exists():
        if any(state.glob("*.jsonl")):  # the database was lost: the agent seeds a new one from the results file
            raise MediqaError(f"no state database in {state} (a results file is there: the agent rebuilds the "
                              "database from it at its next start)", "start the agent, then list the alerts again")
        raise MediqaError(f"no state database in {state}: the agent has not run with this state dir yet",
                          "start the agent (mediqa watch), or pass the service's --config / --state-dir")
    if not accessible(db, os.R_OK):
        raise ConfigError(f"state database {db} is not readable by user {user}", permission_remedy(command))
    return db
