"""Long jobs never pick a recipe or a data set silently: ``--config`` is required, and the plan is printed first.

The plan (stdout, before any work starts) holds the resolved config, the data set a training run will read
(or the folder a build will write) and an estimate of the run time with what it is based on.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from data_paths import TINY_CONFIG as TINY_DATA
from synthetic_dataset import make_dataset

from mediqa.cli.main import main
from mediqa.training.datagen.builder import BuildResult

TINY_TRAIN = Path(__file__).resolve().parents[2] / "configs" / "train" / "tiny.yaml"


@pytest.mark.parametrize(("argv", "shipped"), [
    (["train"], ("configs/train/edge.yaml", "configs/train/tiny.yaml")),
    (["train", "--stage", "1"], ("configs/train/edge.yaml", "configs/train/tiny.yaml")),
    (["data", "build"], ("configs/data/default.yaml", "configs/data/tiny.yaml")),
])
def test_missing_config_is_a_one_line_error_listing_the_shipped_ones(
        argv: list[str], shipped: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith(f"mediqa {argv[0]}: error: ")
    assert "--config" in err
    for name in shipped:
        assert name in err


def test_train_prints_config_data_set_and_estimate_before_starting(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import mediqa.training.train_stage1 as stage1
    import mediqa.training.train_stage2 as stage2

    data = make_dataset(tmp_path)  # a folder holding one data set: the plan names the one it will use
    seen: list[str] = []

    def fake_stage(cfg: object, resume: bool = False) -> Path:
        seen.append(capsys.readouterr().out)  # what was printed before the stage started
        return tmp_path / "last.pt"

    monkeypatch.setattr(stage1, "train_stage1", fake_stage)
    monkeypatch.setattr(stage2, "train_stage2", fake_stage)
    rc = main(["train", "--config", str(TINY_TRAIN), "--set", f"data={tmp_path}", "--set", f"out={tmp_path / 'run'}"])
    assert rc == 0 and len(seen) == 2
    plan = seen[0]
    assert str(TINY_TRAIN) in plan
    assert "crop_size: 32" in plan and "out: " + str(tmp_path / "run") in plan  # the resolved config
    assert f"data set: {data}" in plan
    assert "estimate" in plan and "min" in plan and "MODEL_CARD" in plan


@pytest.mark.slow
def test_data_build_prints_config_output_and_estimate_before_starting(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import mediqa.training.datagen.builder as builder

    seen: list[str] = []

    def fake_build(cfg: object, out_dir: Path, workers: int | None = None, progress: bool = True,
                   plan: object = None) -> BuildResult:
        seen.append(capsys.readouterr().out)
        assert plan is not None  # the plan that was printed is the one built
        return BuildResult(out_dir / "tiny-x", 0, 0.0, ())

    monkeypatch.setattr(builder, "build", fake_build)
    assert main(["data", "build", "--config", str(TINY_DATA), "--out", str(tmp_path), "--no-progress"]) == 0
    plan = seen[0]
    assert str(TINY_DATA) in plan and "name: tiny" in plan  # the resolved config
    assert f"output: {tmp_path / 'tiny-'}" in plan
    assert "tasks" in plan and "estimate" in plan


def test_training_estimate_reproduces_the_recorded_run() -> None:
    from mediqa.training.estimate import duration, recipe_differences, stage_estimate
    from mediqa.training.train_config import load_config

    edge = load_config(TINY_TRAIN.parent / "edge.yaml")
    assert recipe_differences(edge) == []
    one, two = stage_estimate(edge, 1, 2192), stage_estimate(edge, 2, 2192)
    assert (one.epochs, one.samples_per_epoch, two.epochs) == (36, 2192, 24)
    assert duration(one.seconds) == "27.2 min" and duration(two.seconds) == "16.9 min"
    assert stage_estimate(edge, 1, 2192, done_epochs=30).epochs == 6  # a resumed run: what is left
    assert stage_estimate(edge, 1, 9000).samples_per_epoch == 2192  # samples_per_epoch caps an epoch
    assert "crop_size 32" in recipe_differences(load_config(TINY_TRAIN))


def test_build_schedule_hands_tasks_to_the_first_free_worker() -> None:
    from mediqa.training.estimate import duration, schedule

    assert schedule([8.0, 6.0, 1.0, 1.0], 2) == 8.0
    assert schedule([8.0, 6.0, 1.0, 1.0], 1) == 16.0
    assert schedule([], 2) == 0.0
    assert duration(42) == "42 s" and duration(5400) == "1.5 h"
