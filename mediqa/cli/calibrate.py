"""``mediqa calibrate``: per-protocol retake thresholds from the site's own feedback, written for review."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from mediqa.cli.common import add_config_options, config_from_args

if TYPE_CHECKING:
    from mediqa.agent.calibration.sources import SeriesRow, StateData
    from mediqa.agent.config import AgentConfig

HELP = """\
Propose retake thresholds per protocol from what the technologists answered at the console, for a
person to review. Nothing is applied: the agent uses a thresholds file only when its config names it.

What it reads: the answers recorded at the console or with `mediqa alerts --ack` (the feedback table of
the state database, opened read-only) joined with the scored results. With --results, scores come from
those files instead (the agent's results.jsonl, or a `mediqa backfill --out` folder of Parquet files:
needs pyarrow), labelled by series UID from the state's answers. On an installed system the state
belongs to the service user: sudo -u mediqa mediqa calibrate.

Labels:
  rescanned, should_have_alerted   bad: the series should alert
  false_alert, accepted            good: it should not alert (the images were kept as they were)
  seen, or no answer               unlabelled: counts towards the alert rate only
  (--unanswered-ok-as-good: an ok series shown at the console and never flagged counts as good)

A protocol is the modality plus the series description, normalised (case, punctuation and spacing do
not count); series without a description: modality plus anatomy. A protocol with enough labelled
series gets the highest threshold at which at most the target share of its good series alert (the
fewest misses within the target); one with too few gets the modality's pooled threshold, else keeps
the configured one, and the table says so: "too few labelled series (n=..., need >= ...)".
Rates: false alerts = good series that alert; misses = bad series that do not; alerts = all scored
series that alert ("now": as recorded). Each is k/n with an exact Clopper-Pearson 95% interval;
thresholds carry a bootstrap 95% interval. Scores of one model only (the newest result's).

To apply: --out FILE writes the proposal with every figure. Review it, fill in reviewed_by and
reviewed_on, then set thresholds.reviewed_file: FILE in the agent config and restart the agent.
Each result then records the threshold that applied ("reviewed protocol ...").

examples:
  mediqa calibrate                                     the table, from the configured state dir
  mediqa calibrate --out /etc/mediqa/thresholds.yaml   and the proposal, for review
  mediqa calibrate --results backfill/ --plot scores.png
                                                       backfill scores, the console's labels, a PNG
  mediqa calibrate --target-false-alert-rate 0.02 --min-good 30
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate", help="propose per-protocol thresholds from technologists' feedback",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", type=Path, action="append", default=[], metavar="PATH",
                   help="scores from results.jsonl or a backfill --out folder (Parquet) instead of the state; "
                        "repeatable")
    p.add_argument("--target-false-alert-rate", type=float, default=0.05, metavar="RATE",
                   help="share of good series allowed to alert (default 0.05)")
    p.add_argument("--min-good", type=int, default=10, metavar="N",
                   help="good-labelled series a group needs for its own threshold (default 10)")
    p.add_argument("--min-bad", type=int, default=5, metavar="N",
                   help="bad-labelled series a group needs (default 5)")
    p.add_argument("--unanswered-ok-as-good", action="store_true",
                   help="count ok series shown at the console and never flagged as good")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="resamples for threshold intervals")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (the same data give the same file)")
    p.add_argument("--out", type=Path, metavar="YAML", help="write the proposal here, for review")
    p.add_argument("--force", action="store_true", help="with --out: replace a file that was already reviewed")
    p.add_argument("--plot", type=Path, metavar="PNG", help="draw the scores and thresholds (needs matplotlib)")
    add_config_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mediqa import __version__
    from mediqa.agent.calibration.groups import calibrate
    from mediqa.agent.calibration.report import plot, table
    from mediqa.agent.calibration.rules_file import Provenance, render_reviewed
    from mediqa.agent.calibration.sources import attach_labels, count_unanswered_ok_as_good, one_model, read_results
    from mediqa.agent.calibration.stats import Settings
    from mediqa.cli.common import current_user
    from mediqa.errors import MediqaError

    if not 0.0 < args.target_false_alert_rate < 1.0:
        raise MediqaError(f"--target-false-alert-rate {args.target_false_alert_rate} is not a share between 0 and 1",
                          "e.g. 0.05 for 5 % of good series")
    if min(args.min_good, args.min_bad) < 1 or args.bootstrap < 0:
        raise MediqaError("--min-good and --min-bad must be at least 1, --bootstrap at least 0")
    config = config_from_args(args)
    data: list[str] = []
    in_force = config.thresholds.reviewed
    if in_force is not None:  # what is in force now, so a new proposal is read against it
        data.append(f"in force: thresholds.reviewed_file {config.thresholds.reviewed_file} "
                    f"(digest {in_force.digest}, reviewed by {in_force.reviewed_by})")
    state = _read_state(config, data, need=not args.results)
    rows: list[SeriesRow] = []
    if args.results:
        by_series: dict[str, SeriesRow] = {}
        for path in args.results:
            found, not_scored = read_results(path)
            data.append(f"results {path}: {len(found)} scored series ({not_scored} not scored, left out)")
            for row in found:  # a later file wins, and its rows come last (the newest model is the last row's)
                by_series.pop(row.series_uid, None)
                by_series[row.series_uid] = row
        rows = attach_labels(list(by_series.values()), state.labels if state else {})
    elif state is not None:
        rows = state.rows
    if args.unanswered_ok_as_good:
        before = sum(r.label == "good" for r in rows)
        rows = count_unanswered_ok_as_good(rows)
        data.append(f"--unanswered-ok-as-good: {sum(r.label == 'good' for r in rows) - before} ok series counted good")
    rows, model, other = one_model(rows)
    if other:
        data.append(f"{other} series scored by other models left out (their scores are not comparable)")
    if not rows:
        raise MediqaError("no scored series to calibrate on", "let the agent score series first, or pass --results")
    settings = Settings(args.target_false_alert_rate, args.min_good, args.min_bad, args.bootstrap, args.seed)
    result = calibrate(rows, settings)
    labelled = sum(r.label is not None for r in rows)
    print(f"{len(rows)} scored series of model {model or '(unknown)'}, {labelled} labelled "
          f"({sum(r.label == 'good' for r in rows)} good, {sum(r.label == 'bad' for r in rows)} bad)")
    for line in data:
        print(f"  {line}")
    _warn_selection_bias(rows, args.unanswered_ok_as_good)
    print(table(result))
    if args.plot:
        plot(result, args.plot)
        print(f"plot: {args.plot}")
    if args.out:
        written = sum(g.proposal is not None for g in (*result.modalities, *result.protocols))
        if not written:  # an empty proposal would only look like one
            raise MediqaError(f"no group has enough labelled series for a threshold: nothing written to {args.out}",
                              "see the table; collect more answers at the console, or lower --min-good / --min-bad")
        provenance = Provenance(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), current_user(), tuple(data),
                                model, __version__)
        _write(args.out, render_reviewed(result, provenance), args.force)
        print(f"wrote {args.out} ({written} threshold(s)): NOT applied. Review it, fill in reviewed_by and "
              "reviewed_on, then set thresholds.reviewed_file in the agent config and restart the agent.")
    return 0


def _read_state(config: AgentConfig, data: list[str], *, need: bool) -> StateData | None:
    """The state's results and answers, read-only; without a state, results files still calibrate (unlabelled)."""
    import sqlite3

    from mediqa.agent.calibration.sources import read_state
    from mediqa.agent.report.store import jsonl_path
    from mediqa.cli.alerts import _db_error, open_readonly
    from mediqa.cli.common import check_state_readable
    from mediqa.errors import MediqaError

    try:
        db_file = check_state_readable(config.state_path, "calibrate")
    except MediqaError:
        if need:
            raise
        data.append(f"no agent state at {config.state_path}: no feedback labels")
        return None
    db = open_readonly(db_file, "calibrate")
    try:
        state = read_state(db, jsonl_path(config))
    except sqlite3.Error as exc:
        raise _db_error(db_file, exc, "calibrate") from None
    finally:
        db.close()
    answers = sum(1 for _ in state.labels)
    conflicts = sum(lab.conflicting for lab in state.labels.values())
    data.append(f"state {db_file}: {state.results} results, {answers} labelled series"
                + (f" ({conflicts} answered both ways: the latest answer counts)" if conflicts else "")
                + (f", {state.not_scored} unscored or skipped series left out" if state.not_scored else ""))
    return state


def _warn_selection_bias(rows: list[SeriesRow], unanswered_counted: bool) -> None:
    good = [r for r in rows if r.label == "good"]
    if good and not unanswered_counted and all(r.decision == "retake" for r in good):
        print("  note: every good label comes from an alert (false alert / accepted), so false-alert rates are among "
              "alerted good series: an upper bound at thresholds up to today's. --unanswered-ok-as-good counts the ok "
              "series nobody flagged as good.")


def _write(out: Path, text: str, force: bool) -> None:
    """Write atomically; never overwrite a file someone has already reviewed (unless --force)."""
    import yaml

    from mediqa.errors import MediqaError

    if out.exists() and not force:
        try:
            old = yaml.safe_load(out.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError, UnicodeDecodeError):
            old = None
        if isinstance(old, dict) and str(old.get("reviewed_by") or "").strip():
            raise MediqaError(f"{out} has been reviewed (reviewed_by: {old.get('reviewed_by')}): not overwritten",
                              "write the new proposal to another file, or pass --force")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, out)
