"""Prompt attributes from headers: every shared series against a hand-written table, plus vendor spellings."""

from __future__ import annotations

from pathlib import Path

import pytest

from mediqa.agent.dicom.records import FrameGeometry, InstanceRecord
from mediqa.agent.dicom.volume import SeriesLayout, plan_series
from mediqa.agent.select.prompts import derive_prompt, load_rules, prompt_for
from mediqa.errors import ConfigError
from mediqa.model_card import DEFAULT_VOCABULARY

# dimension / modality / anatomy / image_type, checked by reading each series' headers and README notes.
# Series without BodyPartExamined and without an anatomical word stay "unknown" (no guess from EPI alone).
EXPECTED = {
    "dcm_qa/In/Orientation/ax/axasc36": ("3D", "MR", "unknown", "EPI"),  # Siemens EPI mosaic, no body part
    "dcm_qa_agfa/Agfa": ("3D", "MR", "head", "EPI"),  # ep2d_fid, BodyPart BRAIN (a bottle phantom, header says brain)
    "dcm_qa_ct/In/GE": ("3D", "CT", "head", "ct_soft"),  # HEAD, kernel STD+, no contrast module
    "dcm_qa_ct/In/Philips/S21570/S2010": ("3D", "CT", "head", "ct_soft"),  # BRAIN, STD BRAIN, kernel UB, PLAIN
    "dcm_qa_ct/In/Philips/S21570/S2020": ("3D", "CT", "head", "ct_soft"),
    "dcm_qa_decubitus/In/HFS/3_t1_fl2d_sag": ("3D", "MR", "head", "T1"),  # t1_fl2d_sag
    "dcm_qa_decubitus/In/HFS/4_ep2d_diff_mddw_20_p2": ("3D", "MR", "head", "DWI"),  # ImageType DIFFUSION
    "dcm_qa_frag/In/5001_anat-T1w_acq-tfl": ("3D", "MR", "head", "T1"),
    "dcm_qa_ge/In/01_Ax_DWI_TENSOR_R2": ("3D", "MR", "head", "DWI"),  # two slices still form a stack
    "dcm_qa_nih/In/20180918GE/mr_0004": ("3D", "MR", "head", "EPI"),  # Axial EPI-FMRI
    "dcm_qa_philips/In/Magdeburg_2014/fmri": ("3D", "MR", "unknown", "EPI"),  # EPI_asc, no body part
    "dcm_qa_philips_enh/In/cl": ("3D", "MR", "head", "T1"),  # ADNI_Sag3D MPRAGE
    "dcm_qa_ts/In": ("3D", "MR", "unknown", "EPI"),  # Siemens EPI mosaic in 7 transfer syntaxes, no body part
    "dcm_qa_xa30/In/5_anat-T1w_acq-tfl": ("3D", "MR", "head", "T1"),  # enhanced MPRAGE: words only
    "dcm_qa_xa30/In/7_func-bold_task-fa_run-1": ("3D", "MR", "head", "EPI"),  # ImageType FMRI
}


@pytest.mark.shared_data
def test_every_shared_series_has_its_expected_prompt(shared_layouts: dict[str, SeriesLayout]) -> None:
    assert set(shared_layouts) == set(EXPECTED), "a shared series was added or removed: extend EXPECTED"
    wrong = {}
    for name, layout in shared_layouts.items():
        got = prompt_for(layout)
        assert list(got) == ["dimension", "modality", "anatomy", "image_type"]
        if tuple(got.values()) != EXPECTED[name]:
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
    ({"modality": "CT", "body_part": "CHEST", "convolution_kernel": ("B70f",)}, ("chest", "ct_sharp")),
    ({"modality": "CT", "body_part": "ABDOMEN", "convolution_kernel": ("I30f", "3"), "contrast_agent": "Omnipaque"},
     ("abdomen", "ct_soft_contrast")),
    ({"modality": "CT", "series_description": "Thorax LUNG 1.0", "convolution_kernel": ("LUNG",)},
     ("chest", "ct_sharp")),
    ({"modality": "CT", "body_part": "CHEST_ABDOMEN", "convolution_kernel": ("FC13",)}, ("unknown", "ct_soft")),
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
])
def test_vendor_spellings(fields: dict, expected: tuple[str, str]) -> None:
    got = prompt_for(_layout(**fields))
    assert (got["anatomy"], got["image_type"]) == expected, got


def test_dimension_and_modality() -> None:
    assert prompt_for(_layout(1))["dimension"] == "2D"
    assert prompt_for(_layout(5))["dimension"] == "3D"
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

