"""Prompt attributes from the series headers: dimension, modality, anatomy, image type.

The vendor spellings live in a data table (``agent/rules/prompt_rules.yaml``), not in code, so a
site can read and extend them. Every answer is a model-card vocabulary token; when no rule
fires the answer is ``unknown`` (its own token), never a guess. A model-predicted attribute (the
paper's classifier) may fill what the headers leave unknown; each attribute records its source.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from mediqa.agent.dicom.volume import SeriesLayout
from mediqa.errors import ConfigError
from mediqa.model_card import DEFAULT_VOCABULARY, PROMPT_FIELDS, UNKNOWN

log = logging.getLogger(__name__)

RULE_SECTIONS = ("dimension", "modality", "anatomy", "ct_kernel", "ct_contrast", "mr_image_type")
TABLE_SECTIONS = (*RULE_SECTIONS, "ct_image_type")
TEXT_FIELDS = ("modality", "manufacturer", "body_part", "series_description", "protocol_name", "study_description",
               "text", "image_type", "scanning_sequence", "sequence_variant", "sequence_name",
               "mr_acquisition_type", "convolution_kernel", "contrast_agent")
NUMBER_FIELDS = ("echo_time", "repetition_time", "inversion_time", "diffusion_b_value", "n_slices")
_RULE_KEYS = ("value", "if", "unless", "note")
_WORD_SPLIT = re.compile(r"[^a-z0-9+]+")


@dataclass(frozen=True)
class Prompt:
    """The four prompt tokens plus where each came from ("header: <rule>", "model", or "none")."""

    values: Mapping[str, str]
    sources: Mapping[str, str]

    def as_dict(self) -> dict[str, str]:
        return dict(self.values)


def words_of(text: str) -> str:
    """Lower-case words separated by single spaces, padded so phrase search respects word edges."""
    return " " + " ".join(w for w in _WORD_SPLIT.split(text.lower()) if w) + " "


class _Matcher:
    """One field test from the table: words, regex, numeric range or presence."""

    def __init__(self, field: str, spec: Any, where: str) -> None:
        if field not in TEXT_FIELDS + NUMBER_FIELDS:
            raise ConfigError(f"{where}: unknown field '{field}'{_did_you_mean(field, TEXT_FIELDS + NUMBER_FIELDS)}")
        self.field = field
        self.kind, self.arg = _parse_spec(spec, where)
        if self.kind == "words":
            for word in self.arg:
                if words_of(word).strip() != word.lower().strip():
                    raise ConfigError(f"{where}: '{word}' can never match a word (words split at anything but "
                                      f"a-z 0-9 +); write it as '{words_of(word).strip()}'")
            self.arg = tuple(words_of(w) for w in self.arg)
        elif self.kind == "range" and field not in NUMBER_FIELDS:
            raise ConfigError(f"{where}: range on text field '{field}'")

    def __call__(self, facts: Mapping[str, Any]) -> bool:
        value = facts.get(self.field)
        if self.kind == "present":
            return bool(value) == self.arg
        if value is None or value == "":
            return False
        if self.kind == "range":
            lo, hi = self.arg
            return (lo is None or value >= lo) and (hi is None or value <= hi)
        if self.kind == "regex":
            return self.arg.search(str(value)) is not None
        text = words_of(str(value))
        return any(w in text for w in self.arg)


def _parse_spec(spec: Any, where: str) -> tuple[str, Any]:
    if isinstance(spec, list):
        return "words", tuple(str(w) for w in spec)
    if isinstance(spec, Mapping) and len(spec) == 1:
        (kind, arg), = spec.items()
        if kind == "regex":
            try:
                return "regex", re.compile(str(arg), re.IGNORECASE | re.MULTILINE)
            except re.error as exc:
                raise ConfigError(f"{where}: bad regex {arg!r}: {exc}") from None
        if kind == "range" and isinstance(arg, list) and len(arg) == 2:
            return "range", tuple(None if v is None else float(v) for v in arg)
        if kind == "present" and isinstance(arg, bool):
            return "present", arg
    raise ConfigError(f"{where}: matcher must be a word list, {{regex: ...}}, {{range: [lo, hi]}} or "
                      f"{{present: true|false}}, got {spec!r}")


@dataclass(frozen=True)
class Rule:
    value: str
    conditions: tuple[_Matcher, ...]
    vetoes: tuple[_Matcher, ...]
    label: str  # "section[i]" plus the note: recorded as the source of an answer

    def fires(self, facts: Mapping[str, Any]) -> bool:
        return all(m(facts) for m in self.conditions) and not any(m(facts) for m in self.vetoes)


@dataclass(frozen=True)
class RuleTable:
    sections: Mapping[str, tuple[Rule, ...]]
    ct_image_type: Mapping[str, Mapping[str, str]]

    def first(self, section: str, facts: Mapping[str, Any]) -> Rule | None:
        return next((r for r in self.sections[section] if r.fires(facts)), None)


DEFAULT_RULES = "prompt_rules.yaml"


@lru_cache(maxsize=4)
def load_rules(path: str | None = None) -> RuleTable:
    """Parse and validate the rules table once (packaged table by default; ``path`` for a site's own)."""
    if path is None:
        text = (resources.files("mediqa.agent") / "rules" / DEFAULT_RULES).read_text(encoding="utf-8")
        name = DEFAULT_RULES
    else:
        text, name = Path(path).read_text(encoding="utf-8"), str(path)
    raw = yaml.safe_load(text) or {}
    unknown = set(raw) - set(TABLE_SECTIONS)
    if unknown:
        bad = sorted(unknown)[0]
        raise ConfigError(f"{name}: unknown section '{bad}'{_did_you_mean(bad, TABLE_SECTIONS)}")
    vocab = {"dimension": DEFAULT_VOCABULARY["dimension"], "modality": DEFAULT_VOCABULARY["modality"],
             "anatomy": DEFAULT_VOCABULARY["anatomy"], "mr_image_type": DEFAULT_VOCABULARY["image_type"],
             "ct_kernel": (UNKNOWN, "soft", "sharp"), "ct_contrast": (UNKNOWN, "yes", "no")}
    sections = {s: tuple(_rule(item, f"{name}: {s}[{i}]", vocab[s]) for i, item in enumerate(raw.get(s) or []))
                for s in RULE_SECTIONS}
    ct_types = {str(k): {str(c): str(v) for c, v in row.items()} for k, row in (raw.get("ct_image_type") or {}).items()}
    for row in ct_types.values():
        for column in row:
            if column not in vocab["ct_contrast"]:
                raise ConfigError(f"{name}: ct_image_type column '{column}' is not one of yes, no, unknown")
        for token in row.values():
            if token not in DEFAULT_VOCABULARY["image_type"]:
                raise ConfigError(f"{name}: ct_image_type token '{token}' is not in the model card vocabulary")
    return RuleTable(sections, ct_types)


def _rule(item: Any, where: str, vocab: tuple[str, ...]) -> Rule:
    if not isinstance(item, Mapping) or "value" not in item:
        raise ConfigError(f"{where}: a rule needs a 'value'")
    extra = set(item) - set(_RULE_KEYS)
    if extra:
        bad = sorted(extra)[0]
        raise ConfigError(f"{where}: unknown key '{bad}'{_did_you_mean(bad, _RULE_KEYS)}")
    value = str(item["value"])
    if value not in vocab:
        raise ConfigError(f"{where}: '{value}' is not a vocabulary token{_did_you_mean(value, vocab)}",
                          "add it to the model card vocabulary or fix the spelling")
    conds = tuple(_Matcher(f, s, where) for f, s in (item.get("if") or {}).items())
    vetoes = tuple(_Matcher(f, s, where) for f, s in (item.get("unless") or {}).items())
    label = f"{where.split(': ', 1)[-1]} {'+'.join(m.field for m in conds)}" + (
        f" ({item['note']})" if item.get("note") else "")
    return Rule(value, conds, vetoes, label)


def _did_you_mean(word: str, options: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, options, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def series_facts(layout: SeriesLayout) -> dict[str, Any]:
    """What the rules can test, read from the series' first instance (b-value: the largest in the series)."""
    r = layout.first
    b_values = [x.diffusion_b_value for x in layout.records if x.diffusion_b_value is not None]
    return {
        "modality": r.modality, "manufacturer": r.manufacturer, "body_part": r.body_part,
        "series_description": r.series_description, "protocol_name": r.protocol_name,
        "study_description": r.study_description, "text": f"{r.series_description} {r.protocol_name}".strip(),
        "image_type": "\n".join(r.image_type), "scanning_sequence": "\n".join(r.scanning_sequence),
        "sequence_variant": "\n".join(r.sequence_variant), "sequence_name": r.sequence_name,
        "mr_acquisition_type": r.mr_acquisition_type, "convolution_kernel": "\n".join(r.convolution_kernel),
        "contrast_agent": r.contrast_agent.strip(), "echo_time": r.echo_time, "repetition_time": r.repetition_time,
        "inversion_time": r.inversion_time, "diffusion_b_value": max(b_values) if b_values else None,
        "n_slices": float(layout.n_slices),
    }


def derive_prompt(layout: SeriesLayout, predicted: Mapping[str, str] | None = None,
                  vocabulary: Mapping[str, tuple[str, ...]] | None = None, rules: RuleTable | None = None) -> Prompt:
    """Header rules first; ``predicted`` (a model's guess per attribute) only fills what stays unknown.

    ``vocabulary`` is the model card's: a token the card does not know becomes ``unknown``.
    """
    table = rules or load_rules()
    vocab = vocabulary or DEFAULT_VOCABULARY
    facts = series_facts(layout)
    values: dict[str, str] = {}
    sources: dict[str, str] = {}
    for attr in ("dimension", "modality", "anatomy"):
        rule = table.first(attr, facts)
        values[attr], sources[attr] = (rule.value, f"header: {rule.label}") if rule else (UNKNOWN, "none")
    values["image_type"], sources["image_type"] = _image_type(table, facts, values["modality"])
    for attr in PROMPT_FIELDS:
        if values[attr] not in vocab[attr]:
            values[attr], sources[attr] = UNKNOWN, f"none ({values[attr]!r} is not in the model's vocabulary)"
        guess = (predicted or {}).get(attr)
        if values[attr] == UNKNOWN and guess and guess != UNKNOWN and guess in vocab[attr]:
            values[attr], sources[attr] = guess, "model"
    log.debug("series %s prompt %s from %s", layout.series_key, values, sources)
    return Prompt(values, sources)


def _image_type(table: RuleTable, facts: Mapping[str, Any], modality: str) -> tuple[str, str]:
    if modality == "MR":
        rule = table.first("mr_image_type", facts)
        return (rule.value, f"header: {rule.label}") if rule else (UNKNOWN, "none")
    if modality == "CT":
        kernel, contrast = table.first("ct_kernel", facts), table.first("ct_contrast", facts)
        if kernel is None or kernel.value == UNKNOWN:
            return UNKNOWN, "none"
        # No rule on contrast: unknown (a missing Contrast/Bolus module is not "no contrast"); the table's
        # "unknown" column says which token a kernel gets then (its own; without the column: unknown).
        given = contrast.value if contrast is not None else UNKNOWN
        token = table.ct_image_type.get(kernel.value, {}).get(given, UNKNOWN)
        why = contrast.label if contrast is not None else "contrast unknown"
        return token, f"header: {kernel.label} + {why}" if token != UNKNOWN else f"none ({why})"
    return UNKNOWN, "none"


def prompt_for(layout: SeriesLayout, predicted: Mapping[str, str] | None = None,
               vocabulary: Mapping[str, tuple[str, ...]] | None = None) -> dict[str, str]:
    """The four prompt tokens for a series (see ``derive_prompt`` for their sources)."""
    return derive_prompt(layout, predicted, vocabulary).as_dict()
