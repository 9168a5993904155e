"""``mediqa train`` and ``mediqa eval`` (and the data engineer's ``mediqa data``).

torch, matplotlib and the trainers are imported inside the commands so that ``mediqa --help`` and
the running agent never pay for them. A training run is long, so it never picks its recipe or its data
set silently: ``--config`` is required, and the resolved config, the data set and an estimate of the
run time are printed before the first epoch.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:

    from mediqa.training.train_config import TrainConfig

logger = logging.getLogger(__name__)

CLASSICAL_LABEL = "classical (noise: CT GNL, MR SNR)"


def shipped_configs(kind: str) -> list[str]:
    """The YAML files shipped under ``configs/<kind>/`` (relative to the current folder when inside it)."""
    folder = Path(str(resources.files("mediqa.configs").joinpath(kind)))
    names = sorted(folder.glob("*.yaml"))
    cwd = Path.cwd()
    return [os.path.relpath(p, cwd) if p.is_relative_to(cwd) else str(p) for p in names]


def require_config(path: Path | None, kind: str, what: str) -> Path:
    """``--config`` or a one-line error naming the shipped ones: a long job never picks a recipe itself."""
    if path is not None:
        return path
    from mediqa.errors import ConfigError

    raise ConfigError(f"--config is required: name the {what}", f"shipped: {', '.join(shipped_configs(kind))}")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    train = subparsers.add_parser("train", help="train the quality model (stage 1 physics, stage 2 quality)",
                                  description="Two-stage training from a YAML config; resumable.")
    train.add_argument("--config", type=Path, default=None,
                       help="training YAML (required), e.g. configs/train/edge.yaml or configs/train/tiny.yaml")
    train.add_argument("--stage", type=int, choices=(1, 2), default=None, help="run one stage (default: both)")
    train.add_argument("--resume", action="store_true", help="continue from the stage's last.pt")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config key, e.g. --set stage1.epochs=2 (YAML value syntax)")
    train.set_defaults(func=run_train)

    ev = subparsers.add_parser("eval", help="evaluate a checkpoint or ONNX model on a data set's test split",
                               description="SRCC/PLCC/KROCC per modality and degradation, retake ROC-AUC, "
                                           "false alerts, comparison table and scatter plots.")
    ev.add_argument("model", type=Path, help="checkpoint (.pt) or exported model (.onnx)")
    ev.add_argument("--data", type=Path, required=True, help="built data set (or the folder holding them)")
    ev.add_argument("--split", default="test", help="split to evaluate (default: test)")
    ev.add_argument("--compare", action="append", default=[], metavar="LABEL=MODEL",
                    help="another checkpoint/ONNX for the comparison table, e.g. 'MANIQA without prompts=np.pt'")
    ev.add_argument("--out", type=Path, default=None, help="report folder (default: beside MODEL, eval-<split>)")
    ev.add_argument("--limit", type=int, default=None, help="evaluate at most this many samples (quick checks)")
    ev.add_argument("--label", default=None,
                    help="table label of MODEL (default: 'ours (MANIQA + prompts, crops)'), e.g. to state its budget")
    ev.set_defaults(func=run_eval)


def _overrides(pairs: list[str]) -> dict[str, object]:
    import yaml

    from mediqa.errors import ConfigError

    out: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ConfigError(f"--set expects KEY=VALUE, got '{pair}'")
        out[key.strip()] = yaml.safe_load(value)
    return out


def run_train(args: argparse.Namespace) -> int:
    config = require_config(args.config, "train", "training recipe")
    from mediqa.training.train_config import load_config
    from mediqa.training.train_stage1 import train_stage1
    from mediqa.training.train_stage2 import train_stage2

    cfg = load_config(config, _overrides(args.set))
    stages = (1, 2) if args.stage is None else (args.stage,)
    print(train_plan(config, cfg, stages, args.resume), file=sys.stdout, flush=True)
    if 1 in stages:
        logger.info("stage 1 -> %s", train_stage1(cfg, resume=args.resume))
    if 2 in stages:
        logger.info("stage 2 -> %s", train_stage2(cfg, resume=args.resume))
    return 0


def train_plan(config: Path, cfg: TrainConfig, stages: tuple[int, ...], resume: bool) -> str:
    """What will run: the resolved config, the data set of each stage and the estimated time."""
    import yaml

    from mediqa.training import estimate
    from mediqa.training.checkpoint import read_checkpoint, train_state
    from mediqa.training.train_config import config_dict
    from mediqa.training.trainset import find_dataset, read_manifest

    lines = [f"config: {config} (resolved below)", yaml.safe_dump(config_dict(cfg), sort_keys=False).rstrip()]
    total = 0.0
    for stage in stages:
        data = find_dataset(Path(cfg.stage2.expert or cfg.data) if stage == 2 else Path(cfg.data))
        splits = [s["split"] for s in read_manifest(data)["samples"]]
        last = Path(cfg.out) / f"stage{stage}" / "last.pt"
        done = train_state(read_checkpoint(last)).epoch if resume and last.is_file() else 0
        est = estimate.stage_estimate(cfg, stage, splits.count("train"), done)
        total += est.seconds
        resumed = f", resuming after epoch {done}" if done else ""
        lines.append(f"stage {stage} data set: {data} ({splits.count('train')} train, {splits.count('val')} val "
                     f"samples)")
        lines.append(f"stage {stage} estimate: {est.epochs} epochs x {est.samples_per_epoch} samples x "
                     f"{estimate.SECONDS_PER_SAMPLE[stage] * 1e3:.1f} ms = {estimate.duration(est.seconds)}{resumed}")
    differs = estimate.recipe_differences(cfg)
    caveat = f"; this config differs in {', '.join(differs)}, so expect another time" if differs else ""
    lines.append(f"estimate: {estimate.duration(total)} in all (seconds per sample of the recorded run, "
                 f"{estimate.RECORD}{caveat})")
    return "\n".join(lines)


def run_eval(args: argparse.Namespace) -> int:
    from mediqa.agent.scoring import classical
    from mediqa.errors import ConfigError
    from mediqa.training.eval import MAIN_LABEL, Baseline, evaluate

    others: list[tuple[str, Path]] = []
    for item in args.compare:
        label, sep, path = item.rpartition("=")
        if not sep or not label:
            raise ConfigError(f"--compare expects LABEL=MODEL, got '{item}'")
        others.append((label, Path(path)))
    out = args.out or args.model.parent / f"eval-{args.split}"
    evaluate(args.model, args.data, out, split=args.split, compare=others, limit=args.limit,
             label=args.label or MAIN_LABEL, baseline=Baseline(CLASSICAL_LABEL, classical.score_slice))
    return 0
