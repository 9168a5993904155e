"""One config file for every command: --config, else $MEDIQA_CONFIG, else /etc/mediqa/agent.yaml, else packaged."""

from __future__ import annotations

import pytest
from cli_support import make_state

from mediqa.cli.common import config_source
from mediqa.cli.main import build_parser, main

COMMANDS = [["watch"], ["score", "x"], ["alerts"], ["doctor"], ["engine", "build"], ["engine", "list"],
            ["engine", "verify"], ["engine", "bench"]]


@pytest.mark.parametrize("argv", COMMANDS, ids=" ".join)
def test_every_command_reads_the_system_config_when_it_exists(argv, system_config):
    source = config_source(build_parser().parse_args(argv))
    assert source.path == system_config and source.how == "system"


@pytest.mark.parametrize("argv", COMMANDS, ids=" ".join)
def test_environment_beats_system_and_the_option_beats_both(argv, system_config, tmp_path, monkeypatch):
    env, given = tmp_path / "env.yaml", tmp_path / "given.yaml"
    monkeypatch.setenv("MEDIQA_CONFIG", str(env))
    assert config_source(build_parser().parse_args(argv)).path == env
    source = config_source(build_parser().parse_args([*argv, "--config", str(given)]))
    assert source.path == given and source.how == "--config"


@pytest.mark.parametrize("argv", COMMANDS, ids=" ".join)
def test_without_any_the_packaged_default(argv, no_system_config):
    source = config_source(build_parser().parse_args(argv))
    assert source.path is None and source.how == "packaged default"


def test_demo_uses_the_packaged_default_even_on_an_installed_machine(system_config, monkeypatch, tmp_path):
    monkeypatch.setenv("MEDIQA_CONFIG", str(tmp_path / "env.yaml"))
    assert config_source(build_parser().parse_args(["demo"])).path is None
    given = tmp_path / "mine.yaml"
    assert config_source(build_parser().parse_args(["demo", "--config", str(given)])).path == given


def test_alerts_run_by_an_admin_reads_the_service_state(system_config, tmp_path, capsys):
    make_state(tmp_path / "service-state")
    assert main(["alerts"]) == 0
    assert "T2 AX" in capsys.readouterr().out


def test_engine_list_looks_where_the_service_looks(system_config, tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "tensorrt", None)
    assert main(["engine", "list"]) == 0
    assert f"engine cache {tmp_path / 'service-state' / 'engines'}:" in capsys.readouterr().out


@pytest.mark.slow
def test_doctor_says_which_config_it_used(system_config, tmp_path, capsys):
    (tmp_path / "export").mkdir()
    main(["doctor", "--folder", str(tmp_path / "export"), "--scorer", "classical"])
    out = capsys.readouterr().out
    assert f"{system_config} (system" in out
    assert str(tmp_path / "service-state") in out


def test_a_missing_config_named_by_the_environment_is_one_line(no_system_config, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MEDIQA_CONFIG", str(tmp_path / "gone.yaml"))
    assert main(["alerts"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "gone.yaml" in err and "MEDIQA_CONFIG" in err
