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
