"""The reviewed thresholds file: per-protocol retake thresholds proposed by ``mediqa calibrate``.

``mediqa calibrate`` writes this file for a person to review; the agent reads it only when the config
names it (``thresholds.reviewed_file``), and refuses it until the reviewer has signed it (``reviewed_by``,
``reviewed_on``), so a proposal is never applied silently. It is validated once, at config load, like the
rest of the config: unknown keys get a "did you mean", thresholds must lie on the 0..4 score scale, and
every protocol key must be one the agent can compute (``protocol_key``), or it would never match.

A protocol is the modality plus the normalised series description (case, punctuation and spacing do not
count: "STD_Brain 5mm" and "std brain  5MM" are one protocol). Series without a description fall back
to modality plus the prompt's anatomy. The description, not ProtocolName (0018,1030), because some
vendors (GE) put the whole exam's protocol there, shared by every series of the exam, and because every
result the agent has ever written carries the description (so old results calibrate too).
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mediqa.errors import ConfigError
from mediqa.schema import build_dataclass, read_yaml_mapping

KIND = "mediqa-reviewed-thresholds"
FORMAT_VERSION = 1
_ANATOMY_KEY = re.compile(r"\(anatomy: [^()|]+\)")


def normalise_description(text: str) -> str:
    """Lower case, punctuation and underscores as spaces, runs of spaces as one."""
    return " ".join(re.sub(r"[\W_]+", " ", (text or "").casefold()).split())


def protocol_key(modality: str, series_description: str, anatomy: str = "") -> str:
    """``"CT|std brain 5mm"``; without a description ``"CT|(anatomy: head)"`` (parentheses never occur in a
    normalised description, so the two kinds of key cannot collide)."""
    mod = (modality or "").strip().upper() or "?"
    description = normalise_description(series_description)
    if description:
        return f"{mod}|{description}"
    return f"{mod}|(anatomy: {normalise_description(anatomy) or 'unknown'})"


@dataclass(frozen=True)
class ReviewedThreshold:
    """One proposed threshold and the evidence for it (counts and 95 % intervals, as [low, high]).

    Only ``retake_below`` is applied; the rest documents it. A reviewer who edits ``retake_below`` should
    know the figures beside it were computed for the proposed value (``proposed``).
    """

    retake_below: float
    proposed: float | None = None
    n_series: int = 0  # scored series of this group, labelled or not
    n_good: int = 0  # labelled "should not alert"
    n_bad: int = 0  # labelled "should alert"
    threshold_ci95: tuple[float, ...] = ()  # bootstrap percentile interval of the proposed threshold
    false_alert_rate: float | None = None  # good series that would alert (Clopper-Pearson interval below)
    false_alert_ci95: tuple[float, ...] = ()
    miss_rate: float | None = None  # bad series that would not alert
    miss_ci95: tuple[float, ...] = ()
    alert_rate: float | None = None  # all scored series of the group that would alert
    alert_ci95: tuple[float, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class ReviewedThresholds:
    kind: str = ""
    version: int = 0
    reviewed_by: str = ""  # filled in by the reviewer: the agent refuses the file while it is empty
    reviewed_on: str = ""
    created: str = ""  # when and by whom mediqa calibrate wrote it, from which data
    created_by: str = ""
    data: tuple[str, ...] = ()
    model_name: str = ""
    model_sha256: str = ""
    target_false_alert_rate: float = 0.05
    labels: Mapping[str, str] = field(default_factory=dict)  # feedback kind -> bad / good / unlabelled
    modality: Mapping[str, ReviewedThreshold] = field(default_factory=dict)
    protocols: Mapping[str, ReviewedThreshold] = field(default_factory=dict)
    digest: str = ""  # SHA-256 prefix of the file as loaded (set by the loader, never read from the file)


def load_reviewed(path: Path, modalities: tuple[str, ...]) -> ReviewedThresholds:
    """Read and validate a reviewed thresholds file; every problem is a ``ConfigError`` naming the file."""
    where = f"thresholds file {path}"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{where} (thresholds.reviewed_file) does not exist",
                          "check the path, or remove thresholds.reviewed_file to use the config's thresholds") from None
    except OSError as exc:
        raise ConfigError(f"{where} cannot be read ({exc.strerror})", "check its permissions") from None
    raw = read_yaml_mapping(path)
    if raw.get("kind") != KIND:
        raise ConfigError(f"{where} is not a reviewed thresholds file (kind: {raw.get('kind')!r})",
                          f"it must be written by mediqa calibrate (kind: {KIND})")
    for name in ("reviewed_on", "created"):  # a reviewer types 2026-12-02 unquoted: YAML reads a date
        if isinstance(raw.get(name), (datetime.date, datetime.datetime)):
            raw[name] = raw[name].isoformat()
    if "digest" in raw:
        raise ConfigError(f"{where}: 'digest' is computed when the file is loaded", "remove the key")
    try:
        reviewed = build_dataclass(ReviewedThresholds, raw, "")
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if reviewed.version != FORMAT_VERSION:
        raise ConfigError(f"{where} has format version {reviewed.version}, this mediqa reads {FORMAT_VERSION}",
                          "write it again with this mediqa's calibrate")
    if not reviewed.reviewed_by.strip() or not reviewed.reviewed_on.strip():
        raise ConfigError(f"{where} has not been reviewed (reviewed_by / reviewed_on are empty)",
                          "read every threshold and its figures, then fill in reviewed_by and reviewed_on")
    for name, entry in reviewed.modality.items():
        if name not in modalities:
            raise ConfigError(f"{where}: modality '{name}' is not one of {', '.join(modalities)}")
        _check_entry(f"{where}: modality.{name}", entry)
    for key, entry in reviewed.protocols.items():
        _check_protocol(where, key, modalities)
        _check_entry(f"{where}: protocols.{key}", entry)
    return dataclasses.replace(reviewed, digest=hashlib.sha256(data).hexdigest()[:12])


def _check_protocol(where: str, key: str, modalities: tuple[str, ...]) -> None:
    """A key the agent can compute, or it would never match: the error says the key it would compute."""
    modality, bar, rest = key.partition("|")
    if not bar or modality not in modalities:
        raise ConfigError(f"{where}: protocol '{key}' must start with a modality ({', '.join(modalities)}) "
                          "and '|'", "e.g. 'CT|std brain 5mm'")
    if _ANATOMY_KEY.fullmatch(rest) or (rest and rest == normalise_description(rest)):
        return
    raise ConfigError(f"{where}: protocol '{key}' would never match (keys are normalised descriptions)",
                      f"did you mean '{protocol_key(modality, rest)}'?")


def _check_entry(where: str, entry: ReviewedThreshold) -> None:
    for name, value in (("retake_below", entry.retake_below), ("proposed", entry.proposed)):
        if value is not None and not 0.0 <= value <= 4.0:
            raise ConfigError(f"{where}.{name} = {value} is outside the score scale 0..4",
                              "scores run from 0 (bad) to 4 (excellent)")
    for name in ("false_alert_rate", "miss_rate", "alert_rate"):
        value = getattr(entry, name)
        if value is not None and not 0.0 <= value <= 1.0:
            raise ConfigError(f"{where}.{name} = {value} is not a rate between 0 and 1")
    for name in ("threshold_ci95", "false_alert_ci95", "miss_ci95", "alert_ci95"):
        interval = getattr(entry, name)
        if interval and (len(interval) != 2 or interval[0] > interval[1]):
            raise ConfigError(f"{where}.{name} must be [low, high], got {list(interval)}")
