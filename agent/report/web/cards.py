"""A result as the technologist reads it: the verdict, what is wrong and where, in plain words.

One function turns a stored result (its JSON plus the row's fields) into the card the page draws, so
the live page, the detail page, the history and the CSV say the same thing the same way. Text from
DICOM headers passes ``clean_text``; the page inserts every string as text, never as markup.

Patient identifiers: none by default. The series UID (an identifier) never leaves the server; keys that
start with ``patient`` are dropped unless ``console.show_patient`` is on, and then only ``patient_name``
is shown, from the hook the service may give (default: a ``patient_name`` the service stored in the
result; the agent stores none today).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mediqa.agent.report.feedback import KINDS, Feedback, buttons_for
from mediqa.agent.report.privacy import clean_text

SCALE = "0 (bad) .. 4 (excellent)"
HEADLINES = {"retake": "RETAKE SUGGESTED", "ok": "checked", "unscored": "NOT SCORED", "skipped": "skipped"}

PatientHook = Callable[[Mapping[str, Any]], str | None]

# Measures the scorers report: label, unit, bar range (lo, hi), which end is good, and what it means.
MEASURES: Mapping[str, tuple[str, str, float, float, str, str]] = {
    "noise_hu": ("Image noise", "HU", 0.0, 60.0, "low", "noise SD in soft tissue: 8 HU or less scores 4, 40 or more 0"),
    "snr": ("Signal-to-noise", "", 0.0, 40.0, "high", "foreground over background noise: 30 or more scores 4, 3 or "
                                                    "less 0"),
    "efc": ("Entropy focus (EFC)", "", 0.0, 1.0, "low", "grows with ghosting and blur"),
    "ct_dose": ("Dose-like noise", "x ref.", 0.0, 1.0, "high", "noise as at this fraction of the reference dose"),
    "ct_view_undersampling": ("View undersampling", "x", 1.0, 8.0, "low", "streaks as with fewer projections"),
    "ct_blur_fwhm_mm": ("Blur", "mm", 0.0, 4.0, "low", "in-plane blur (FWHM)"),
    "ct_slab_slices": ("Partial volume", "slices", 1.0, 8.0, "low", "like this many slices averaged"),
    "mr_snr": ("Signal-to-noise", "", 0.0, 40.0, "high", "low SNR means a noisy image"),
    "mr_motion_rms_mm": ("Motion", "mm RMS", 0.0, 12.0, "low", "patient motion during the scan"),
    "mr_ghost": ("Ghosting", "", 0.0, 1.0, "low", "line deficit of the ghost"),
    "mr_spike": ("Spike", "", 0.0, 1.0, "low", "herringbone artefact strength"),
    "mr_bias": ("Bias field", "", 0.0, 1.0, "low", "smooth intensity shading"),
    "mr_acceleration": ("Undersampling", "R", 1.0, 8.0, "low", "acceleration artefacts"),
    "mr_truncation": ("Ringing", "x", 1.0, 4.0, "low", "truncation (Gibbs) ringing"),
}


_BELOW = re.compile(r"(\d) < (\d)")


def reason_text(reason: Any) -> str:
    """A reason in words: "score 0.41 < 2.00" reads "score 0.41 is below 2.00"."""
    return _BELOW.sub(r"\1 is below \2", clean_text(str(reason), 200))


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _mm(value: float) -> str:
    return f"{value:.0f} mm" if abs(value - round(value)) < 0.05 else f"{value:.1f} mm"


def where_text(result: Mapping[str, Any]) -> str:
    """"slice 18 of 28 at 40 mm" for the worst slice, or "" when the result has none."""
    worst = result.get("worst_slice")
    if not isinstance(worst, Mapping) or not isinstance(worst.get("rank"), int):
        return ""
    total = result.get("slices")
    text = f"slice {worst['rank']}" + (f" of {total}" if isinstance(total, int) and total else "")
    pos = _num(worst.get("position_mm"))
    return text + (f" at {_mm(pos)}" if pos is not None else "")


def threshold_text(threshold: Mapping[str, Any]) -> str:
    below = _num(threshold.get("retake_below"))
    if below is None:
        return "no threshold applied"
    text = f"retake below {below:.2f}"
    worst = _num(threshold.get("worst_slice_below"))
    if worst is not None:
        text += f", or any slice below {worst:.2f}"
    source = threshold.get("source")
    return text + (f" ({clean_text(str(source), 60)})" if source else "")


def model_of(result: Mapping[str, Any]) -> dict[str, str]:
    """Model name / version / sha256 when the result carries them (``model`` mapping or ``model_*`` keys)."""
    raw = result.get("model")
    src: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {
        k[6:]: v for k, v in result.items() if k.startswith("model_")}
    return {k: clean_text(str(src[k]), 80) for k in ("name", "version", "sha256") if src.get(k)}


def card(result: Mapping[str, Any], feedback: Sequence[Feedback] = (), *, sheet: bool = False,
         show_patient: bool = False, patient_name: PatientHook | None = None) -> dict[str, Any]:
    """The card of one result (see the module docstring for what is left out)."""
    decision = str(result.get("decision") or "unscored")
    score = _num(result.get("score"))
    created = _num(result.get("created"))
    series_time = _num(result.get("series_time"))
    threshold = _mapping(result.get("threshold"))
    answers = [f.to_json() for f in feedback]
    out: dict[str, Any] = {
        "id": int(result.get("result_id") or 0),
        "uuid": result.get("uuid"),
        "series_key": clean_text(str(result.get("series_key") or f"r{result.get('result_id')}"), 64),
        "decision": decision,
        "headline": HEADLINES.get(decision, clean_text(decision, 20)),
        "live": bool(result.get("live", True)),
        "series_number": result.get("series_number") if isinstance(result.get("series_number"), int) else None,
        "description": clean_text(str(result.get("series_description") or ""), 64),
        "modality": clean_text(str(result.get("modality") or ""), 8),
        "station": clean_text(str(result.get("station") or ""), 40),
        "time": series_time if series_time is not None else created,
        "time_source": "series" if series_time is not None else "result",
        "score": score,
        "score_text": "n/a" if score is None else f"{score:.2f} of 4",
        "scale": SCALE,
        "threshold_text": threshold_text(threshold) if decision in ("ok", "retake") else "",
        "latency_ms": _num(result.get("processing_ms")),
        "reasons": [reason_text(r) for r in result.get("reasons") or ()],
        "where": where_text(result) if decision == "retake" else "",
        "notices": [clean_text(str(n), 200) for n in result.get("notices") or ()],
        "sheet": sheet,
        "feedback": answers,
        "feedback_kinds": [[k, KINDS[k]] for k in buttons_for(decision)],
        "acknowledged": bool(result.get("acknowledged_at")) or any(f.kind != "should_have_alerted" for f in feedback),
        "shown_late": result.get("shown_at") is not None and created is not None
        and float(result["shown_at"]) - created > 60.0,
    }
    if show_patient and patient_name is not None:
        name = patient_name(result)
        if name:
            out["patient_name"] = clean_text(name, 64)
    return out


def default_patient_name(result: Mapping[str, Any]) -> str | None:
    """The hook's default: a ``patient_name`` the service chose to store in the result (none today)."""
    value = result.get("patient_name")
    return str(value) if value else None


def detail(result: Mapping[str, Any], base: Mapping[str, Any],
           head_info: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """The card plus what the detail page shows: per-slice scores, measures as bars, prompt, rule, model."""
    out = dict(base)
    threshold = _mapping(result.get("threshold"))
    worst_below = _num(threshold.get("worst_slice_below"))
    scores = [_num(s) for s in result.get("slice_scores") or ()]
    indices = list(result.get("selected_slices") or ())
    weights = list(result.get("slice_weights") or ())
    total = result.get("slices") if isinstance(result.get("slices"), int) else None
    known = [s for s in scores if s is not None]
    lowest = min(known) if known else None
    # The worst slice is marked only when it matters: an alert, or a slice below the per-slice threshold.
    mark = decision_matters = base["decision"] == "retake"
    rows = []
    for n, s in enumerate(scores):
        idx = indices[n] if n < len(indices) and isinstance(indices[n], int) else None
        worst = s is not None and s == lowest and (mark or (worst_below is not None and s < worst_below))
        rows.append({"n": n, "slice": None if idx is None else idx + 1, "of": total, "score": s,
                     "weight": _num(weights[n]) if n < len(weights) else None, "worst": worst})
        mark = mark and not worst  # one mark
    out["slices"] = rows
    out["worst_matters"] = decision_matters
    out["measures"] = [_measure(k, v, (head_info or {}).get(k)) for k, v in _mapping(result.get("measures")).items()]
    out["prompt"] = {clean_text(str(k), 30): clean_text(str(v), 40) for k, v in _mapping(result.get("prompt")).items()}
    out["threshold"] = {k: v for k, v in threshold.items() if isinstance(v, (int, float, str)) or v is None}
    out["scorer"] = clean_text(str(result.get("scorer") or ""), 40)
    out["backend"] = clean_text(str(result.get("backend") or ""), 40)
    out["model"] = model_of(result)
    out["agent_version"] = clean_text(str(result.get("agent_version") or ""), 40)
    out["selection_method"] = clean_text(str(result.get("selection_method") or ""), 20)
    out["warnings"] = [clean_text(str(w), 200) for w in result.get("warnings") or ()]
    out["instances"] = result.get("instances")
    out["slices_total"] = total
    return out


def _measure(name: str, value: Any, info: Mapping[str, Any] | None) -> dict[str, Any]:
    """One measure as a bar: where the value sits between the ends of its range (0..1), and what it means."""
    label, unit, lo, hi, good, meaning = MEASURES.get(name, (name.replace("_", " "), "", 0.0, 1.0, "", ""))
    v = _num(value)
    neutral = None
    pos_of: Callable[[float], float] = lambda x: x  # noqa: E731 - the measure's own scale
    if info and isinstance(info.get("range"), (list, tuple)) and len(info["range"]) >= 2:
        lo, hi = float(info["range"][0]), float(info["range"][1])
        if info.get("transform") == "log2":
            pos_of = lambda x: math.log2(x) if x > 0 else lo  # noqa: E731 - heads are trained on log2
        neutral_raw = _num(info.get("neutral"))
        if neutral_raw is not None:
            neutral = (pos_of(neutral_raw) - lo) / ((hi - lo) or 1.0)
        unit = str(info.get("unit") or unit)
    bar = None if v is None else min(1.0, max(0.0, (pos_of(v) - lo) / ((hi - lo) or 1.0)))
    return {"name": clean_text(name, 40), "label": label, "value": v, "unit": unit, "bar": bar,
            "neutral": None if neutral is None else min(1.0, max(0.0, neutral)), "good": good, "meaning": meaning}
