"""Fixtures of the CLI tests: a stand-in for /etc/mediqa/agent.yaml, a folder another user can reach."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def system_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary stand-in for /etc/mediqa/agent.yaml (state_dir inside tmp_path); $MEDIQA_CONFIG unset."""
    import mediqa.cli.common as common

    path = tmp_path / "etc" / "agent.yaml"
    path.parent.mkdir()
    path.write_text(f"state_dir: {tmp_path / 'service-state'}\n")
    monkeypatch.setattr(common, "SYSTEM_CONFIG", path)
    monkeypatch.delenv("MEDIQA_CONFIG", raising=False)
    return path


@pytest.fixture
def no_system_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mediqa.cli.common as common

    monkeypatch.setattr(common, "SYSTEM_CONFIG", tmp_path / "no-such-etc" / "agent.yaml")
    monkeypatch.delenv("MEDIQA_CONFIG", raising=False)


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A temporary folder another user can reach (pytest's own tmp_path is private to its owner)."""
    root = Path(tempfile.mkdtemp(prefix="mediqa-perm-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        for path in [root, *root.rglob("*")]:
            if not path.is_symlink():
                path.chmod(0o755 if path.is_dir() else 0o644)
        shutil.rmtree(root, ignore_errors=True)
