"""The shipped Prometheus rules: `promtool check rules` passes, `promtool test rules` proves every alert fires
on synthetic series (and stays quiet beside it), and the tests can fail (a rule made wrong fails them)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "packaging" / "prometheus" / "mediqa-rules.yml"
TESTS = sorted((REPO / "packaging" / "prometheus" / "tests").glob("*.yml"))
PROMTOOL = shutil.which("promtool")

needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool missing: `make system-deps` (Debian prometheus)")


def _promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *map(str, args)], capture_output=True, text=True, timeout=120, check=False)


def _alerts(rules: Path) -> set[str]:
    groups = yaml.safe_load(rules.read_text())["groups"]
    return {r["alert"] for g in groups for r in g["rules"] if "alert" in r}


@needs_promtool
def test_promtool_check_rules():
    done = _promtool("check", "rules", RULES)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 11 rules found" in done.stdout


@pytest.mark.slow
@needs_promtool
def test_promtool_test_rules():
    done = _promtool("test", "rules", *TESTS)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_a_test_where_it_fires():
    fired = set()
    for path in TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                if check.get("exp_alerts"):
                    fired.add(check["alertname"])
    assert fired == _alerts(RULES) == {"MediqaAgentDown", "MediqaAgentDeaf", "MediqaAlertRateOutOfBand",
                                       "MediqaMedianScoreDrift", "MediqaBackendFellBackToCPU"}


@pytest.mark.slow
@needs_promtool
@pytest.mark.parametrize(("wrong", "right"), [("> 0.5", "> 5"), ("== 0\n        for: 5m", "== 2\n        for: 5m")])
def test_a_wrong_rule_fails_the_rule_tests(tmp_path: Path, wrong: str, right: str):
    (tmp_path / "tests").mkdir()
    text = RULES.read_text()
    assert wrong in text
    (tmp_path / RULES.name).write_text(text.replace(wrong, right))
    for path in TESTS:
        shutil.copy(path, tmp_path / "tests" / path.name)
    done = _promtool("test", "rules", *sorted((tmp_path / "tests").glob("*.yml")))
    assert done.returncode != 0
    assert "FAILED" in done.stdout + done.stderr
