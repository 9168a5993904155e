"""``alerts.max_age_h``: an alert nobody answered leaves ``mediqa alerts`` and the reminder at start when it is
older than that; ``mediqa alerts --all`` (every live result) and the history still hold it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from cli_support import make_state, retake_result

from mediqa.agent.state.db import STATE_FILE
from mediqa.cli.main import main


def _two_alerts(state: Path) -> tuple[int, int]:
    """Two unacknowledged retakes: one committed 7 h ago, one now. Returns (old id, new id)."""
    old = make_state(state, retake_result("1.2.3.4", description="T1 SAG OLD"))
    new = make_state(state, retake_result("1.2.3.5", description="T2 AX NEW"))
    conn = sqlite3.connect(state / STATE_FILE)
    with conn:
        conn.execute("UPDATE results SET created=created-? WHERE id=?", (7 * 3600.0, old))
    conn.close()
    return old, new


def test_alerts_lists_only_alerts_younger_than_the_max_age(tmp_path, capsys, no_system_config):
    state = tmp_path / "state"
    old, new = _two_alerts(state)
    assert main(["alerts", "--state-dir", str(state)]) == 0
    out = capsys.readouterr().out
    assert f"[{new:>4}]" in out and "T2 AX NEW" in out
    assert f"[{old:>4}]" not in out and "T1 SAG OLD" not in out
    assert "1 older alert" in out and "--all" in out  # where the hidden one is
    assert main(["alerts", "--all", "--state-dir", str(state)]) == 0
    out = capsys.readouterr().out
    assert "T1 SAG OLD" in out and "T2 AX NEW" in out
    assert main(["alerts", "--state-dir", str(state), "--set", "alerts.max_age_h=0"]) == 0  # off: every alert
    out = capsys.readouterr().out
    assert "T1 SAG OLD" in out and "T2 AX NEW" in out and "older alert" not in out


@pytest.mark.slow
def test_the_reminder_at_start_leaves_out_old_alerts(tmp_path, capsys, no_system_config):
    state = tmp_path / "state"
    _two_alerts(state)
    (tmp_path / "export").mkdir()
    rc = main(["watch", "--folder", str(tmp_path / "export"), "--state-dir", str(state), "--scorer", "classical",
               "--set", 'console.listen="off"', "--exit-when-idle", "0.3"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "unacknowledged RETAKE" in out and "T2 AX NEW" in out
    assert "T1 SAG OLD" not in out
