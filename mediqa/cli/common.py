"""Options and set-up shared by the agent's commands (config, state dir, scorer)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from mediqa.agent.config import AgentConfig, load_config
from mediqa.errors import ConfigError

log = logging.getLogger("mediqa")


def add_config_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="YAML", help="agent configuration (default: the packaged configs/agent.yaml)")
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
            raise ConfigError(f"--set {item!r} is not KEY=VALUE", "e.g. --set completion.quiet_period_s.CT=3")
        try:
            overrides[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:  # a tag (!!python/...), an unclosed quote: one line, never a traceback
            problem = getattr(exc, "problem", None) or type(exc).__name__
            raise ConfigError(f"--set {key.strip()}: not a plain YAML value ({' '.join(str(problem).split())})",
                              "give a number, a word or a quoted string; tags are not accepted") from None
    config = load_config(getattr(args, "config", None), overrides)
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


def ensure_folder(path: str | None, config: AgentConfig) -> Path:
    chosen = path or config.watch.folder
    if not chosen:
        raise ConfigError("no export folder given", "pass --folder DIR or set watch.folder in the config")
    folder = Path(chosen).expanduser()
    if not folder.is_dir():
        raise ConfigError(f"export folder {folder} does not exist or is not a folder", "check the path / the mount")
    return folder
