"""Per-protocol calibration with a fallback: protocol, else the modality's pooled proposal, else the config.

The chain mirrors what the agent does with a reviewed file (agent/scoring/decision.py): a protocol with
enough labelled series gets its own threshold; one with too few gets the modality's threshold, proposed from
all the modality's labelled series pooled, when that has enough; a series whose threshold came from a
hand-written config rule keeps it (a rule is more specific than a modality); anything else keeps the
configured thresholds, evaluated as its results recorded them. Every group says which threshold applies to
it and what that threshold does on its own series.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mediqa.agent.calibration.sources import SeriesRow
from mediqa.agent.calibration.stats import Evaluation, Observation, Proposal, Settings, as_recorded, propose, rates


def observation(row: SeriesRow) -> Observation:
    label = None if row.label is None else row.label == "bad"
    return Observation(row.score, label, forced=row.forced, alerted_now=row.decision == "retake")


@dataclass(frozen=True)
class GroupResult:
    level: str  # protocol or modality
    key: str  # "CT|std brain 5mm", or "CT"
    rows: tuple[SeriesRow, ...]
    proposal: Proposal | None
    reason: str  # why there is no proposal ("" when there is one)
    applied: Evaluation  # the threshold that will apply to this group, on its own series
    applied_from: str
    now: Evaluation  # the decisions as recorded

    @property
    def n_good(self) -> int:
        return sum(r.label == "good" for r in self.rows)

    @property
    def n_bad(self) -> int:
        return sum(r.label == "bad" for r in self.rows)


@dataclass(frozen=True)
class Calibration:
    settings: Settings
    modalities: tuple[GroupResult, ...]
    protocols: tuple[GroupResult, ...]
    overall: Evaluation  # every series under the proposal (each with the threshold that would apply)
    overall_now: Evaluation

    def applied_threshold(self, row: SeriesRow) -> tuple[float | None, str]:
        """The proposed threshold for ``row`` and where it comes from (None: the configured one stays)."""
        protocol = next((g for g in self.protocols if g.key == row.protocol), None)
        modality = next((g for g in self.modalities if g.key == row.modality), None)
        return _applied(row, protocol.proposal if protocol else None, modality.proposal if modality else None)


def _applied(row: SeriesRow, protocol: Proposal | None, modality: Proposal | None) -> tuple[float | None, str]:
    if protocol is not None:
        return protocol.threshold, "this protocol"
    if row.threshold_source.startswith("rule "):
        return None, f"configured {row.threshold_source}"
    if modality is not None:
        return modality.threshold, f"modality {row.modality} (proposed)"
    return None, "configured thresholds"


def _alerts(rows: Sequence[SeriesRow], protocol: Proposal | None, modality: Proposal | None) -> tuple[list[bool], str]:
    alerts, sources = [], []
    for row in rows:
        threshold, source = _applied(row, protocol, modality)
        alerts.append(row.decision == "retake" if threshold is None else row.forced or row.score < threshold)
        sources.append(source)
    distinct = sorted(set(sources), key=sources.index)
    return alerts, distinct[0] if len(distinct) == 1 else "; ".join(
        f"{s} ({sources.count(s)} series)" for s in distinct)


def _group(level: str, key: str, rows: Sequence[SeriesRow], settings: Settings,
           modality: Proposal | None) -> GroupResult:
    obs = [observation(r) for r in rows]
    found = propose(obs, settings)
    proposal = None if isinstance(found, str) else found
    if level == "modality":  # its own proposal applies to the modality's series that have no better one
        alerts, applied_from = _alerts(rows, None, proposal)
    else:
        alerts, applied_from = _alerts(rows, proposal, modality)
    threshold = proposal.threshold if proposal else (modality.threshold if modality and level == "protocol" else None)
    return GroupResult(level, key, tuple(rows), proposal, found if isinstance(found, str) else "",
                       rates(obs, alerts, threshold), applied_from, as_recorded(obs))


def calibrate(rows: Sequence[SeriesRow], settings: Settings) -> Calibration:
    """Proposals per modality (pooled) and per protocol, the largest groups first."""
    by_modality: dict[str, list[SeriesRow]] = {}
    by_protocol: dict[str, list[SeriesRow]] = {}
    for row in rows:
        by_modality.setdefault(row.modality, []).append(row)
        by_protocol.setdefault(row.protocol, []).append(row)
    modalities = tuple(_group("modality", m, g, settings, None) for m, g in sorted(by_modality.items()))
    pooled = {g.key: g.proposal for g in modalities}
    protocols = tuple(_group("protocol", key, g, settings, pooled.get(g[0].modality))
                      for key, g in sorted(by_protocol.items(), key=lambda item: (-len(item[1]), item[0])))
    alerts: list[bool] = []
    ordered: list[SeriesRow] = []
    for group in protocols:
        flags, _ = _alerts(group.rows, group.proposal, pooled.get(group.rows[0].modality))
        alerts.extend(flags)
        ordered.extend(group.rows)
    obs = [observation(r) for r in ordered]
    return Calibration(settings, modalities, protocols, rates(obs, alerts, None), as_recorded(obs))
