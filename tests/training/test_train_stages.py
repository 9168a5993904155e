"""Both training stages end to end on the synthetic data set: checkpoints, card, resume, curves."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from synthetic_dataset import make_dataset

from mediqa.cli.main import main
from mediqa.errors import ConfigError
from mediqa.model_card import ModelCard
from mediqa.training.checkpoint import load_model, read_checkpoint
from mediqa.training.losses import physics_loss, ranking_loss
from mediqa.training.train_config import load_config

TINY = Path(__file__).resolve().parents[2] / "configs" / "train" / "tiny.yaml"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("train")
    data = make_dataset(root)
    out = root / "run"
    assert main(["train", "--config", str(TINY), "--set", f"data={data}", "--set", f"out={out}"]) == 0
    return data, out


@pytest.mark.slow
def test_one_short_epoch_per_stage_writes_every_stage_file(tmp_path: Path) -> None:
    """The fast lane's run of ``run_stage``: one epoch of 16 samples per stage, 8 validation samples, one
    torch thread (two threads contend on a busy 2-core machine: 10 s instead of 2 s)."""
    data = make_dataset(tmp_path, n_series=6, size=32)
    out = tmp_path / "run"
    short = ["threads=1", *(f"stage{n}.{key}={value}" for n in (1, 2)
                            for key, value in (("epochs", 1), ("samples_per_epoch", 16), ("val_samples", 8)))]
    argv = ["train", "--config", str(TINY), "--set", f"data={data}", "--set", f"out={out}"]
    assert main([*argv, *(x for pair in short for x in ("--set", pair))]) == 0
    for stage in ("stage1", "stage2"):
        for name in ("last.pt", "best.pt", "curves.png", "config.yaml"):
            assert (out / stage / name).is_file(), f"{stage}/{name}"
        payload = read_checkpoint(out / stage / "last.pt")
        assert [h["epoch"] for h in payload["state"]["history"]] == [1] and payload["optimizer"]
        assert load_model(out / stage / "best.pt")[1].training["stage"] == int(stage[-1])


@pytest.mark.slow
def test_stage_outputs_and_model_card(trained: tuple[Path, Path]) -> None:
    data, out = trained
    for stage in ("stage1", "stage2"):
        for name in ("last.pt", "best.pt", "curves.png", "config.yaml"):
            assert (out / stage / name).is_file(), f"{stage}/{name}"
    model, card, payload = load_model(out / "stage2" / "last.pt")
    assert card.heads == ("ct_dose", "mr_snr")
    assert card.head_info["ct_dose"]["transform"] == "log2"
    assert card.thresholds == {"retake_below": 2.0, "worst_slice_below": 1.0}
    assert card.training["dataset_version"] == "0000" and card.training["stage"] == 2
    assert card.preprocessing.crop_size == 32 and card.architecture["vit_dim"] == 32
    assert "val_srcc_quality" in card.metrics["val"]
    assert payload["config"]["data"] == str(data) and payload["state"]["epoch"] == 2
    assert ModelCard.from_json(card.to_json()) == card
    quality, physics = model(torch.zeros(2, 3, 32, 32), torch.zeros(2, 4, dtype=torch.long))
    assert quality.shape == (2,) and physics.shape == (2, 2)


@pytest.mark.slow
def test_stage2_starts_from_stage1(trained: tuple[Path, Path]) -> None:
    _, out = trained
    s1 = read_checkpoint(out / "stage1" / "last.pt")["model"]
    s2 = read_checkpoint(out / "stage2" / "last.pt")["model"]
    assert torch.equal(s1["physics_range"], s2["physics_range"])
    assert not torch.equal(s1["head.fc_score.0.weight"], s2["head.fc_score.0.weight"])  # fine-tuned


@pytest.mark.slow
def test_resume_continues_the_history(trained: tuple[Path, Path]) -> None:
    data, out = trained
    args = ["train", "--config", str(TINY), "--stage", "1", "--resume", "--set", f"data={data}",
            "--set", f"out={out}", "--set", "stage1.epochs=3"]
    assert main(args) == 0
    payload = read_checkpoint(out / "stage1" / "last.pt")
    assert [h["epoch"] for h in payload["state"]["history"]] == [1, 2, 3]


def test_config_typo_is_an_error_with_a_hint(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="did you mean 'stage1.epochs'"):
        load_config(TINY, {"stage1.epoch": 3})


def test_each_stage_brings_its_loss_and_its_checkpoint_choice() -> None:
    """The parts a stage hands ``run_stage``, on the tiny recipe's network (no data set, no loop)."""
    import math

    from mediqa.training.model import arch_for, build_model
    from mediqa.training.run_stage import Batch
    from mediqa.training.train_stage1 import heads_loss, mean_head_srcc
    from mediqa.training.train_stage2 import quality_objective, quality_srcc

    cfg = load_config(TINY)
    torch.manual_seed(0)
    arch = arch_for("edge", img_size=32, num_physics=2, **{k: tuple(v) if isinstance(v, list) else v
                                                            for k, v in cfg.model.overrides.items()})
    model = build_model(arch, torch.tensor([[-4.0, 0.0], [1.0, 6.0]]))
    batch = Batch(torch.zeros(3, 3, 32, 32), torch.zeros(3, 4, dtype=torch.long),
                  torch.tensor([[-1.0, float("nan")]] * 3), torch.tensor([1.0, float("nan"), 3.0]))
    for loss in (heads_loss(model, batch), quality_objective(cfg.stage2, model, batch)):
        assert loss.ndim == 0 and torch.isfinite(loss)
        loss.backward()
    metrics = {"val_srcc_quality": 0.9, "val_srcc_ct_dose": 0.5, "val_srcc_mr_snr": float("nan")}
    assert mean_head_srcc(metrics) == 0.5 and quality_srcc(metrics) == 0.9
    assert math.isnan(mean_head_srcc({"val_srcc_quality": 0.9}))


def test_physics_loss_ignores_heads_that_do_not_apply() -> None:
    ranges = torch.tensor([[-4.0, 0.0], [1.0, 6.0]])
    pred = torch.tensor([[-2.0, 100.0]])
    target = torch.tensor([[-2.0, float("nan")]])
    assert float(physics_loss(pred, target, ranges)) == 0.0
    assert float(physics_loss(pred, torch.tensor([[0.0, float("nan")]]), ranges)) == pytest.approx(0.25)


def test_ranking_loss_penalises_inverted_pairs_only() -> None:
    target = torch.tensor([3.0, 1.0])
    assert float(ranking_loss(torch.tensor([3.0, 1.0]), target)) == 0.0
    assert float(ranking_loss(torch.tensor([1.0, 3.0]), target)) > 1.0
