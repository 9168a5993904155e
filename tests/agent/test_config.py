from __future__ import annotations

import pytest

from mediqa.agent.config import config_from_dict, load_config
from mediqa.errors import ConfigError


def test_packaged_default_loads():
    cfg = load_config()
    assert cfg.completion.quiet_for("CT") == 5.0 and cfg.completion.quiet_for("PT") == 10.0


def test_unknown_key_suggests_nearest():
    with pytest.raises(ConfigError) as exc:
        config_from_dict({"scoring": {"slcies": 7}})
    assert "scoring.slcies" in str(exc.value) and "scoring.slices" in str(exc.value)


def test_bad_choice_suggests_nearest():
    with pytest.raises(ConfigError, match="did you mean 'polling'"):
        config_from_dict({"watch": {"mode": "poling"}})


def test_type_errors_name_the_key():
    with pytest.raises(ConfigError, match="scoring.threads must be a whole number"):
        config_from_dict({"scoring": {"threads": "two"}})


def test_resolved_config_serialises():
    import json

    import yaml

    cfg = load_config(None, {"thresholds.rules": [{"name": "dwi", "match": {"modality": "MR"}, "retake_below": 1}]})
    plain = cfg.to_dict()
    assert plain["completion"]["quiet_period_s"]["CT"] == 5.0
    assert plain["thresholds"]["rules"][0]["match"] == {"modality": "MR"}
    json.dumps(plain)
    assert yaml.safe_load(yaml.safe_dump(plain)) == plain


# --- a config that cannot be wrong silently -----------------------------------------------------------


def _rule(**fields):
    return {"thresholds": {"rules": [{"name": "dwi", "match": {"modality": "MR"}, **fields}]}}


def test_a_rule_regex_that_does_not_compile_names_the_rule():
    raw = {"thresholds": {"rules": [{"name": "ok", "match": {"modality": "CT"}},
                                    {"name": "diffusion", "match": {"series_description": "(?i)diff|dwi("}}]}}
    with pytest.raises(ConfigError) as exc:
        config_from_dict(raw)
    text = str(exc.value)
    assert "thresholds.rules[1]" in text and "diffusion" in text and "series_description" in text
    assert "regular expression" in text


def test_a_rule_on_an_attribute_the_decision_never_reads_is_an_error():
    with pytest.raises(ConfigError) as exc:
        config_from_dict({"thresholds": {"rules": [{"name": "x", "match": {"series_descripton": "dwi"}}]}})
    text = str(exc.value)
    assert "thresholds.rules[0]" in text and "series_descripton" in text and "series_description" in text


def test_rule_match_keys_are_exactly_the_attributes_the_decision_reads(shared_layouts):
    from mediqa.agent.config import RULE_ATTRIBUTES
    from mediqa.agent.pipeline import _attributes
    from mediqa.agent.select.prompts import prompt_for

    layout = next(iter(shared_layouts.values()))
    assert set(_attributes(layout, prompt_for(layout))) == set(RULE_ATTRIBUTES)


@pytest.mark.parametrize("raw,where", [
    ({"thresholds": {"default": {"retake_below": 5}}}, "thresholds.default.retake_below"),
    ({"thresholds": {"default": {"worst_slice_below": -0.5}}}, "thresholds.default.worst_slice_below"),
    ({"thresholds": {"modality": {"CT": {"retake_below": 40}}}}, "thresholds.modality.CT.retake_below"),
    (_rule(retake_below=4.5), "thresholds.rules[0] (dwi).retake_below"),
    (_rule(worst_slice_below=-1), "thresholds.rules[0] (dwi).worst_slice_below"),
])
def test_thresholds_outside_the_score_scale_are_errors(raw, where):
    with pytest.raises(ConfigError) as exc:
        config_from_dict(raw)
    assert where in str(exc.value) and "0..4" in str(exc.value)


def test_threshold_modality_keys_must_be_known():
    with pytest.raises(ConfigError) as exc:
        config_from_dict({"thresholds": {"modality": {"ct": {"retake_below": 2.0}}}})
    assert "thresholds.modality.ct" in str(exc.value) and "'CT'" in str(exc.value)


def test_quiet_period_keys_are_default_or_a_known_modality():
    with pytest.raises(ConfigError) as exc:
        config_from_dict({"completion": {"quiet_period_s": {"default": 10, "MRI": 3}}})
    assert "completion.quiet_period_s.MRI" in str(exc.value) and "'MR'" in str(exc.value)


def test_valid_rules_and_edges_of_the_scale_load():
    cfg = config_from_dict({
        "completion": {"quiet_period_s": {"default": 8, "CT": 3, "MR": 12}},
        "thresholds": {"default": {"retake_below": 0, "worst_slice_below": 4},
                       "modality": {"MR": {"retake_below": 1.5, "worst_slice_below": None}},
                       "rules": [{"name": "dwi", "match": {"modality": "^MR$", "series_description": "(?i)dwi|diff",
                                                          "prompt_image_type": "DWI", "body_part": ".*"},
                                  "retake_below": 1.2}]}})
    assert cfg.thresholds.rules[0].retake_below == 1.2 and cfg.completion.quiet_for("CT") == 3
