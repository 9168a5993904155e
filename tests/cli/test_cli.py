"""The CLI as a person uses it: help, version, demo, replay, doctor; and no torch in the running agent."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mediqa.cli.main import main


def test_help_lists_commands(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    for command in ("watch", "score", "replay", "demo", "doctor", "version"):
        assert command in out


@pytest.mark.slow
def test_running_agent_never_imports_torch(tmp_path):
    code = (
        "import sys\n"
        "from mediqa.cli.main import build_parser\n"
        "import mediqa.agent.service, mediqa.agent.scoring.learned, mediqa.agent.scoring.classical\n"
        "import mediqa.preprocess, mediqa.agent.report.thumbnails, mediqa.engines\n"
        "from mediqa.agent.config import config_from_dict\n"
        "from mediqa.agent.scoring.factory import make_scorer\n"
        "build_parser()\n"
        "make_scorer(config_from_dict({'state_dir': sys.argv[1]})).close()  # the card read at start: no onnx\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'matplotlib', 'skimage', 'onnx')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                         check=True).stdout
    assert json.loads(out.strip().replace("'", '"')) == []


def test_user_error_is_one_line_exit_1(capsys, tmp_path):
    assert main(["score", str(tmp_path / "nope")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("mediqa score: error:") and err.count("\n") == 1


@pytest.mark.slow
@pytest.mark.parametrize("args,scorer", [([], "learned"), (["--scorer", "classical"], "classical")])
def test_demo_scores_every_sample_and_flags_the_noisy_one(capsys, shared_dicom, args, scorer):
    assert main(["demo", *args]) == 0  # no --scorer: the default, the embedded learned model
    out = capsys.readouterr().out
    assert "4 series scored, 1 retake alert(s)" in out
    lines = [line for line in out.splitlines() if " sl  score " in line]
    assert len(lines) == 4 and all(f"{scorer}]" in line for line in lines if "RETAKE" not in line)
    assert [("(simulated noise)" in line) for line in lines if "RETAKE" in line] == [True]


def test_replay_copies_layout(tmp_path, shared_dicom, capsys):
    src = shared_dicom / "dcm_qa_ct/In/Philips/S21570/S2010"
    assert main(["replay", str(src), str(tmp_path / "dest"), "--rate", "0"]) == 0
    assert sorted(p.name for p in (tmp_path / "dest").iterdir()) == sorted(p.name for p in src.iterdir())


@pytest.mark.slow
def test_doctor_flags_missing_folder(tmp_path, capsys):
    assert main(["doctor", "--folder", str(tmp_path / "missing"), "--state-dir", str(tmp_path / "s")]) == 1
    assert "does not exist" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize("args", [[], ["--scorer", "classical"]])
def test_demo_without_shared_data_uses_generated_phantoms(capsys, monkeypatch, args):
    import mediqa.agent.samples as samples

    monkeypatch.setattr(samples, "shared_data_root", lambda: None)
    assert main(["demo", *args]) == 0
    out = capsys.readouterr().out
    assert "2 series scored, 1 retake alert(s)" in out
    assert "Phantom low dose" in out and "Phantom standard dose" in out


def test_doctor_shows_model_and_backend_chain(tmp_path, capsys):
    from contract_model import contract_model

    model = tmp_path / "m.onnx"
    contract_model(model)
    export = tmp_path / "export"
    export.mkdir()
    rc = main(["doctor", "--folder", str(export), "--state-dir", str(tmp_path / "s"), "--scorer", "learned",
               "--set", f"scoring.model={model}",
               "--set", "scoring.allow_unevaluated_model=true"])  # the contract model carries no evaluation
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "contract-test v1" in out
    assert "backend tensorrt" in out and "skipped" in out  # why TensorRT is not used here
    assert "backend in use" in out and "onnxruntime" in out.lower()


@pytest.mark.slow
def test_watch_command_runs_and_exits_when_idle(tmp_path, shared_dicom, capsys, caplog):
    import gc
    import logging

    from mediqa.cli.replay import replay

    caplog.set_level(logging.DEBUG, logger="mediqa.watch")

    export = tmp_path / "export"
    replay(shared_dicom / "dcm_qa_ct/In/Philips/S21570/S2010", export / "a", rate=0)
    rc = main(["watch", "--folder", str(export), "--state-dir", str(tmp_path / "s"), "--scorer", "classical",
               "--set", "completion.quiet_period_s.default=0.5", "--set", "completion.quiet_period_s.CT=0.5",
               "--exit-when-idle", "1"])
    assert rc == 0
    assert "STD BRAIN 5MM" in capsys.readouterr().out
    # start-up's objects were kept out of full collections while it ran, and given back when it stopped
    assert "kept out of full garbage collections" in caplog.text and gc.get_freeze_count() == 0


@pytest.mark.slow
def test_doctor_show_config(tmp_path, capsys):
    export = tmp_path / "export"
    export.mkdir()
    assert main(["doctor", "--folder", str(export), "--state-dir", str(tmp_path / "s"), "--show-config"]) == 0
    assert "quiet_period_s" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize("argv", [["export", "onnx", "model.pt"], ["eval", "model.pt", "--data", "d"]])
def test_command_without_its_extra_says_which_to_install(tmp_path, argv):
    """Without torch (a runtime-only install) the training commands are one line, never a traceback."""
    code = ("import sys\n"
            "class NoTorch:  # as if the training extra were not installed\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.partition('.')[0] == 'torch':\n"
            "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
            "sys.meta_path.insert(0, NoTorch())\n"
            f"from mediqa.cli.main import main\nraise SystemExit(main({argv!r}))\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 1, run.stderr
    assert run.stderr == f"mediqa {argv[0]} needs the train extra: pip install 'mediqa-edge[train]'\n"


def test_verbose_flags_and_config_level(tmp_path):
    """Logging is set up in one place: -vv is DEBUG, -v at least INFO, else the config's log_level."""
    import logging

    from mediqa.cli.common import configure_logging

    root = logging.getLogger()
    before = root.level
    try:
        configure_logging(0, "WARNING")
        assert root.level == logging.WARNING
        configure_logging(1, "WARNING")
        assert root.level == logging.INFO
        configure_logging(2, "INFO")
        assert root.level == logging.DEBUG
    finally:
        root.setLevel(before)


def test_a_yaml_tag_in_set_is_one_line_exit_1(tmp_path, capsys):
    (tmp_path / "export").mkdir()
    rc = main(["watch", "--folder", str(tmp_path / "export"), "--state-dir", str(tmp_path / "s"),
               "--set", "x=!!python/object:os.system"])
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("mediqa watch: error:") and err.count("\n") == 1, err


@pytest.mark.slow
def test_watch_keeps_its_state_private(tmp_path, capsys):
    import os
    import stat

    from mediqa.agent.samples import write_phantom_ct

    write_phantom_ct(tmp_path / "export" / "a", noise_hu=5.0, seed=0, slices=4, size=96)
    before = os.umask(0o022)
    try:
        rc = main(["watch", "--folder", str(tmp_path / "export"), "--state-dir", str(tmp_path / "s"),
                   "--scorer", "classical", "--set", "completion.quiet_period_s.default=0.3",
                   "--set", "completion.quiet_period_s.CT=0.3", "--exit-when-idle", "0.5"])
        assert os.umask(0o022) == 0o077  # set at start
    finally:
        os.umask(before)
    assert rc == 0 and "Phantom standard dose" in capsys.readouterr().out
    assert stat.S_IMODE(os.stat(tmp_path / "s").st_mode) == 0o700
    for name in ("state.sqlite", "results.jsonl"):
        assert stat.S_IMODE(os.stat(tmp_path / "s" / name).st_mode) == 0o600, name


@pytest.mark.slow
def test_watch_opens_no_network_connection(tmp_path):
    """The agent's loop talks to nobody: no AF_INET/AF_INET6 socket connects, listens or sends while it
    watches and scores (importing pydicom makes urllib3 bind a probe socket to ::1 once; that is all).
    The console is turned off here: it is the one listener, on loopback by default (tests/agent/report/web)."""
    from mediqa.agent.samples import write_phantom_ct

    write_phantom_ct(tmp_path / "export" / "a", noise_hu=5.0, seed=0, slices=4, size=96)
    argv = ["watch", "--folder", str(tmp_path / "export"), "--state-dir", str(tmp_path / "s"), "--scorer",
            "classical", "--set", "completion.quiet_period_s.default=0.3", "--set", "completion.quiet_period_s.CT=0.3",
            "--set", 'console.listen="off"', "--exit-when-idle", "0.5"]
    code = ("import socket\n"
            "used = []\n"
            "def spy(name):\n"
            "    real = getattr(socket.socket, name)\n"
            "    def call(self, *a, **k):\n"
            "        if self.family in (socket.AF_INET, socket.AF_INET6):\n"
            "            used.append(name)\n"
            "        return real(self, *a, **k)\n"
            "    setattr(socket.socket, name, call)\n"
            "for name in ('connect', 'connect_ex', 'listen', 'send', 'sendto', 'sendall'):\n"
            "    spy(name)\n"
            "from mediqa.cli.main import main\n"
            f"rc = main({argv!r})\n"
            "print('NET', used, rc)\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Phantom standard dose" in run.stdout
    assert run.stdout.strip().splitlines()[-1] == "NET [] 0"
