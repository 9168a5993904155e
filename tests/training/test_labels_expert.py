"""Expert-score manifests: valid CSV/YAML load and rescale; every malformed input names its fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from mediqa.training.labels.expert import ExpertScoreError, load_expert_scores


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_and_yaml_load_and_rescale_to_0_4(tmp_path: Path) -> None:
    csv = _write(tmp_path, "scores.csv", "series,series_uid,score,scale,raters\nexam1/s2,,4,1-5,3\n,1.2.3,2,0-4,\n")
    rows = load_expert_scores(csv)
    assert rows[0].series == str((tmp_path / "exam1" / "s2").resolve())
    assert rows[0].score_0_4 == pytest.approx(3.0) and rows[0].raters == 3
    assert rows[1].series_uid == "1.2.3" and rows[1].score_0_4 == 2.0 and rows[1].raters is None
    yml = _write(tmp_path, "scores.yaml", "scores:\n  - {series_uid: 1.2.4, score: 7, scale: [0, 10]}\n")
    assert load_expert_scores(yml)[0].score_0_4 == pytest.approx(2.8)


@pytest.mark.parametrize(("text", "message"), [
    ("series,scor,scale\na,1,0-4\n", "did you mean 'score'"),
    ("series,score,scale\na,5,0-4\n", "outside its scale"),
    ("series,score,scale\n,1,0-4\n", "neither 'series' nor 'series_uid'"),
    ("series,score,scale\na,1,0-4\na,2,0-4\n", "already scored in row 1"),
    ("series,score,scale,raters\na,1,0-4,1.5\n", "raters must be a whole number"),
    ("series,score,scale\na,good,0-4\n", "is not a number"),
    ("series,score,scale\na,1,4-0\n", "from low to high"),
    ("series,score\na,1\n", "'score' and 'scale' are required"),
])
def test_malformed_manifests_raise_clear_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ExpertScoreError, match=message):
        load_expert_scores(_write(tmp_path, "bad.csv", text))


def test_missing_file_and_unknown_type(tmp_path: Path) -> None:
    with pytest.raises(ExpertScoreError, match="not found"):
        load_expert_scores(tmp_path / "nope.csv")
    with pytest.raises(ExpertScoreError, match="unknown manifest type"):
        load_expert_scores(_write(tmp_path, "s.txt", "x"))
