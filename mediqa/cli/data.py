"""``mediqa data build``, ``relabel`` and ``preview``: the training data set from the command line.

Nothing heavy is imported here (the builder loads numpy, scipy,
scikit-image and matplotlib only when a command runs), so ``mediqa --help`` stays fast. A build takes
minutes, so it never starts from a default config: ``--config`` is required, and the resolved config,
the output folder, the plan and an estimate of the run time are printed before the workers start.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_OUT = Path("data-out")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    data = sub.add_parser("data", help="build or preview the physics-degraded training data set",
                          description="Real CT/MR slices + physically simulated degradations with exact "
                                      "labels (docs/dataset-format.md).")
    inner = data.add_subparsers(dest="data_command", metavar="ACTION")
    b = inner.add_parser("build", help="build a versioned data set from a config")
    b.add_argument("--config", type=Path, default=None,
                   help="data set YAML (required), e.g. configs/data/default.yaml or configs/data/tiny.yaml")
    b.add_argument("--out", type=Path, default=DEFAULT_OUT, help="parent folder (default: data-out)")
    b.add_argument("--workers", type=int, default=None, help="processes (default: from the config)")
    b.add_argument("--data-root", type=Path, default=None, help="folder of the shared DICOM exports")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    b.set_defaults(func=run_build)
    p = inner.add_parser("preview", help="PNG grid of sources x degradation levels to check the physics by eye")
    p.add_argument("dataset", type=Path, nargs="?", help="a built data set folder")
    p.add_argument("--config", type=Path, default=None, help="or: render straight from a data config")
    p.add_argument("--out", type=Path, required=True, help="PNG to write")
    p.add_argument("--split", default=None, help="only samples of this split")
    p.set_defaults(func=run_preview)
    r = inner.add_parser("relabel", help="recompute quality labels and prompts of a built set (no new images)",
                         description="Writes <name>-<version> beside the set (or under --out) with this "
                                     "code's label rule; the arrays are hard-linked, not copied.")
    r.add_argument("dataset", type=Path, help="a built data set folder, e.g. data-out/default-398f1c998fb6")
    r.add_argument("--out", type=Path, default=None, help="parent folder (default: beside the data set)")
    r.set_defaults(func=run_relabel)
    data.set_defaults(func=lambda args: _help(data))


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 0


def run_build(args: argparse.Namespace) -> int:
    from mediqa.cli.train import require_config

    config = require_config(args.config, "data", "data set to build")
    import yaml

    from mediqa.training import estimate
    from mediqa.training.datagen import builder
    from mediqa.training.datagen.config import load_data_config
    from mediqa.training.datagen.writer import dataset_dir

    overrides = {"data_root": str(args.data_root)} if args.data_root else None
    cfg = load_data_config(config, overrides)
    print(f"config: {config} (resolved below)", yaml.safe_dump(cfg.to_dict(), sort_keys=False).rstrip(),
          f"output: {dataset_dir(args.out, cfg)}", sep="\n", file=sys.stdout, flush=True)
    plan = builder.plan_build(cfg, workers=args.workers)
    kinds = [t.kind for t in plan.tasks]
    print(f"plan: {len(plan.sources)} sources loaded in {plan.load_seconds:.0f} s, {len(kinds)} tasks "
          f"({kinds.count('ct_slice')} CT slices, {kinds.count('mr_slice')} MR slices, "
          f"{kinds.count('mr_motion3d')} MR 3D motion slabs), {plan.workers} workers", file=sys.stdout)
    print(f"estimate: {estimate.duration(estimate.build_seconds(plan, cfg))} from now "
          f"({estimate.BUILD_BASIS})", file=sys.stdout, flush=True)
    result = builder.build(cfg, args.out, workers=args.workers, progress=not args.no_progress, plan=plan)
    print(f"{result.path}  ({result.n_samples} samples, {result.seconds:.0f} s)", file=sys.stdout)
    return 0


def run_relabel(args: argparse.Namespace) -> int:
    from mediqa.training.datagen.relabel import relabel

    print(relabel(args.dataset, args.out), file=sys.stdout)
    return 0


def run_preview(args: argparse.Namespace) -> int:
    from mediqa.errors import ConfigError
    from mediqa.training.datagen.preview import preview_from_config, preview_from_dataset

    if (args.dataset is None) == (args.config is None):
        raise ConfigError("give either a data set folder or --config", "e.g. mediqa data preview data-out/x")
    if args.dataset is not None:
        path = preview_from_dataset(args.dataset, args.out, split=args.split)
    else:
        from mediqa.training.datagen.config import load_data_config

        path = preview_from_config(load_data_config(args.config), args.out)
    print(path, file=sys.stdout)
    return 0
