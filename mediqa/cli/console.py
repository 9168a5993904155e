"""``mediqa console``: the technologist's web console in its own process, on the service's state dir.

``mediqa watch`` serves the same console itself (``console.listen``); this command is for a site that
runs the page apart from the agent, e.g. as another user. It only reads the state DB (and writes the
technologists' feedback), so it never slows scoring.
"""

from __future__ import annotations

import argparse
import signal
import threading

from mediqa.cli.common import add_config_options, config_from_args

HELP = """\
Serve the live console (cards per series, details, feedback, history) from the agent's state dir.

examples:
  mediqa console                                   the service's config and state (run as its user)
  mediqa console --set console.listen=127.0.0.1:9000
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("console", help="serve the technologist's web console on the agent's state",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mediqa.agent.report.web import check_console, serve_console
    from mediqa.errors import ConfigError

    config = config_from_args(args)
    if check_console(config.console) is None:
        raise ConfigError("console.listen is off", "set console.listen to a HOST:PORT, e.g. 127.0.0.1:8765")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return serve_console(config, stop=stop, on_ready=lambda server: print(f"console on {server.url}", flush=True))
