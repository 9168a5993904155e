"""``mediqa export onnx CHECKPOINT [--out PATH]``: the checked ONNX the agent runs.

torch and onnx are imported inside the command so that ``mediqa --help`` and the agent stay fast.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("export", help="export a trained checkpoint (ONNX for the agent)",
                                   description="Export a trained checkpoint for the agent.")
    kinds = parser.add_subparsers(dest="export_kind", metavar="FORMAT", required=True)
    onnx_p = kinds.add_parser("onnx", help="ONNX with the model card in its metadata, checked against torch")
    onnx_p.add_argument("checkpoint", type=Path, help="a .pt written by `mediqa train`")
    onnx_p.add_argument("--out", type=Path, default=None, help="output path (default: CHECKPOINT with .onnx)")
    onnx_p.add_argument("--opset", type=int, default=17, help="ONNX opset, >= 17 (default 17)")
    onnx_p.set_defaults(func=run_onnx)


def run_onnx(args: argparse.Namespace) -> int:
    from mediqa.export.onnx import export_onnx
    from mediqa.training.checkpoint import load_model

    model, card, _ = load_model(args.checkpoint)
    out = args.out or args.checkpoint.with_suffix(".onnx")
    report = export_onnx(model, card, out, opset=args.opset)
    card_path = out.with_suffix(".json")
    card_path.write_text(card.to_json() + "\n")
    logger.info("wrote %s (%.1f MB) and %s; ORT vs torch max |diff| quality %.1e, physics %.1e",
                report.path, report.size_bytes / 1e6, card_path, report.max_abs_diff_quality,
                report.max_abs_diff_physics)
    return 0
