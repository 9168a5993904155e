"""``mediqa alerts``: the live retake alerts, and acknowledging them at the console.

Listing opens the state database read-only (it never creates, migrates or writes it, so an administrator
can run it beside the agent); acknowledging goes through ``record_feedback``, the same path as the web
console's buttons, and needs write access (run it as the service user).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING

from mediqa.cli.common import add_config_options, config_from_args

if TYPE_CHECKING:
    from mediqa.agent.config import AgentConfig
    from mediqa.agent.state.db import StateDB

HELP = """\
List the live retake alerts (the latest result of each series, not yet superseded) from the agent's
state, or acknowledge one so it stops being shown. The agent itself prints unacknowledged alerts
again when it restarts, so a crash never hides an alert. On an installed system the state belongs to
the service user: run it as that user (sudo -u mediqa mediqa alerts).

examples:
  mediqa alerts                    live, unacknowledged retake alerts (younger than alerts.max_age_h)
  mediqa alerts --all              every live result (ok, retake, unscored, skipped), acknowledged or not,
                                   however old
  mediqa alerts --ack 12 --as rescanned
                                   acknowledge alert 12 with what was done (recorded with your user name
                                   and the time, as the console page records it)
"""

# What ``--as`` may say (feedback kinds that acknowledge; which fit a result depends on its decision).
ANSWERS = ("rescanned", "accepted", "false_alert", "seen")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("alerts", help="list live retake alerts; acknowledge one", description=HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--all", action="store_true",
                   help="all live results (ok, retake, unscored, skipped), not only unacknowledged retakes")
    p.add_argument("--ack", type=int, metavar="ID", help="acknowledge the alert with this result id")
    p.add_argument("--as", dest="answer", choices=ANSWERS, default=None,
                   help="with --ack: what was done (a retake: rescanned, accepted, false_alert; unscored or "
                        "skipped: seen, the default there)")
    add_config_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mediqa.agent.report.console import score_text
    from mediqa.agent.report.privacy import clean_text
    from mediqa.agent.report.store import ResultStore, jsonl_path
    from mediqa.cli.common import check_state_readable
    from mediqa.errors import MediqaError

    if args.answer is not None and args.ack is None:
        raise MediqaError("--as needs --ack ID", "e.g. mediqa alerts --ack 12 --as rescanned")
    config = config_from_args(args)
    command = "alerts" if args.ack is None else f"alerts --ack {args.ack}"
    db_file = check_state_readable(config.state_path, command)
    if args.ack is not None:
        return _acknowledge(config, db_file, args.ack, args.answer, command)
    since = None if args.all else config.alerts.live_since(time.time())
    db = open_readonly(db_file, command)
    try:
        store = ResultStore(db, jsonl_path(config))
        try:
            rows = store.live(None if args.all else "retake", since=since)
            older = 0 if since is None else \
                sum(not r["acknowledged"] for r in store.live("retake")) - sum(not r["acknowledged"] for r in rows)
        except sqlite3.Error as exc:
            raise _db_error(db_file, exc, command) from None
    finally:
        db.close()
    if not args.all:
        rows = [r for r in rows if not r["acknowledged"]]
    if older:  # older than alerts.max_age_h (or old series scored as history): no longer news, still there
        print(f"({older} older alert{'s' if older != 1 else ''} not shown: older than alerts.max_age_h "
              f"{config.alerts.max_age_h:g} h, or scored as history; `mediqa alerts --all` lists every live result)")
    if not rows:
        print("no live retake alerts" if not args.all else "no results yet")
        return 0
    for r in rows:
        when = time.strftime("%H:%M:%S", time.localtime(r["created"])) if r.get("created") else "--:--:--"
        ack = " (acknowledged)" if r["acknowledged"] else ""
        ack += " (history)" if r.get("origin") == "history" else ""
        why = clean_text("; ".join([*r.get("reasons", [])[:2], *r.get("notices", [])]), 240)
        print(f"[{r['result_id']:>4}] {when} #{r.get('series_number')} "
              f"{clean_text(r.get('series_description') or '', 32):<32} {clean_text(r.get('modality') or '', 3):<3} "
              f"score {score_text(r.get('score')).strip()} {clean_text(str(r['decision']), 12).upper()}{ack}: {why}")
    return 0


def open_readonly(db_file: Path, command: str) -> StateDB:
    """The state database through a read-only connection (``mode=ro``): nothing is created or migrated.

    A file of another schema version is refused with what to do (the agent migrates it at its start).
    """
    from mediqa.agent.state.db import SCHEMA_VERSION, StateDB
    from mediqa.errors import ConfigError

    try:
        conn = sqlite3.connect(f"{db_file.resolve().as_uri()}?mode=ro", uri=True, timeout=10.0,
                               isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise _db_error(db_file, exc, command) from None
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    except sqlite3.Error as exc:
        conn.close()
        raise _db_error(db_file, exc, command) from None
    if version != SCHEMA_VERSION:
        conn.close()
        if version > SCHEMA_VERSION:
            raise ConfigError(f"state database {db_file} has schema version {version}, newer than this mediqa "
                              f"knows ({SCHEMA_VERSION})", "run the mediqa that the service runs")
        raise ConfigError(f"state database {db_file} has schema version {version} (this mediqa reads "
                          f"{SCHEMA_VERSION}); listing never migrates it",
                          "start the agent once (mediqa watch, or systemctl start mediqa-agent): it migrates it")
    return StateDB(conn, db_file)


def _db_error(db_file: Path, exc: sqlite3.Error, command: str) -> Exception:
    """A SQLite failure as one line: permissions (the WAL's -shm needs a writable folder) or a damaged file."""
    from mediqa.agent.state.db import is_corrupt
    from mediqa.cli.common import current_user, permission_remedy
    from mediqa.errors import ConfigError

    text = " ".join(str(exc).split())
    if is_corrupt(exc):
        return ConfigError(f"state database {db_file} cannot be read ({text})",
                           "the agent moves a damaged file aside at its next start; keep a copy for support")
    if "locked" in text or "busy" in text:
        return ConfigError(f"state database {db_file} is busy ({text})", "try again in a moment")
    return ConfigError(f"state database {db_file} cannot be opened by user {current_user()} ({text}): reading "
                       "it needs write access to its folder, for the WAL's shared-memory file",
                       permission_remedy(command))


def _acknowledge(config: AgentConfig, db_file: Path, result_id: int, answer: str | None, command: str) -> int:
    from mediqa.agent.report.feedback import kinds_for, record_feedback
    from mediqa.agent.report.store import ResultStore, jsonl_path
    from mediqa.agent.state.db import StateDB
    from mediqa.cli.common import accessible, current_user, permission_remedy
    from mediqa.errors import ConfigError, MediqaError

    folder = db_file.parent
    if not (accessible(db_file, os.R_OK | os.W_OK) and accessible(folder, os.W_OK | os.X_OK)):
        raise ConfigError(f"state database {db_file} cannot be written by user {current_user()}: acknowledging "
                          "needs write access to it and its folder", permission_remedy(command))
    try:
        db = StateDB.open(db_file, timeout_s=10.0)
    except sqlite3.Error as exc:
        raise _db_error(db_file, exc, command) from None
    try:
        row = db.query_one("SELECT decision, acknowledged_at FROM results WHERE id=?", (int(result_id),))
        if row is None:
            raise MediqaError(f"no result {result_id}", "list them with `mediqa alerts --all`")
        decision, acknowledged_at = str(row[0]), row[1]
        if acknowledged_at is not None:
            raise MediqaError(f"result {result_id} is already acknowledged", "list open ones with `mediqa alerts`")
        kind = answer or ("seen" if "seen" in kinds_for(decision) else None)
        try:
            if kind is not None:  # the console page's path: an answer, and the acknowledgement with it
                record_feedback(db, result_id, kind, initials=current_user())
            else:  # no answer given for a retake: acknowledged only, as before (nothing is made up)
                ResultStore(db, jsonl_path(config)).acknowledge(result_id, current_user())
        except sqlite3.Error as exc:
            raise _db_error(db_file, exc, command) from None
    finally:
        db.close()
    if kind is None:
        allowed = ", ".join(k for k in kinds_for(decision) if k in ANSWERS)
        print(f"acknowledged result {result_id} (no answer recorded; say what was done with --as: {allowed})")
    else:
        print(f"acknowledged result {result_id} ({kind})")
    return 0
