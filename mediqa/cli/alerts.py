"""``mediqa alerts``: the live retake alerts, and acknowledging them at the console."""

from __future__ import annotations

import argparse
import getpass
import time

from mediqa.cli.common import add_config_options, config_from_args

HELP = """\
List the live retake alerts (the latest result of each series, not yet superseded) from the agent's
state, or acknowledge one so it stops being shown. The agent itself prints unacknowledged alerts
again when it restarts, so a crash never hides an alert.

examples:
  mediqa alerts                    live, unacknowledged retake alerts
  mediqa alerts --all              every live result (ok, retake, unscored, skipped), acknowledged or not
  mediqa alerts --ack 12           acknowledge alert 12 (recorded with your user name and the time)
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("alerts", help="list live retake alerts; acknowledge one", description=HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--all", action="store_true",
                   help="all live results (ok, retake, unscored, skipped), not only unacknowledged retakes")
    p.add_argument("--ack", type=int, metavar="ID", help="acknowledge the alert with this result id")
    add_config_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mediqa.agent.report.console import score_text
    from mediqa.agent.report.privacy import clean_text
    from mediqa.agent.report.store import open_store
    from mediqa.errors import MediqaError

    config = config_from_args(args)
    store = open_store(config)
    if args.ack is not None:
        if not store.acknowledge(args.ack, getpass.getuser()):
            raise MediqaError(f"no unacknowledged result {args.ack}", "list them with `mediqa alerts`")
        print(f"acknowledged result {args.ack}")
        return 0
    rows = store.live(None if args.all else "retake")
    if not args.all:
        rows = [r for r in rows if not r["acknowledged"]]
    if not rows:
        print("no live retake alerts" if not args.all else "no results yet")
        return 0
    for r in rows:
        when = time.strftime("%H:%M:%S", time.localtime(r["created"])) if r.get("created") else "--:--:--"
        ack = " (acknowledged)" if r["acknowledged"] else ""
        why = clean_text("; ".join([*r.get("reasons", [])[:2], *r.get("notices", [])]), 240)
        print(f"[{r['result_id']:>4}] {when} #{r.get('series_number')} "
              f"{clean_text(r.get('series_description') or '', 32):<32} {clean_text(r.get('modality') or '', 3):<3} "
              f"score {score_text(r.get('score')).strip()} {clean_text(str(r['decision']), 12).upper()}{ack}: {why}")
    return 0
