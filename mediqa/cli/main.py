"""The one ``mediqa`` command. Subcommands live in their own modules (``mediqa/cli/<name>.py``).

Each command module exposes ``register(subparsers)`` and sets ``func(args) -> int`` on its parser
with ``set_defaults``. Command modules import nothing heavy at import time (no torch, no
onnxruntime): ``mediqa --help`` and the running agent stay fast. This package is the top floor:
it may import every package of the project, and nothing but the entry point imports it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mediqa import __version__
from mediqa.cli import (
    alerts,
    backfill,
    calibrate,
    console,
    data,
    demo,
    doctor,
    engine,
    export,
    replay,
    score,
    train,
    version,
    watch,
)
from mediqa.cli.common import configure_logging, permission_remedy
from mediqa.errors import ConfigError, MediqaError

# Order is the order shown in --help.
COMMANDS = (watch, score, backfill, replay, demo, alerts, console, calibrate, doctor, train, data, export, engine,
            version)

# sysexits.h EX_CONFIG: what ``mediqa watch`` exits with on a configuration error, so the unit's
# RestartPreventExitStatus=78 stops systemd from restarting a broken configuration forever.
EX_CONFIG = 78
# Commands run as services: a configuration error there is EX_CONFIG; elsewhere every user error is 1.
SERVICE_COMMANDS = frozenset({"watch"})

# Commands that need an optional extra, by the top-level module whose absence means the extra is missing.
EXTRAS = {"train": ("torch", "train"), "eval": ("torch", "train"), "data": ("skimage", "train"),
          "export": ("torch", "train")}

DESCRIPTION = """\
MedIQA Edge: tells the technologist, seconds after a CT/MR series lands, whether its image
quality is good enough or the patient should be rescanned while still on the table.

Typical use:
  mediqa demo                          replay sample series into a temp folder and watch them scored
  mediqa watch --folder /export        the agent: watch the scanner's export folder (read-only)
  mediqa score /export/series1         one-shot: score a series folder, a file, or a whole tree
  mediqa doctor --folder /export       check config, permissions, limits, backends and model
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mediqa", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"mediqa {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log detail (-vv: debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    configure_logging(args.verbose)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"mediqa {args.command}: error: {exc}", file=sys.stderr)
        return EX_CONFIG if args.command in SERVICE_COMMANDS else 1
    except MediqaError as exc:
        print(f"mediqa {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except PermissionError as exc:  # one a command did not foresee: still one line, never a traceback
        where = f": {exc.filename}" if exc.filename else ""
        print(f"mediqa {args.command}: error: permission denied{where} ({permission_remedy(args.command)})",
              file=sys.stderr)
        return EX_CONFIG if args.command in SERVICE_COMMANDS else 1
    except ModuleNotFoundError as exc:
        extra = _missing_extra(args.command, exc)
        if extra is None:
            raise
        print(f"mediqa {args.command} needs the {extra} extra: pip install 'mediqa-edge[{extra}]'", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _missing_extra(command: str, exc: ModuleNotFoundError) -> str | None:
    """The extra to install when ``exc`` is the optional dependency of ``command`` (else None: a bug)."""
    needed = EXTRAS.get(command)
    top = (exc.name or "").partition(".")[0]
    return needed[1] if needed and top == needed[0] else None


if __name__ == "__main__":
    raise SystemExit(main())
