"""The ``alerts:`` section: typed, validated at load, in the packaged agent.yaml."""

from __future__ import annotations

import pytest

from mediqa.agent.config import config_from_dict, load_config
from mediqa.agent.config_alerts import DEFAULT_MAX_AGE_H, AlertsConfig
from mediqa.errors import ConfigError


def test_the_packaged_config_sets_the_default_max_age():
    cfg = load_config()
    assert cfg.alerts == AlertsConfig() and cfg.alerts.max_age_h == DEFAULT_MAX_AGE_H == 6.0
    assert cfg.alerts.max_age_s == 6 * 3600.0 and cfg.alerts.live_since(100_000.0) == 100_000.0 - 6 * 3600.0
    assert cfg.to_dict()["alerts"] == {"max_age_h": 6.0}


def test_zero_turns_the_limit_off():
    cfg = config_from_dict({"alerts": {"max_age_h": 0}})
    assert cfg.alerts.max_age_s is None and cfg.alerts.live_since(1.0) is None


@pytest.mark.parametrize(("value", "says"), [(-1, "must not be negative"), ("nan", "number of hours"),
                                             ("six", "must be a number"), (True, "must be a number")])
def test_a_bad_max_age_is_a_config_error(value, says):
    with pytest.raises(ConfigError, match=says):
        config_from_dict({"alerts": {"max_age_h": value}})


def test_a_misspelt_key_names_the_right_one():
    with pytest.raises(ConfigError, match="max_age_h"):
        config_from_dict({"alerts": {"max_age": 6}})
