"""The model card: everything the agent needs to feed a model and read its answer.

It travels inside the checkpoint and inside the ONNX file (metadata key ``mediqa.model_card``),
so the agent never re-declares preprocessing, prompt vocabulary or score direction.
Part of the contract floor: no torch, nothing of ours beyond the floor. It holds the **one**
reader and writer of the card in ONNX metadata (``read_card``, ``card_from_metadata``, ``embed_card``)
and the ONNX I/O names, so the agent, the engines and the exporter cannot disagree on them.

ONNX contract (every exported MedIQA Edge model):
  inputs   image   float32 [N, C, S, S]  preprocessed crops (C = len(ct_windows) for CT; MR repeats)
           prompt  int64   [N, 4]        indices into vocabulary[dimension|modality|anatomy|image_type]
  outputs  quality float32 [N]           per-crop quality on score_range, higher_is_better as stated
           physics float32 [N, P]        physical heads in ``heads`` order (normalised targets, see heads)
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mediqa.errors import ModelError
from mediqa.schema import to_plain

if TYPE_CHECKING:
    import onnx

METADATA_KEY = "mediqa.model_card"
INPUT_NAMES = ("image", "prompt")
OUTPUT_NAMES = ("quality", "physics")
SCORE_OUTPUT = "quality"
PROMPT_FIELDS = ("dimension", "modality", "anatomy", "image_type")
UNKNOWN = "unknown"

DEFAULT_VOCABULARY: dict[str, tuple[str, ...]] = {
    "dimension": (UNKNOWN, "2D", "3D"),
    "modality": (UNKNOWN, "CT", "MR"),
    "anatomy": (UNKNOWN, "head", "neck", "chest", "abdomen", "pelvis", "spine", "extremity", "breast",
                "cardiac", "whole_body"),
    "image_type": (UNKNOWN, "ct_soft", "ct_sharp", "ct_soft_contrast", "ct_sharp_contrast",
                   "T1", "T1_contrast", "T2", "FLAIR", "PD", "DWI", "ADC", "EPI", "SWI", "MRA"),
}


@dataclass(frozen=True)
class Preprocessing:
    """How stored pixels become model input. Raw stored values are never fed to a model."""

    crop_size: int = 96  # native-resolution crops: shrinking a 512 slice kills the noise texture
    crops_per_slice: int = 4
    # CT: HU windows (centre, width) stacked as channels, each mapped to [-1, 1].
    ct_windows: tuple[tuple[float, float], ...] = ((40.0, 400.0), (40.0, 80.0), (600.0, 2800.0))
    # MR: robust per-volume percentiles mapped to [-1, 1], repeated over the channels.
    mr_percentiles: tuple[float, float] = (0.5, 99.5)
    channels: int = 3


@dataclass(frozen=True)
class ModelCard:
    name: str = "mediqa-edge"
    version: str = "0"
    architecture: Mapping[str, Any] = field(default_factory=dict)
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    vocabulary: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_VOCABULARY))
    score_range: tuple[float, float] = (0.0, 4.0)
    higher_is_better: bool = True
    score_label: str = "physics-derived proxy quality (not an expert score)"
    heads: tuple[str, ...] = ()  # physical heads, in the order of the ``physics`` output
    head_info: Mapping[str, Any] = field(default_factory=dict)  # per head: modality, unit, transform
    thresholds: Mapping[str, Any] = field(default_factory=dict)
    training: Mapping[str, Any] = field(default_factory=dict)  # data set hash, config, seed, code version
    metrics: Mapping[str, Any] = field(default_factory=dict)

    def prompt_index(self, attribute: str, value: str) -> int:
        """Index of ``value`` in the vocabulary; unseen values map to ``unknown`` (never a guess)."""
        vocab = self.vocabulary[attribute]
        return vocab.index(value) if value in vocab else vocab.index(UNKNOWN)

    def to_json(self) -> str:
        # Strict JSON: a metric that could not be computed (NaN) is written as null, which every JSON
        # reader accepts; bare NaN is a Python extension that jq, browsers and most parsers reject.
        return json.dumps(_finite_or_null(to_plain(self)), sort_keys=True, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ModelError(f"model card is not valid JSON: {exc}") from None
        return cls.from_dict(raw)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ModelCard:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ModelError(f"model card has unknown fields {sorted(unknown)}", "re-export the model")
        data = dict(raw)
        pre = dict(data.get("preprocessing", {}))
        if "ct_windows" in pre:
            pre["ct_windows"] = tuple(tuple(w) for w in pre["ct_windows"])
        if "mr_percentiles" in pre:
            pre["mr_percentiles"] = tuple(pre["mr_percentiles"])
        data["preprocessing"] = Preprocessing(**pre)
        if "vocabulary" in data:
            data["vocabulary"] = {k: tuple(v) for k, v in data["vocabulary"].items()}
            for attr in PROMPT_FIELDS:
                if UNKNOWN not in data["vocabulary"].get(attr, ()):
                    raise ModelError(f"model card vocabulary '{attr}' lacks the '{UNKNOWN}' token")
        for key in ("score_range", "heads"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)


def _finite_or_null(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_null(v) for v in value]
    return value


def card_from_metadata(metadata: Mapping[str, str]) -> ModelCard | None:
    """The card in an ONNX file's metadata properties, or None for a model exported without one."""
    text = metadata.get(METADATA_KEY)
    return ModelCard.from_json(text) if text else None


def read_card(model_path: Path) -> ModelCard:
    """The model card from an exported file's ONNX metadata (the JSON beside it is only a readable copy)."""
    try:
        props = onnx_metadata(model_path)
    except (OSError, ValueError) as exc:  # any parse failure means the same thing to the user
        raise ModelError(f"{model_path} is not a readable ONNX model ({type(exc).__name__})") from None
    card = card_from_metadata(props)
    if card is None:
        raise ModelError(f"{model_path} has no MedIQA model card in its metadata",
                         "export it with `mediqa export onnx CHECKPOINT`")
    return card


# ModelProto's metadata_props (field 14: StringStringEntryProto key = 1, value = 2), onnx/onnx.proto3.
_METADATA_FIELD, _KEY_FIELD, _VALUE_FIELD = 14, 1, 2
_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5  # protobuf wire types (groups, 3 and 4, are not in ONNX)


def onnx_metadata(model_path: Path) -> dict[str, str]:
    """An ONNX file's metadata properties, read from the protobuf wire format.

    Why not ``onnx.load``: the running agent reads its card at start, and the onnx package cost it ~11 MB
    imported plus ~7 MB per load (the whole graph with its weights, parsed to read a few hundred bytes).
    Here only top-level fields are walked; the graph is skipped with a seek. Raises ValueError for what
    is not a well-formed ModelProto (the walk reaches the end of the file exactly, or it is not one).
    """
    import io

    props: dict[str, str] = {}
    with open(model_path, "rb") as f:
        for _, data in _fields(f, f.seek(0, 2), {_METADATA_FIELD}):
            entry = dict(_fields(io.BytesIO(data), len(data), {_KEY_FIELD, _VALUE_FIELD}))
            # the last entry of a key wins, as in onnx's own readers
            props[entry.get(_KEY_FIELD, b"").decode("utf-8")] = entry.get(_VALUE_FIELD, b"").decode("utf-8")
    return props


def _fields(f: Any, size: int, wanted: set[int]) -> Iterator[tuple[int, bytes]]:
    """The length-delimited fields numbered in ``wanted`` of the message in ``f[0:size]``; others skipped."""
    f.seek(0)
    while f.tell() < size:
        tag = _varint(f)
        number, wire = tag >> 3, tag & 7
        if number == 0:
            raise ValueError("field number 0")
        if wire == _VARINT:
            _varint(f)
            continue
        length = _varint(f) if wire == _LENGTH else {_FIXED64: 8, _FIXED32: 4}.get(wire)
        if length is None:
            raise ValueError(f"wire type {wire} of field {number}")
        if f.tell() + length > size:
            raise ValueError("a field runs past the end of the file")
        if wire == _LENGTH and number in wanted:
            yield number, bytes(f.read(length))
        else:
            f.seek(length, 1)


def _varint(f: Any) -> int:
    value = shift = 0
    while True:
        byte = f.read(1)
        if not byte:
            raise ValueError("file ends inside a varint")
        value |= (byte[0] & 0x7F) << shift
        if byte[0] < 0x80:
            return value
        shift += 7
        if shift >= 64:
            raise ValueError("varint longer than 10 bytes")


def embed_card(proto: onnx.ModelProto, card: ModelCard) -> None:
    """Write ``card`` into ``proto``'s metadata (replacing an older card), as every exporter must."""
    for prop in list(proto.metadata_props):
        if prop.key == METADATA_KEY:
            proto.metadata_props.remove(prop)
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, card.to_json()
