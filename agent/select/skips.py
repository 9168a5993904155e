"""What is not for quality scoring: localizers, phase images, derived parametric maps.

The reader already skips files whose ImageType says LOCALIZER or DERIVED (``ingest.skip_localizers``,
``ingest.skip_derived``, ``agent/dicom/index.py``). What it cannot see file by file, or what vendors
write as ORIGINAL, is decided here on the whole series, before any slice is chosen, for the kinds
listed in ``ingest.skip_kinds``:

- ``localizer``: an MR localizer/scout that is not typed LOCALIZER (GE "3-Plane Loc", Siemens
  AAHScout, Philips Survey): by its words, or because its slices lie in several planes (a 3-plane
  localizer is one series of sagittal, coronal and axial slices: no volume to judge).
- ``phase``: phase (and real/imaginary) images, ImageType P / PHASE / Philips P_*, and field maps
  by name. A phase image wraps between -pi and pi: its "noise" is not the image's quality, and the
  classical scorer read it as SNR about 0 (a false RETAKE).
- ``derived_map``: parametric maps whatever their ImageType says: ADC, FA, colour FA, tensor, CBF/CBV/
  MTT/TTP, ASL perfusion-weighted differences, T1/T2/T2* maps, QSM. Their values are fitted
  parameters, not signal: noise and artefact measures do not apply. Diffusion *trace* images
  (TRACEW) are not maps: they are averaged diffusion-weighted images whose noise and motion are
  real, so they are scored when the reader lets derived images through (``skip_derived: false``).

A series whose every file falls under one of these is ``skipped`` with the reason; a series that
mixes them (magnitude and phase in one series) is scored on the rest and says how many were left out.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from mediqa.agent.config import SKIP_KINDS
from mediqa.agent.dicom.records import InstanceRecord

__all__ = ["SKIP_KINDS", "Skip", "is_phase_image", "plane_counts", "record_skip", "split_for_scoring"]

_WORDS = re.compile(r"[^a-z0-9]+")
LOCALIZER_TEXT = ("localizer", "localiser", "localizers", "scout", "aahscout", "survey", "surview", "3 plane",
                  "3plane", "tri plane", "triplane", "three plane", "3 pl loc", "plane loc", "smartsurvey")
PHASE_TEXT = ("fieldmap", "field map", "field mapping", "fieldmapping", "b0map", "b0 map", "phase map",
              "phase image", "phase images")
# Map names are read from the series description only: the protocol name is shared by the acquisition and
# the maps made from it (a protocol "DWI_ADC" names the DWI too).
MAP_TEXT = ("apparent diffusion", "fractional anisotropy", "colfa", "color fa", "colour fa", "relcbf", "relcbv",
            "cerebral blood flow", "perfusion weighted", "t1 map", "t1map", "t2 map", "t2map", "t2star map",
            "t2 star map", "r2star", "mean diffusivity")
# Short names that a site could also give an acquisition ("DWI ADC"): a map by name only when not typed ORIGINAL.
MAP_TEXT_SHORT = ("adc", "eadc", "cbf", "rcbf", "cbv", "rcbv", "mtt", "ttp", "qsm")
# Words that would match "fa" inside ordinary names (a BOLD task called "fa"): FA only as the last word.
_LAST_WORD_FA = re.compile(r"(^|[^a-z0-9])fa$")
PHASE_TYPES = {"P", "PHASE", "PHASE MAP", "R", "I", "REAL", "IMAGINARY"}
MAP_TYPES = {"ADC", "EADC", "EXP", "FA", "COLFA", "TENSOR", "TENSOR_B0", "CBF", "RELCBF", "RCBF", "CBV",
             "RELCBV", "MTT", "TTP", "T1 MAP", "T2 MAP", "T1MAP", "T2MAP", "T2_MAP", "T2STAR MAP", "R2STAR",
             "QSM", "MD", "PERFUSION", "PWI"}
# Planes further apart than this are different planes (oblique slabs of one series lie within a few degrees).
PLANE_ANGLE_DEG = 30.0
MINORITY_PLANE_SHARE = 0.2  # a second plane holding at least this share of the slices: a multi-plane series


@dataclass(frozen=True)
class Skip:
    """Why a series (or some of its files) is not for quality scoring: the kind and plain words."""

    kind: str
    reason: str


def _words(text: str) -> str:
    return " " + " ".join(w for w in _WORDS.split(text.lower()) if w) + " "


def _text(record: InstanceRecord) -> str:
    """The series' own name. The protocol name only stands in when there is none: GE writes the whole exam's
    protocol there ("Brain Advanced Sequences"), shared by every series of the exam."""
    return record.series_description or record.protocol_name


def _has_words(text: str, phrases: Iterable[str]) -> str | None:
    padded = _words(text)
    return next((p for p in phrases if f" {p} " in padded), None)


def is_phase_image(record: InstanceRecord) -> bool:
    """Phase, real or imaginary: ImageType (value 3 on Siemens, Philips P_/R_/I_ prefixes), or the complex
    component the header codes (ComplexImageComponent; GE's private image type, its only phase marker)."""
    if record.complex_component in ("PHASE", "REAL", "IMAGINARY"):
        return True
    values = record.image_type[2:]
    return any(v in PHASE_TYPES or v.startswith(("P_", "R_", "I_", "PHASE")) for v in values)


def record_skip(record: InstanceRecord, kinds: Sequence[str]) -> Skip | None:
    """The file-level verdict: which listed kind this image is (None: an image to score)."""
    types = set(record.image_type)
    text = _text(record)
    if "localizer" in kinds:
        word = _has_words(text, LOCALIZER_TEXT)
        if word or "LOCALIZER" in types:
            return Skip("localizer", f"localizer/scout ({'named ' + repr(word) if word else 'ImageType LOCALIZER'})")
    if "phase" in kinds:
        if is_phase_image(record):
            return Skip("phase", "phase images (ImageType " + "\\".join(record.image_type[:4]) + ")")
        word = _has_words(text, PHASE_TEXT)
        if word:
            return Skip("phase", f"field map / phase images (named {word!r})")
    if "derived_map" in kinds:
        mapped = sorted(types & MAP_TYPES)
        if "PERFUSION" in mapped and types.isdisjoint({"DERIVED", "ASL"}):
            mapped.remove("PERFUSION")  # DSC perfusion source images are typed PERFUSION too: they are images
        if mapped:
            return Skip("derived_map", f"a derived parametric map (ImageType {mapped[0]})")
        description = record.series_description
        word = _has_words(description, MAP_TEXT)
        if not word and record.image_type[:1] != ("ORIGINAL",):
            word = _has_words(description, MAP_TEXT_SHORT)
            if not word and _LAST_WORD_FA.search(description.lower().strip()):
                word = "fa"
        if word:
            return Skip("derived_map", f"a derived parametric map (named {word!r})")
    return None


def split_for_scoring(records: Sequence[InstanceRecord], kinds: Sequence[str]
                      ) -> tuple[list[InstanceRecord], Skip | None, tuple[str, ...]]:
    """(records to score, the series' skip verdict when nothing is left, notices about what was left out)."""
    if not kinds:
        return list(records), None, ()
    # A series' files mostly share what the verdict reads (ImageType, names): one verdict per distinct set.
    by_fields: dict[tuple[object, ...], Skip | None] = {}
    verdicts = []
    for r in records:
        key = (r.image_type, r.series_description, r.protocol_name, r.complex_component)
        if key not in by_fields:
            by_fields[key] = record_skip(r, kinds)
        verdicts.append((r, by_fields[key]))
    kept = [r for r, v in verdicts if v is None]
    left_out = [v for _, v in verdicts if v is not None]
    if not kept:
        first = Counter(v.reason for v in left_out).most_common(1)[0][0]
        kind = next(v.kind for v in left_out if v.reason == first)
        return [], Skip(kind, f"not for quality scoring: {first}"), ()
    if "localizer" in kinds:
        planes = plane_counts(kept)
        if len(planes) > 1 and sorted(planes, reverse=True)[1] >= MINORITY_PLANE_SHARE * len(kept):
            return [], Skip("localizer", f"not for quality scoring: a multi-plane localizer "
                                         f"({len(planes)} slice planes in one series)"), ()
    notices: tuple[str, ...] = ()
    if left_out:
        kinds_left = Counter(v.kind for v in left_out)
        what = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in sorted(kinds_left.items()))
        notices = (f"{len(left_out)} of {len(records)} images not scored ({what})",)
    return kept, None, notices


def plane_counts(records: Sequence[InstanceRecord]) -> list[int]:
    """How many slices lie in each distinct plane (normals more than ``PLANE_ANGLE_DEG`` apart).

    Slices of a series mostly share one orientation: each distinct one is measured once, in the order
    they first appear (the planes come out as if every slice had been measured in turn).
    """
    orientations: Counter[tuple[float, ...]] = Counter()
    for rec in records:
        for geom in rec.frames[:1] if not rec.is_multiframe else rec.frames:
            if geom.orientation:
                orientations[geom.orientation] += 1
    normals: list[np.ndarray] = []
    counts: list[int] = []
    cos_limit = float(np.cos(np.radians(PLANE_ANGLE_DEG)))
    for orientation, many in orientations.items():
        row, col = np.asarray(orientation[:3]), np.asarray(orientation[3:])
        n = np.cross(row, col)
        norm = float(np.linalg.norm(n))
        if norm == 0.0:
            continue
        n = n / norm
        for k, ref in enumerate(normals):
            if abs(float(np.dot(n, ref))) >= cos_limit:
                counts[k] += many
                break
        else:
            normals.append(n)
            counts.append(many)
    return counts
