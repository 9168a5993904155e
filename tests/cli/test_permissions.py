"""Permission problems are one line with the remedy, never a traceback; ``mediqa alerts`` reads read-only.

The cases a hospital's IT meets: an administrator runs ``mediqa alerts`` on the service's state (owned by
the ``mediqa`` user, mode 0700), the export folder is not readable by the agent's user, the state dir or
its database belongs to someone else. Run as another user (nobody, when the tests run as root).
"""

from __future__ import annotations

import sqlite3

import pytest
from cli_support import make_state, one_line, restrict, run_as_other_user

from mediqa.cli.main import main

REMEDY = "run as the service user (sudo -u mediqa mediqa"


# --- mediqa alerts: never creates, reads read-only -----------------------------------------------------

def test_alerts_without_a_state_dir_says_so_and_creates_nothing(tmp_path, capsys):
    state = tmp_path / "state"
    assert main(["alerts", "--state-dir", str(state)]) == 1
    err = capsys.readouterr().err
    assert one_line(err) and f"no agent state at {state}" in err
    assert not state.exists()


def test_alerts_on_a_state_dir_without_a_database_creates_none(tmp_path, capsys):
    state = tmp_path / "state"
    state.mkdir()
    assert main(["alerts", "--state-dir", str(state)]) == 1
    err = capsys.readouterr().err
    assert one_line(err) and "no state database" in err
    assert list(state.iterdir()) == []


def test_alerts_lists_through_a_read_only_connection(tmp_path, capsys, monkeypatch):
    import mediqa.cli.alerts as alerts

    make_state(tmp_path / "state")
    opened: list[str] = []
    real = sqlite3.connect

    def spy(database, *args, **kwargs):
        opened.append(str(database))
        return real(database, *args, **kwargs)

    monkeypatch.setattr(alerts.sqlite3, "connect", spy)
    assert main(["alerts", "--state-dir", str(tmp_path / "state")]) == 0
    assert "T2 AX" in capsys.readouterr().out
    assert opened and all(uri.startswith("file:") and uri.endswith("?mode=ro") for uri in opened), opened


def test_alerts_never_migrates_an_older_state_file(tmp_path, capsys):
    """Listing writes nothing: a state file of an older schema is left for the agent to migrate."""
    make_state(tmp_path / "state")
    db = tmp_path / "state" / "state.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA user_version=1")
    conn.close()
    before = db.read_bytes()
    assert main(["alerts", "--state-dir", str(tmp_path / "state")]) == 1
    err = capsys.readouterr().err
    assert one_line(err) and "schema version 1" in err and "mediqa watch" in err
    assert db.read_bytes() == before


def test_alerts_ack_records_feedback_like_the_console_page(tmp_path, capsys):
    from mediqa.agent.report.feedback import feedback_for
    from mediqa.agent.state.db import open_state

    rid = make_state(tmp_path / "state")
    state = ["--state-dir", str(tmp_path / "state")]
    assert main(["alerts", "--ack", str(rid), "--as", "false_alert", *state]) == 0
    assert main(["alerts", "--ack", str(rid), "--as", "rescanned", *state]) == 1  # once
    assert "already acknowledged" in capsys.readouterr().err
    with open_state(tmp_path / "state") as db:
        (answer,) = feedback_for(db, [rid])[rid]
        (by,) = db.query_one("SELECT acknowledged_by FROM results WHERE id=?", (rid,)) or (None,)
    assert answer.kind == "false_alert" and by


def test_alerts_ack_with_an_answer_that_does_not_fit_is_one_line(tmp_path, capsys):
    rid = make_state(tmp_path / "state")
    assert main(["alerts", "--ack", str(rid), "--as", "seen", "--state-dir", str(tmp_path / "state")]) == 1
    err = capsys.readouterr().err
    assert one_line(err) and "allowed:" in err


# --- as another user -----------------------------------------------------------------------------------

@pytest.mark.slow
def test_alerts_on_the_service_state_as_an_admin_is_one_line_with_the_remedy(shared_tmp):
    state = shared_tmp / "state"
    make_state(state)
    restrict(state, 0o700)  # the service's /var/lib/mediqa
    for argv in (["alerts"], ["alerts", "--ack", "1"]):
        run = run_as_other_user([*argv, "--state-dir", str(state)], shared_tmp)
        assert run.returncode == 1 and one_line(run.stderr), run.stderr
        assert f"{REMEDY} alerts" in run.stderr and str(state) in run.stderr
    assert sorted(p.name for p in state.iterdir()) == ["results.jsonl", "state.sqlite"]


@pytest.mark.slow
def test_a_database_the_user_may_read_but_whose_wal_it_cannot_write(shared_tmp):
    state = shared_tmp / "state"
    make_state(state)
    restrict(state, 0o755)
    for name in ("state.sqlite", "results.jsonl"):
        restrict(state / name, 0o644)
    for argv in (["alerts"], ["alerts", "--ack", "1"]):
        run = run_as_other_user([*argv, "--state-dir", str(state)], shared_tmp)
        assert run.returncode == 1 and one_line(run.stderr), run.stderr
        assert REMEDY in run.stderr and "write access" in run.stderr


# --- mediqa watch and mediqa score ---------------------------------------------------------------------

@pytest.fixture
def export(shared_tmp):
    from mediqa.agent.samples import write_phantom_ct

    folder = shared_tmp / "export"
    write_phantom_ct(folder / "a", noise_hu=5.0, seed=0, slices=3, size=64)
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return folder


def _writable_state(shared_tmp):
    state = shared_tmp / "writable"
    state.mkdir()
    restrict(state, 0o777)
    return state


def _watch(export, state):
    return ["watch", "--folder", str(export), "--state-dir", str(state), "--scorer", "classical",
            "--exit-when-idle", "0.2"]


@pytest.mark.slow
def test_watch_on_an_export_folder_it_cannot_read(shared_tmp, export):
    restrict(export, 0o700)
    run = run_as_other_user(_watch(export, _writable_state(shared_tmp)), shared_tmp)
    assert run.returncode == 78 and one_line(run.stderr), run.stderr  # a configuration error: no restart loop
    assert "is not readable by user" in run.stderr and "grant read access" in run.stderr


@pytest.mark.slow
def test_watch_with_a_state_dir_it_cannot_write(shared_tmp, export):
    state = shared_tmp / "state"
    state.mkdir()
    restrict(state, 0o755)
    run = run_as_other_user(_watch(export, state), shared_tmp)
    assert run.returncode == 78 and one_line(run.stderr), run.stderr
    assert f"state dir {state} is not writable" in run.stderr and f"{REMEDY} watch" in run.stderr


@pytest.mark.slow
def test_watch_with_a_state_dir_it_cannot_create(shared_tmp, export):
    parent = shared_tmp / "lib"
    parent.mkdir()
    restrict(parent, 0o755)
    run = run_as_other_user(_watch(export, parent / "mediqa"), shared_tmp)
    assert run.returncode == 78 and one_line(run.stderr), run.stderr
    assert "cannot be created" in run.stderr and REMEDY in run.stderr


@pytest.mark.slow
def test_watch_with_a_database_owned_by_the_service_user(shared_tmp, export):
    state = _writable_state(shared_tmp)
    make_state(state)
    restrict(state / "state.sqlite", 0o600)
    run = run_as_other_user(_watch(export, state), shared_tmp)
    assert run.returncode == 78 and one_line(run.stderr), run.stderr
    assert "state.sqlite" in run.stderr and REMEDY in run.stderr


@pytest.mark.slow
def test_score_on_a_folder_it_cannot_read(shared_tmp, export):
    restrict(export, 0o700)
    run = run_as_other_user(["score", str(export), "--scorer", "classical"], shared_tmp)
    assert run.returncode == 1 and one_line(run.stderr), run.stderr
    assert "is not readable by user" in run.stderr


@pytest.mark.slow
def test_score_with_the_service_engine_cache_out_of_reach(shared_tmp, export):
    state = shared_tmp / "state"
    state.mkdir()
    restrict(state, 0o700)
    run = run_as_other_user(["score", str(export), "--state-dir", str(state), "--scorer", "learned"], shared_tmp)
    assert run.returncode == 1 and one_line(run.stderr), run.stderr
    assert "engine cache" in run.stderr and f"{REMEDY} score" in run.stderr


def test_an_unexpected_permission_error_is_one_line(tmp_path, capsys, monkeypatch):
    import mediqa.cli.alerts as alerts

    def denied(args):
        raise PermissionError(13, "Permission denied", str(tmp_path / "x"))

    monkeypatch.setattr(alerts, "run", denied)  # register() binds it when main() builds the parser
    assert main(["alerts"]) == 1
    err = capsys.readouterr().err
    assert one_line(err) and err.startswith("mediqa alerts: error: permission denied")
    assert str(tmp_path / "x") in err and f"{REMEDY} alerts" in err
