"""The calibration as people read it: a table per modality and protocol, and an optional PNG of the scores."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mediqa.agent.calibration.groups import Calibration, GroupResult
from mediqa.agent.calibration.stats import Evaluation, Rate
from mediqa.agent.report.privacy import clean_text
from mediqa.errors import MediqaError

KEY_WIDTH = 34


def rate_text(rate: Rate) -> str:
    if not rate.n or rate.interval is None:
        return "-"
    low, high = rate.interval
    return f"{rate.k}/{rate.n} {rate.k / rate.n:.0%} [{low:.0%}-{high:.0%}]"


def _threshold_text(group: GroupResult) -> str:
    p = group.proposal
    if p is not None:
        return f"{p.threshold:.2f} [{p.interval[0]:.2f}-{p.interval[1]:.2f}]" if p.interval else f"{p.threshold:.2f}"
    if group.applied.threshold is not None:  # the fallback that applies: "-> 1.60 (modality CT)"
        return f"-> {group.applied.threshold:.2f} ({group.applied_from.replace(' (proposed)', '')})"
    return "-> configured" if group.applied_from == "configured thresholds" else f"-> {group.applied_from}"


def _line(level: str, key: str, n: int, good: int, bad: int, threshold: str, ev: Evaluation,
          now: Evaluation) -> str:
    alerts_now = f"{now.alerts.k / now.alerts.n:.0%}" if now.alerts.n else "-"
    return (f"{level:<9} {clean_text(key, KEY_WIDTH):<{KEY_WIDTH}} {n:>6} {good:>4} {bad:>4}  {threshold:<26} "
            f"{rate_text(ev.false_alerts):<20} {rate_text(ev.misses):<20} {rate_text(ev.alerts):<20} {alerts_now:>5}")


def table(calibration: Calibration) -> str:
    """Modalities (pooled) first, then protocols, largest first; a reason under each group without a proposal."""
    s = calibration.settings
    out = [f"target: at most {s.target:.1%} of good series alert. Rates are k/n, estimate [Clopper-Pearson 95%]; "
           "thresholds [bootstrap 95%].",
           f"{'level':<9} {'group':<{KEY_WIDTH}} {'series':>6} {'good':>4} {'bad':>4}  {'threshold':<26} "
           f"{'false alerts':<20} {'misses':<20} {'alerts':<20} {'now':>5}"]
    for group in (*calibration.modalities, *calibration.protocols):
        out.append(_line(group.level, group.key, len(group.rows), group.n_good, group.n_bad,
                         _threshold_text(group), group.applied, group.now))
        if group.reason:
            out.append(f"{'':<10}{group.reason}")
    ev, now = calibration.overall, calibration.overall_now
    n = ev.alerts.n
    out.append(_line("all", "every series, proposal applied", n, ev.false_alerts.n, ev.misses.n, "", ev, now))
    return "\n".join(out)


def plot(calibration: Calibration, path: Path) -> int:
    """Score strips per group (good, bad, unlabelled) with the threshold that applies; returns panels drawn."""
    try:
        import matplotlib
    except ModuleNotFoundError:
        raise MediqaError("--plot needs matplotlib", "pip install matplotlib (it comes with the train extra)") from None
    matplotlib.use("Agg")  # no display on a console or a server
    import matplotlib.pyplot as plt

    groups: Sequence[GroupResult] = [*calibration.modalities, *calibration.protocols[:12]]
    fig, ax = plt.subplots(figsize=(9, 0.5 * len(groups) + 1.5))
    colours = {"good": "tab:green", "bad": "tab:red", None: "0.7"}
    for i, group in enumerate(groups):
        for label, colour in colours.items():
            scores = [r.score for r in group.rows if r.label == label]
            ax.scatter(scores, [i + (0.15 if label == "bad" else -0.15 if label == "good" else 0.0)] * len(scores),
                       s=10, c=colour, label=(label or "unlabelled") if i == 0 else None)
        if group.applied.threshold is not None:
            ax.plot([group.applied.threshold] * 2, [i - 0.4, i + 0.4], c="k", lw=2)
    ax.set_yticks(range(len(groups)), [clean_text(f"{g.level[0]}: {g.key}", 40) for g in groups], fontsize=7)
    ax.set_xlim(0, 4)
    ax.set_xlabel("series score (0 bad .. 4 excellent); black bar: the threshold that would apply")
    ax.invert_yaxis()  # in the table's order, top down
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return len(groups)
