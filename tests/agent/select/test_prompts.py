"""Prompt attributes from headers: every shared series against a hand-written table, plus vendor spellings."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from mediqa.agent.dicom.records import FrameGeometry, InstanceRecord
from mediqa.agent.dicom.volume import SeriesLayout, plan_series
from mediqa.agent.select.prompts import derive_prompt, load_rules, prompt_for
from mediqa.errors import ConfigError
from mediqa.model_card import DEFAULT_VOCABULARY

TABLE = Path(__file__).with_name("prompt_table.tsv")


def _scored_shared_rows() -> dict[str, tuple[str, ...]]:
    """The scored shared series of ``prompt_table.tsv`` (the one written-down table; see test_prompt_table.py)."""
    lines = [line for line in TABLE.read_text(encoding="utf-8").splitlines() if line and not line.startswith("#")]
    rows = csv.DictReader(lines, delimiter="\t")
    return {r["path"]: (r["dimension"], r["modality"], r["anatomy"], r["image_type"]) for r in rows
            if r["source"] == "shared" and r["verdict"] == "scored"}


@pytest.mark.shared_data
def test_every_shared_series_has_its_expected_prompt(shared_layouts: dict[str, SeriesLayout]) -> None:
    expected = _scored_shared_rows()
    assert set(shared_layouts) == set(expected), "a shared series was added or removed: extend prompt_table.tsv"
    wrong = {}
    for name, layout in shared_layouts.items():
        got = prompt_for(layout)
        assert list(got) == ["dimension", "modality", "anatomy", "image_type"]
        if tuple(got.values()) != expected[name]:
            wrong[name] = got
    assert not wrong, wrong


def _layout(n: int = 3, **fields: object) -> SeriesLayout:
    """A synthetic header-only series; ``fields`` override InstanceRecord attributes."""
    base: dict[str, object] = {
        "path": "x", "size": 1, "mtime_ns": 0, "sop_instance_uid": "", "series_uid": "1.2", "study_uid": "1",
        "sop_class_uid": "1.2.840.10008.5.1.4.1.1.4", "transfer_syntax": "1.2.840.10008.1.2.1", "modality": "MR",
        "rows": 64, "columns": 64}
    base.update(fields)
    records = [InstanceRecord(**{**base, "path": f"f{i}", "sop_instance_uid": f"1.{i}", "instance_number": i + 1,
                                 "frames": (FrameGeometry((0.0, 0.0, float(i)), (1, 0, 0, 0, 1, 0)),)})
               for i in range(n)]
    return plan_series(records)


@pytest.mark.parametrize(("fields", "expected"), [
    ({"modality": "CT", "body_part": "CHEST", "convolution_kernel": ("B70f",)}, ("chest", "ct_sharp")),  # contrast?
    ({"modality": "CT", "body_part": "CHEST", "convolution_kernel": ("B70f",), "contrast_agent": "NONE"},
     ("chest", "ct_sharp")),
    ({"modality": "CT", "body_part": "ABDOMEN", "convolution_kernel": ("I30f", "3"), "contrast_agent": "Omnipaque"},
     ("abdomen", "ct_soft_contrast")),
    ({"modality": "CT", "series_description": "Thorax LUNG 1.0 native", "convolution_kernel": ("LUNG",)},
     ("chest", "ct_sharp")),
    ({"modality": "CT", "body_part": "CHEST_ABDOMEN", "convolution_kernel": ("FC13",),
      "protocol_name": "CAP plain"}, ("unknown", "ct_soft")),
    # A de-identified contrast CT: no Contrast/Bolus module, no words: contrast unknown, the kernel's token.
    ({"modality": "CT", "body_part": "ABDOMEN", "convolution_kernel": ("B30f",)}, ("abdomen", "ct_soft")),
    ({"modality": "CT", "body_part": "HEAD", "convolution_kernel": ("XYZ",)}, ("head", "unknown")),
    ({"modality": "CT", "series_description": "CTA neck", "convolution_kernel": ("STANDARD",)},
     ("neck", "ct_soft_contrast")),
    ({"modality": "CT", "series_description": "Abd w/o contrast", "convolution_kernel": ("STANDARD",)},
     ("abdomen", "ct_soft")),
    ({"body_part": "KNEE", "series_description": "PD_TSE_FS_COR"}, ("extremity", "PD")),
    ({"series_description": "t2_tirm_tra_dark-fluid", "body_part": "BRAIN"}, ("head", "FLAIR")),
    ({"series_description": "AX T2 PROPELLER", "body_part": "LSPINE"}, ("spine", "T2")),
    ({"series_description": "Ax T1 SE post Gd", "body_part": "HEAD"}, ("head", "T1_contrast")),
    ({"series_description": "dADC", "image_type": ("DERIVED", "PRIMARY", "DIFFUSION", "ADC")}, ("unknown", "ADC")),
    ({"series_description": "Ax 2", "scanning_sequence": ("IR",), "inversion_time": 2500.0,
      "repetition_time": 9000.0, "echo_time": 90.0}, ("unknown", "FLAIR")),
    ({"series_description": "Ax 2", "scanning_sequence": ("SE",), "repetition_time": 4000.0, "echo_time": 100.0},
     ("unknown", "T2")),
    ({"series_description": "Ax 2", "scanning_sequence": ("GR",), "repetition_time": 600.0, "echo_time": 4.0},
     ("unknown", "unknown")),  # gradient echo without a name: no guess
    ({"series_description": "SWI_Images", "body_part": "BRAIN"}, ("head", "SWI")),
    ({"series_description": "3D TOF MRA"}, ("unknown", "MRA")),
    ({"modality": "PT", "body_part": "WHOLEBODY"}, ("whole_body", "unknown")),
    # Issue 14: ASL source images were typed PD (spin-echo readout, long TR, short TE).
    ({"series_description": "3D ASL (non-contrast)", "scanning_sequence": ("SE",), "repetition_time": 4800.0,
      "echo_time": 10.5, "body_part": "HEAD"}, ("head", "unknown")),
    ({"series_description": "tgse_pcasl_PLD1800", "scanning_sequence": ("SE",), "repetition_time": 4000.0,
      "echo_time": 20.0}, ("unknown", "unknown")),
    ({"series_description": "ep2d_pasl", "scanning_sequence": ("EP",), "repetition_time": 2500.0,
      "echo_time": 13.0}, ("unknown", "EPI")),
    # A GE DTI: no diffusion word, EP\SE, b-value only in GE's private tag (read into diffusion_b_value).
    ({"series_description": "Axial 4 directions, 3 shells, pepolar=1", "scanning_sequence": ("EP", "SE"),
      "manufacturer": "GE MEDICAL SYSTEMS", "body_part": "BRAIN"}, ("head", "DWI")),
    ({"series_description": "Ax 3x3x3", "scanning_sequence": ("EP", "SE"), "diffusion_b_value": 1000.0},
     ("unknown", "DWI")),
    ({"series_description": "DTI64dir", "scanning_sequence": ("EP", "SE")}, ("unknown", "DWI")),
    # BIDS names and resting-state names: functional MRI of the brain.
    ({"series_description": "func_task-rest_acq-mb", "scanning_sequence": ("EP",)}, ("head", "EPI")),
    ({"series_description": "func_task-motor_run-01"}, ("head", "EPI")),
    ({"series_description": "REST1_PA"}, ("head", "EPI")),
    ({"series_description": "RESTING STATE"}, ("head", "EPI")),
    ({"series_description": "t1_restore_tra"}, ("unknown", "T1")),  # "rest" inside a word is not rest
    # GE's ProtocolName is the exam's: "REST" or "ASL" there says nothing about this series.
    ({"series_description": "Sag 3D T1 BRAVO", "protocol_name": "Brain REST + ASL", "manufacturer": "GE"},
     ("head", "T1")),
    # Enhanced MR: the weighting as ImageType value 3 (Philips ORIGINAL\PRIMARY\T1\NONE), no words.
    ({"image_type": ("ORIGINAL", "PRIMARY", "T1", "NONE"), "body_part": "HEAD"}, ("head", "T1")),
    ({"image_type": ("ORIGINAL", "PRIMARY", "T2", "NONE")}, ("unknown", "T2")),
    ({"image_type": ("ORIGINAL", "PRIMARY", "PROTON_DENSITY", "NONE")}, ("unknown", "PD")),
    ({"image_type": ("ORIGINAL", "PRIMARY", "FLUID_ATTENUATED", "NONE")}, ("unknown", "FLAIR")),
])
def test_vendor_spellings(fields: dict, expected: tuple[str, str]) -> None:
    got = prompt_for(_layout(**fields))
    assert (got["anatomy"], got["image_type"]) == expected, got


def test_dimension_and_modality() -> None:
    """2D is projection imaging in the model's vocabulary: one CT or MR slice is still cross-sectional (3D)."""
    assert prompt_for(_layout(1))["dimension"] == "3D"
    assert prompt_for(_layout(1, modality="CT"))["dimension"] == "3D"
    assert prompt_for(_layout(5))["dimension"] == "3D"
    assert prompt_for(_layout(1, modality="DX"))["dimension"] == "2D"
    assert prompt_for(_layout(2, modality="US"))["modality"] == "unknown"


def test_predicted_attributes_fill_only_unknowns_and_are_recorded() -> None:
    layout = _layout(series_description="ax_asc_36sl", scanning_sequence=("EP",))
    guess = {"anatomy": "head", "image_type": "T2", "modality": "CT"}
    prompt = derive_prompt(layout, predicted=guess)
    assert prompt.values["anatomy"] == "head" and prompt.sources["anatomy"] == "model"
    assert prompt.values["image_type"] == "EPI" and prompt.sources["image_type"].startswith("header:")
    assert prompt.values["modality"] == "MR"
    assert derive_prompt(layout, predicted={"anatomy": "spleen"}).values["anatomy"] == "unknown"


def test_a_card_without_a_token_gets_unknown() -> None:
    vocab = {**DEFAULT_VOCABULARY, "image_type": ("unknown", "T1", "T2")}
    prompt = derive_prompt(_layout(series_description="ep2d_bold"), vocabulary=vocab)
    assert prompt.values["image_type"] == "unknown" and "vocabulary" in prompt.sources["image_type"]


def test_table_tokens_are_all_in_the_default_vocabulary() -> None:
    table = load_rules()
    for section in ("dimension", "modality", "anatomy"):
        assert {r.value for r in table.sections[section]} <= set(DEFAULT_VOCABULARY[section])
    assert {r.value for r in table.sections["mr_image_type"]} <= set(DEFAULT_VOCABULARY["image_type"])


@pytest.mark.parametrize(("text", "message"), [
    ("anatomy:\n  - {value: head, if: {bodypart: [head]}}\n", "did you mean 'body_part'"),
    ("anatomy:\n  - {value: brain, if: {body_part: [head]}}\n", "not a vocabulary token"),
    ("anatomy:\n  - {value: head, iff: {body_part: [head]}}\n", "did you mean 'if'"),
    ("anatomy:\n  - {value: head, if: {text: [t1_mprage]}}\n", "can never match"),
    ("anatomi: []\n", "did you mean 'anatomy'"),
    ("anatomy:\n  - {value: head, if: {echo_time: {range: [1]}}}\n", "matcher must be"),
])
def test_table_mistakes_are_reported(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_rules(str(path))



def test_no_contrast_module_is_unknown_contrast_not_no_contrast(tmp_path: Path) -> None:
    """Unknown contrast is recorded as such; the token is the kernel's (the table's "unknown" column), which a
    site can take out to get the unknown token instead."""
    from importlib import resources

    layout = _layout(modality="CT", body_part="HEAD", convolution_kernel=("STD+",))
    prompt = derive_prompt(layout)
    assert prompt.values["image_type"] == "ct_soft" and prompt.sources["image_type"].endswith("+ contrast unknown")
    plain = derive_prompt(_layout(modality="CT", body_part="HEAD", convolution_kernel=("STD+",),
                                  contrast_agent="NONE"))
    assert "contrast unknown" not in plain.sources["image_type"]
    packaged = (resources.files("mediqa.agent") / "rules" / "prompt_rules.yaml").read_text(encoding="utf-8")
    site = packaged.replace(', "unknown": ct_soft}', "}")
    assert site != packaged
    path = tmp_path / "rules.yaml"
    path.write_text(site)
    strict = derive_prompt(layout, rules=load_rules(str(path)))
    assert strict.values["image_type"] == "unknown" and strict.sources["image_type"] == "none (contrast unknown)"
    bad = tmp_path / "bad.yaml"  # load_rules caches by path
    bad.write_text(packaged.replace('soft: {"no": ct_soft', 'soft: {"maybe": ct_soft'))
    with pytest.raises(ConfigError, match="column 'maybe'"):
        load_rules(str(bad))
