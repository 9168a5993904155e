"""A scored series' quality result as a DICOM Structured Report, for filing beside the images in PACS.

API::

    header = pydicom.dcmread(one_file_of_the_series, stop_before_pixels=True)
    sr = build_quality_sr(result_json, header, worst_sop_uid, [(sop_class_uid, sop_instance_uid), ...])
    path = write_sr(sr, out_dir)   # atomic, 0600; then pacs.send_files([path], ...)

Why a Comprehensive SR and not a TID 1500 Measurement Report: TID 1500 is built for measurements of
regions (measurement groups with tracking identifiers, finding sites, image regions) with codes from
its own context groups; a series-level 0..4 quality score, an ok/retake decision and free-text
reasons fit none of its slots without bending them. A Comprehensive SR (1.2.840.10008.5.1.4.1.1.88.33,
not the 3D variant: we have no coordinates, and older PACS display the plain one) takes a free
content tree, and every viewer and dcmtk's ``dsrdump`` render it.

Content (all CONTAINS the root "Image quality report"): NUM score (0 bad .. 4 excellent; omitted
when not finite), CODE retake decision, TEXT reasons, a "Measures" container of NUM physical measures
(units from the name: ``*_hu`` in HU, ``*_mm`` in mm, else unitless), the worst slice as NUM score and
position plus an IMAGE reference to its SOP instance, TEXT algorithm name / version (DCM codes),
model SHA-256, agent version and scorer. Concepts without an exact DCM code use the private scheme
``99MEDIQA`` (declared in the Coding Scheme Identification Sequence). The evidence is every instance
of the scored series, so PACS links the report to it.

Identity: the SR's SOP Instance UID is ``2.25.<uuid as integer>`` of the result's ``uuid`` (or
``result_uuid``) when the result has one (a resend is then the same object, not a duplicate), else a
fresh UID. All reports on one source series share one SR series whose UID is derived from the source
series UID. A superseding result names the report it replaces in the Predecessor Documents Sequence
and a TEXT item: ``replaces`` (an SR SOP Instance UID) or, by default, the UID derived from the
result's ``supersedes`` uuid (nothing when that is not a uuid).

Patient and study modules are copied from ``source_header`` (missing type 2 attributes become empty);
nothing here logs patient data or UIDs.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from copy import deepcopy
from pathlib import Path
from typing import Any

import highdicom as hd
import pydicom
from highdicom.coding_schemes import CodingSchemeIdentificationItem
from highdicom.sr import CodedConcept
from pydicom.sr.codedict import codes
from pydicom.uid import ComprehensiveSRStorage, generate_uid

from mediqa.agent.report.sr_uids import sr_instance_uid, sr_series_uid

log = logging.getLogger(__name__)

SCHEME = "99MEDIQA"
SR_SERIES_NUMBER_BASE = 9000  # SR series number = this + the source series number: easy to find in PACS


def _code(value: str, meaning: str) -> CodedConcept:
    return CodedConcept(value, SCHEME, meaning)


TITLE = _code("IQA-REPORT", "Image quality report")
SCORE = _code("IQA-SCORE", "Image quality score")
DECISION = _code("IQA-DECISION", "Retake decision")
DECISIONS = {"ok": _code("IQA-OK", "No retake needed"), "retake": _code("IQA-RETAKE", "Retake recommended"),
             "unscored": _code("IQA-UNSCORED", "Not scored")}
REASON = _code("IQA-REASON", "Reason")
MEASURES = _code("IQA-MEASURES", "Measures")
WORST = _code("IQA-WORST", "Worst slice")
WORST_SCORE = _code("IQA-WORST-SCORE", "Worst slice score")
WORST_POSITION = _code("IQA-WORST-POS", "Worst slice position")
MODEL_SHA = _code("IQA-MODEL-SHA256", "Model SHA-256")
AGENT_VERSION = _code("IQA-AGENT-VER", "Agent version")
SCORER = _code("IQA-SCORER", "Scorer")
REPLACES = _code("IQA-REPLACES", "Replaces report")
MEASURE_NAMES = {"noise_hu": "Image noise", "snr": "Signal-to-noise ratio", "efc": "Entropy focus criterion"}
UNITS = {"_hu": CodedConcept("[hnsf'U]", "UCUM", "Hounsfield unit"), "_mm": CodedConcept("mm", "UCUM", "mm")}
UNITLESS = CodedConcept("1", "UCUM", "no units")
SCORE_UNIT = CodedConcept("{score}", "UCUM", "score")
_BUILD_LOCK = threading.Lock()
TYPE2_PATIENT_STUDY = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber",
                       "StudyID", "StudyDate", "StudyTime", "ReferringPhysicianName")


def _field(result: Mapping[str, Any], flat: str, nested: str) -> str | None:
    value = result.get(flat)
    if value is None and isinstance(result.get("model"), Mapping):
        value = result["model"].get(nested)
    return None if value in (None, "") else str(value)


def _uuid_or_none(value: Any) -> str | None:
    try:
        return sr_instance_uid(value) if value not in (None, "") else None
    except (ValueError, TypeError, AttributeError):
        return None


def _num(name: CodedConcept, value: float, unit: CodedConcept) -> hd.sr.NumContentItem:
    return hd.sr.NumContentItem(name, round(float(value), 4), unit, relationship_type="CONTAINS")


def _text(name: Any, value: str) -> hd.sr.TextContentItem:
    return hd.sr.TextContentItem(name, value, relationship_type="CONTAINS")


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _content(result: Mapping[str, Any], worst_sop_uid: str | None, worst_class: str | None,
             replaces: str | None) -> hd.sr.ContainerContentItem:
    items: list[Any] = []
    if _finite(result.get("score")):
        items.append(_num(SCORE, result["score"], SCORE_UNIT))
    items.append(hd.sr.CodeContentItem(DECISION, DECISIONS[str(result["decision"])], relationship_type="CONTAINS"))
    items += [_text(REASON, str(r)) for r in result.get("reasons") or ()]
    measures = [_num(_code(str(k)[:16], MEASURE_NAMES.get(str(k), str(k))), v,
                     next((u for suffix, u in UNITS.items() if str(k).endswith(suffix)), UNITLESS))
                for k, v in sorted((result.get("measures") or {}).items()) if _finite(v)]
    if measures:
        group = hd.sr.ContainerContentItem(MEASURES, relationship_type="CONTAINS")
        group.ContentSequence = hd.sr.ContentSequence(measures)
        items.append(group)
    worst = result.get("worst_slice") or {}
    if _finite(worst.get("score")):
        items.append(_num(WORST_SCORE, worst["score"], SCORE_UNIT))
    if _finite(worst.get("position_mm")):
        items.append(_num(WORST_POSITION, worst["position_mm"], UNITS["_mm"]))
    if worst_sop_uid is not None and worst_class is not None:
        items.append(hd.sr.ImageContentItem(WORST, worst_class, worst_sop_uid, relationship_type="CONTAINS"))
    for concept, value in ((codes.DCM.AlgorithmName, _field(result, "model_name", "name")),
                           (codes.DCM.AlgorithmVersion, _field(result, "model_version", "version")),
                           (MODEL_SHA, _field(result, "model_sha256", "sha256")),
                           (AGENT_VERSION, _field(result, "agent_version", "agent_version")),
                           (SCORER, " / ".join(str(result[k]) for k in ("scorer", "backend") if result.get(k))),
                           (REPLACES, replaces)):
        if value:
            items.append(_text(concept, value))
    root = hd.sr.ContainerContentItem(TITLE)
    root.ContentSequence = hd.sr.ContentSequence(items)
    return root


def _evidence(header: pydicom.Dataset, sop_uids: Sequence[tuple[str, str]]) -> list[pydicom.Dataset]:
    """The series' instances as highdicom evidence; the first carries the patient and study modules."""
    first = deepcopy(header)
    for keyword in TYPE2_PATIENT_STUDY:
        if keyword not in first:
            setattr(first, keyword, None)
    first.PatientName = None  # restored after: highdicom's name check would print the name in a warning
    out = [first]
    for k, (sop_class, sop_instance) in enumerate(sop_uids):
        ds = first if k == 0 else pydicom.Dataset()
        ds.StudyInstanceUID, ds.SeriesInstanceUID = header.StudyInstanceUID, header.SeriesInstanceUID
        ds.SOPClassUID, ds.SOPInstanceUID = sop_class, sop_instance
        if k:
            out.append(ds)
    return out


@contextmanager
def _quiet_highdicom() -> Iterator[None]:
    """highdicom logs evidence SOP Instance UIDs at INFO (and names at WARNING): keep that out of our logs."""
    logger = logging.getLogger("highdicom")
    with _BUILD_LOCK:
        level = logger.level
        logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            logger.setLevel(level)


def build_quality_sr(result: Mapping[str, Any], source_header: pydicom.Dataset, worst_sop_uid: str | None,
                     series_sop_uids: Sequence[tuple[str, str]], replaces: str | None = None) -> pydicom.Dataset:
    """The Comprehensive SR of one result (``SeriesResult.to_json()``); see the module docstring."""
    if str(result.get("decision")) not in DECISIONS:
        raise ValueError(f"unknown decision {result.get('decision')!r}: expected one of {', '.join(DECISIONS)}")
    if not series_sop_uids:
        raise ValueError("no instances of the scored series to reference as evidence")
    classes = {inst: cls for cls, inst in series_sop_uids}
    if worst_sop_uid is not None and worst_sop_uid not in classes:
        raise ValueError("the worst slice is not an instance of the scored series")
    predecessor = replaces or _uuid_or_none(result.get("supersedes"))
    series_uid = sr_series_uid(source_header.SeriesInstanceUID)
    previous = None
    if predecessor:
        pre = pydicom.Dataset()
        pre.StudyInstanceUID, pre.SeriesInstanceUID = source_header.StudyInstanceUID, series_uid
        pre.SOPClassUID, pre.SOPInstanceUID = ComprehensiveSRStorage, predecessor
        previous = [pre]
    number = result.get("series_number")
    number = int(number) if isinstance(number, int) and 0 <= number < 10**8 else 0
    agent_version = _field(result, "agent_version", "agent_version")
    with _quiet_highdicom():
        sr = hd.sr.ComprehensiveSR(
            evidence=_evidence(source_header, series_sop_uids),
            content=_content(result, worst_sop_uid, classes.get(worst_sop_uid or ""), predecessor),
            series_instance_uid=series_uid,
            series_number=SR_SERIES_NUMBER_BASE + number,
            sop_instance_uid=_uuid_or_none(result.get("uuid") or result.get("result_uuid")) or str(generate_uid()),
            instance_number=1,
            manufacturer="MedIQA",
            manufacturer_model_name="MedIQA Edge",
            software_versions=agent_version,
            series_description="MedIQA image quality",
            is_complete=True,  # an automated, unverified advisory: preliminary, never final
            previous_versions=previous,
            coding_schemes=[CodingSchemeIdentificationItem(SCHEME, name="MedIQA Edge image quality concepts",
                                                              responsible_organization="MedIQA")],
        )
    sr.PatientName = source_header.get("PatientName")
    log.debug("quality SR built: %d evidence instances, %d content items", len(series_sop_uids),
              len(sr.ContentSequence))
    return sr


def sr_file_name(ds: pydicom.Dataset) -> str:
    """A stable file name without identifiers: the SOP Instance UID, hashed."""
    return "sr-" + hashlib.sha256(str(ds.SOPInstanceUID).encode()).hexdigest()[:32] + ".dcm"


def write_sr(ds: pydicom.Dataset, out_dir: str | os.PathLike[str]) -> Path:
    """Write ``ds`` under ``out_dir`` atomically (temp dot file, fsync, rename), mode 0600; same SR, same path."""
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    final = folder / sr_file_name(ds)
    temp = folder / f".{final.name}.part"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o600)
            ds.save_as(f, enforce_file_format=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, final)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    log.debug("quality SR written: %s", final.name)
    return final
