"""``mediqa train`` and ``mediqa eval`` (and the data engineer's ``mediqa data``).

torch, matplotlib and the trainers are imported inside the commands so that ``mediqa --help`` and
the running agent never pay for them.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    train = subparsers.add_parser("train", help="train the quality model (stage 1 physics, stage 2 quality)",
                                  description="Two-stage training from a YAML config; resumable.")
    train.add_argument("--config", type=Path, default=Path("configs/train/edge.yaml"), help="training YAML")
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
    from mediqa.training.train_config import load_config
    from mediqa.training.train_stage1 import train_stage1
    from mediqa.training.train_stage2 import train_stage2

    cfg = load_config(args.config, _overrides(args.set))
    if args.stage in (None, 1):
        logger.info("stage 1 -> %s", train_stage1(cfg, resume=args.resume))
    if args.stage in (None, 2):
        logger.info("stage 2 -> %s", train_stage2(cfg, resume=args.resume))
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from mediqa.errors import ConfigError
    from mediqa.training.eval import MAIN_LABEL, evaluate

    others: list[tuple[str, Path]] = []
    for item in args.compare:
        label, sep, path = item.rpartition("=")
        if not sep or not label:
            raise ConfigError(f"--compare expects LABEL=MODEL, got '{item}'")
        others.append((label, Path(path)))
    out = args.out or args.model.parent / f"eval-{args.split}"
    evaluate(args.model, args.data, out, split=args.split, compare=others, limit=args.limit,
             label=args.label or MAIN_LABEL)
    return 0
