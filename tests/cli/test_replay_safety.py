"""``mediqa replay SRC DEST`` never modifies SRC: DEST equal to, inside or around SRC is refused."""

from __future__ import annotations

import hashlib

import pytest
from cli_support import one_line

from mediqa.cli.main import main
from mediqa.cli.replay import replay
from mediqa.errors import MediqaError


@pytest.fixture
def src(tmp_path):
    folder = tmp_path / "src"
    (folder / "s1").mkdir(parents=True)
    for i in range(3):
        (folder / "s1" / f"IM{i}.dcm").write_bytes(bytes(range(256)) * (i + 1))
    return folder


def _digest(folder):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("dest", ["{src}", "{src}/s1", "{src}/new/inside", "{src}/s1/..", "{tmp}"],
                         ids=["same", "inside", "new-inside", "same-by-dots", "around"])
def test_replay_refuses_overlapping_folders_and_leaves_src_alone(tmp_path, src, capsys, dest):
    before = _digest(src)
    assert main(["replay", str(src), dest.format(src=src, tmp=tmp_path), "--rate", "0"]) == 1
    err = capsys.readouterr().err
    assert one_line(err) and "SRC" in err and "DEST" in err
    assert _digest(src) == before
    assert not (src / "new").exists()


def test_replay_refuses_a_symlink_that_leads_back_into_src(tmp_path, src, capsys):
    (tmp_path / "link").symlink_to(src, target_is_directory=True)
    before = _digest(src)
    assert main(["replay", str(src), str(tmp_path / "link"), "--rate", "0"]) == 1
    assert one_line(capsys.readouterr().err)
    assert _digest(src) == before


def test_replaying_a_file_into_its_own_folder_is_refused(src, capsys):
    one = src / "s1" / "IM0.dcm"
    before = one.read_bytes()
    assert main(["replay", str(one), str(src / "s1"), "--rate", "0"]) == 1
    assert one_line(capsys.readouterr().err)
    assert one.read_bytes() == before


def test_a_negative_rate_is_one_line(tmp_path, src, capsys):
    assert main(["replay", str(src), str(tmp_path / "out"), "--rate", "-5"]) == 1
    err = capsys.readouterr().err
    assert one_line(err) and "--rate" in err
    assert not (tmp_path / "out").exists()


def test_the_library_function_refuses_too(tmp_path, src):
    with pytest.raises(MediqaError):
        replay(src, src)
    with pytest.raises(MediqaError):
        replay(src, tmp_path / "out", rate=-1)


def test_separate_folders_still_replay(tmp_path, src):
    assert main(["replay", str(src), str(tmp_path / "out"), "--rate", "0"]) == 0
    assert _digest(tmp_path / "out") == _digest(src)
