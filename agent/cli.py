"""The one ``mediqa`` command. Subcommands live in their own modules and register themselves.

Each command module exposes ``register(subparsers)`` and sets ``func(args) -> int`` on its parser.
Command modules import nothing heavy at import time (no torch, no onnxruntime): ``mediqa --help``
and the running agent stay fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from mediqa import __version__
from mediqa.agent.errors import MediqaError

# Order is the order shown in --help.
COMMAND_MODULES = (
    "mediqa.agent.commands.watch",
    "mediqa.agent.commands.score",
    "mediqa.agent.commands.replay",
    "mediqa.agent.commands.demo",
    "mediqa.agent.commands.alerts",
    "mediqa.agent.commands.doctor",
    "mediqa.training.cli",
    "mediqa.export.cli",
    "mediqa.engines.cli",
    "mediqa.agent.commands.version",
)

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
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            # A command whose own module is absent is left out; a missing dependency inside it is a bug.
            if exc.name == name:
                continue
            raise
        module.register(sub)
    return parser


def configure_logging(verbosity: int, level: str | None = None) -> None:
    chosen = "DEBUG" if verbosity >= 2 else (level or ("INFO" if verbosity else "INFO"))
    logging.basicConfig(
        level=getattr(logging, chosen.upper(), logging.INFO),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    configure_logging(args.verbose)
    try:
        return int(args.func(args) or 0)
    except MediqaError as exc:
        print(f"mediqa {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
