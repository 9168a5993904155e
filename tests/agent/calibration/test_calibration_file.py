"""The reviewed thresholds file: written by calibrate, refused until signed, applied only when configured."""

from __future__ import annotations

from pathlib import Path

import pytest
from calibration_support import brain_and_abdomen

from mediqa.agent.calibration.groups import calibrate
from mediqa.agent.calibration.rules_file import Provenance, render_reviewed
from mediqa.agent.calibration.stats import Settings
from mediqa.agent.config import MODALITIES, config_from_dict, load_config
from mediqa.agent.config_thresholds import load_reviewed, protocol_key
from mediqa.agent.scoring.decision import decide
from mediqa.errors import ConfigError

PROVENANCE = Provenance("2026-12-01T11:00:00Z", "tech-lead", ("state /var/lib/mediqa/state.sqlite: 304 results",),
                        "edge-default 0123456789ab", "0.1.0")
BRAIN = {"modality": "CT", "series_description": "std_brain  5MM", "anatomy": "head"}
ABDOMEN = {"modality": "CT", "series_description": "Abdomen 1.25mm", "anatomy": "abdomen"}


def sign(text: str, who: str = "Dr. Reviewer") -> str:
    return text.replace('reviewed_by: ""', f'reviewed_by: "{who}"').replace('reviewed_on: ""',
                                                                        'reviewed_on: "2026-12-02"')


@pytest.fixture(scope="module")
def proposal_text() -> str:
    return render_reviewed(calibrate(brain_and_abdomen(), Settings(bootstrap=200)), PROVENANCE)


def test_protocol_keys_ignore_case_punctuation_and_spacing():
    assert protocol_key("CT", "STD_Brain 5mm") == protocol_key("ct", " std brain   5MM ") == "CT|std brain 5mm"
    assert protocol_key("MR", "", "Head") == "MR|(anatomy: head)"
    assert protocol_key("MR", "(no description)") == "MR|no description"  # a real description, not the fallback


def test_the_file_round_trips_with_every_figure(tmp_path: Path, proposal_text: str):
    assert "NOT APPLIED until reviewed" in proposal_text and "tech-lead" in proposal_text
    assert "No proposal: CT|abdomen 1 25mm: too few labelled series (n=3: 2 good, 1 bad" in proposal_text
    path = tmp_path / "thresholds.yaml"
    path.write_text(sign(proposal_text))
    reviewed = load_reviewed(path, MODALITIES)
    brain = reviewed.protocols["CT|std brain 5mm"]
    assert (brain.n_good, brain.n_bad, brain.n_series) == (200, 40, 300)
    assert brain.retake_below == brain.proposed and 2.0 < brain.retake_below < 2.7
    assert len(brain.threshold_ci95) == 2 and brain.threshold_ci95[0] <= brain.retake_below <= brain.threshold_ci95[1]
    assert brain.false_alert_rate is not None and brain.false_alert_rate <= 0.05
    assert brain.false_alert_ci95[0] <= brain.false_alert_rate <= brain.false_alert_ci95[1]
    assert "CT|abdomen 1 25mm" not in reviewed.protocols and "CT" in reviewed.modality
    assert reviewed.labels["seen"] == "unlabelled" and reviewed.labels["false_alert"] == "good"
    assert reviewed.reviewed_by == "Dr. Reviewer" and len(reviewed.digest) == 12


def test_an_unreviewed_file_is_refused(tmp_path: Path, proposal_text: str):
    path = tmp_path / "thresholds.yaml"
    path.write_text(proposal_text)
    with pytest.raises(ConfigError, match="has not been reviewed"):
        load_reviewed(path, MODALITIES)


@pytest.mark.parametrize(("edit", "message"), [
    (("retake_below: 2.", "retake_below: 5."), "outside the score scale"),
    (("  retake_below:", "  retake_belw:"), "did you mean 'modality.CT.retake_below'"),
    (('"CT|std brain 5mm":', '"CT|STD Brain 5mm":'), "did you mean 'CT|std brain 5mm'"),
    (('"CT|std brain 5mm":', '"XA|std brain 5mm":'), "must start with a modality"),
    (("kind: mediqa-reviewed-thresholds", "kind: rules"), "not a reviewed thresholds file"),
    (("version: 1", "version: 9"), "format version 9"),
])
def test_a_broken_file_is_a_config_error_that_says_what_to_fix(tmp_path: Path, proposal_text: str, edit, message):
    path = tmp_path / "thresholds.yaml"
    path.write_text(sign(proposal_text).replace(*edit))
    with pytest.raises(ConfigError, match=message.replace("|", r"\|").replace(".", r"\.")):
        load_reviewed(path, MODALITIES)


def test_the_agent_applies_it_only_when_the_config_names_it(tmp_path: Path, proposal_text: str):
    (tmp_path / "thresholds.yaml").write_text(sign(proposal_text))
    plain = load_config(None, {"state_dir": str(tmp_path)}).thresholds  # the file sits there, unnamed: ignored
    named = load_config(None, {"state_dir": str(tmp_path), "thresholds.reviewed_file": "thresholds.yaml"})
    limit = named.thresholds.reviewed.protocols["CT|std brain 5mm"].retake_below  # type: ignore[union-attr]
    assert abs(limit - 2.0) > 0.05
    between = (limit + 2.0) / 2  # a score the two thresholds decide differently
    assert decide(between, None, "", plain, BRAIN, {}).threshold == {
        "retake_below": 2.0, "worst_slice_below": 1.0, "source": "modality CT"}
    applied = decide(between, None, "", named.thresholds, BRAIN, {})
    assert applied.decision != decide(between, None, "", plain, BRAIN, {}).decision
    assert applied.threshold["retake_below"] == limit
    assert applied.threshold["source"] == "reviewed protocol CT|std brain 5mm"
    assert applied.threshold["protocol"] == "CT|std brain 5mm" and applied.threshold["worst_slice_below"] == 1.0
    assert applied.threshold["reviewed_digest"] == named.thresholds.reviewed.digest  # type: ignore[union-attr]
    # too few labels for the abdomen protocol: the modality's pooled threshold applies
    modality = named.thresholds.reviewed.modality["CT"].retake_below  # type: ignore[union-attr]
    assert decide(3.0, None, "", named.thresholds, ABDOMEN, {}).threshold["source"] == "reviewed modality CT"
    assert decide(3.0, None, "", named.thresholds, ABDOMEN, {}).threshold["retake_below"] == modality
    # MR has no entry: the config's thresholds, as before
    assert decide(3.0, None, "", named.thresholds, {"modality": "MR"}, {}).threshold["source"] == "modality MR"


def test_a_config_rule_beats_the_modality_entry_but_not_the_protocol_entry(tmp_path: Path, proposal_text: str):
    (tmp_path / "t.yaml").write_text(sign(proposal_text))
    rule = {"name": "body", "match": {"modality": "CT", "series_description": "(?i)abdomen|brain"},
            "retake_below": 0.5}
    overrides = {"thresholds.reviewed_file": str(tmp_path / "t.yaml"), "thresholds.rules": [rule]}
    cfg = load_config(None, overrides).thresholds
    assert decide(3.0, None, "", cfg, ABDOMEN, {}).threshold["source"] == "rule body"
    assert decide(3.0, None, "", cfg, BRAIN, {}).threshold["source"] == "reviewed protocol CT|std brain 5mm"


def test_a_missing_or_unreviewed_file_stops_the_config_at_load(tmp_path: Path, proposal_text: str):
    with pytest.raises(ConfigError, match="does not exist"):
        config_from_dict({"thresholds": {"reviewed_file": str(tmp_path / "nope.yaml")}})
    (tmp_path / "t.yaml").write_text(proposal_text)
    with pytest.raises(ConfigError, match="has not been reviewed"):
        config_from_dict({"thresholds": {"reviewed_file": str(tmp_path / "t.yaml")}})
    with pytest.raises(ConfigError, match="thresholds.reviewed_file"):
        config_from_dict({"thresholds": {"reviewed": {"protocols": {}}}})
