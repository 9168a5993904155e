"""Exit 78 (EX_CONFIG) for configuration errors under ``mediqa watch`` (systemd: RestartPreventExitStatus=78);
every other user error, and every error of the other commands, is 1."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cli_support import one_line

from mediqa.cli.main import EX_CONFIG, main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def export(tmp_path):
    folder = tmp_path / "export"
    folder.mkdir()
    return folder


def _config(tmp_path, text):
    path = tmp_path / "agent.yaml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("text,words", [
    ("scoring:\n  slcies: 7\n", "scoring.slices"),
    ("thresholds:\n  rules:\n    - {name: dwi, match: {series_description: '(dwi'}}\n", "regular expression"),
    ("thresholds:\n  default: {retake_below: 7}\n", "0..4"),
    ("completion:\n  quiet_period_s: {MRI: 3}\n", "'MR'"),
])
def test_watch_exits_78_on_a_configuration_error(tmp_path, export, capsys, text, words):
    rc = main(["watch", "--config", _config(tmp_path, text), "--folder", str(export),
               "--state-dir", str(tmp_path / "s")])
    err = capsys.readouterr().err
    assert rc == EX_CONFIG == 78 and one_line(err) and words in err, err


def test_watch_exits_78_when_the_export_folder_is_missing(tmp_path, capsys):
    assert main(["watch", "--folder", str(tmp_path / "gone"), "--state-dir", str(tmp_path / "s")]) == 78
    assert "does not exist" in capsys.readouterr().err


def test_a_malformed_option_stays_1_under_watch(tmp_path, export, capsys):
    assert main(["watch", "--folder", str(export), "--set", "novalue", "--state-dir", str(tmp_path / "s")]) == 1
    assert "is not KEY=VALUE" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["score", "{export}"], ["doctor", "--folder", "{export}"], ["alerts"]])
def test_other_commands_exit_1_on_the_same_configuration_error(tmp_path, export, capsys, argv):
    config = _config(tmp_path, "scoring:\n  slcies: 7\n")
    rc = main([a.format(export=export) for a in argv] + ["--config", config, "--state-dir", str(tmp_path / "s")])
    assert rc == 1, capsys.readouterr()


def test_the_install_guide_lists_the_codes_the_cli_uses():
    guide = (REPO / "docs" / "install.md").read_text()
    table = guide.split("## 8. Exit codes", 1)[1].split("\n## ", 1)[0]
    codes = re.findall(r"^\| (\d+) \|", table, re.MULTILINE)
    assert codes == ["0", "1", "78", "130"]
    row78 = next(line for line in table.splitlines() if line.startswith("| 78 |"))
    assert "EX_CONFIG" in row78 and "mediqa watch" in row78 and "does not restart" in row78
    unit = (REPO / "packaging" / "systemd" / "mediqa-agent.service").read_text()
    assert f"RestartPreventExitStatus={EX_CONFIG}" in unit
