#!/usr/bin/env python3
"""Benchmark (not a timed test): ONNX Runtime CPU latency of one 7-slice series for edge-size variants.

Why: the edge size must score a series (7 slices x crops_per_slice crops, one batch) in <= 0.15 s on
a 2-core console CPU through ONNX Runtime, configured as the agent configures it (fixed intra-op
threads, no spinning). Weights are random: latency does not depend on them. The load average is
printed with the numbers because the cores are shared and a busy machine inflates every figure.

    .venv/bin/python scripts/bench_edge_size.py [--num-tab 1 2] [--runs 40] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from mediqa.export.onnx import export_onnx
from mediqa.model_card import DEFAULT_VOCABULARY, PROMPT_FIELDS, ModelCard, Preprocessing
from mediqa.training.model import arch_dict, arch_for, build_model, count_parameters

SLICES = 7


def session(num_tab: int, threads: int, crops_per_slice: int, heads: int) -> tuple[ort.InferenceSession, dict]:
    """An exported random-weight edge variant in an ORT session configured as the agent's."""
    vocab = tuple(len(DEFAULT_VOCABULARY[k]) for k in PROMPT_FIELDS)
    arch = arch_for("edge", num_tab=num_tab, vocab_sizes=vocab, num_physics=heads)
    torch.manual_seed(0)
    model = build_model(arch).eval()
    pre = Preprocessing(crop_size=arch.img_size, crops_per_slice=crops_per_slice)
    card = ModelCard(architecture=arch_dict(arch), preprocessing=pre)
    with tempfile.TemporaryDirectory() as tmp:
        report = export_onnx(model, card, Path(tmp) / "edge.onnx")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        sess = ort.InferenceSession(str(report.path), opts, providers=["CPUExecutionProvider"])
    info = {"num_tab": num_tab, "params_m": count_parameters(model) / 1e6, "onnx_mb": report.size_bytes / 1e6}
    return sess, info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-tab", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--crops-per-slice", type=int, default=4)
    parser.add_argument("--heads", type=int, default=11, help="physical heads (output width; negligible cost)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    variants = [session(n, args.threads, args.crops_per_slice, args.heads) for n in args.num_tab]
    n = SLICES * args.crops_per_slice
    rng = np.random.default_rng(0)
    feed = {"image": rng.uniform(-1, 1, (n, 3, 96, 96)).astype(np.float32), "prompt": np.zeros((n, 4), np.int64)}
    for sess, _ in variants:
        for _ in range(3):
            sess.run(None, feed)
    times: list[list[float]] = [[] for _ in variants]
    load = [os.getloadavg()[0]]
    for _ in range(args.runs):  # interleaved, so a burst of load on the shared cores hits every variant alike
        for k, (sess, _) in enumerate(variants):
            t0 = time.perf_counter()
            sess.run(None, feed)
            times[k].append(time.perf_counter() - t0)
    load.append(os.getloadavg()[0])
    print(f"ORT {ort.__version__}, {args.threads} intra-op threads, batch {SLICES} x {args.crops_per_slice}, "
          f"{os.cpu_count()} CPUs visible, {args.runs} interleaved runs, "
          f"load average (1 min) {load[0]:.2f} before / {load[1]:.2f} after")
    for (_, info), t in zip(variants, times, strict=True):
        t.sort()
        print(f"num_tab={info['num_tab']}: {info['params_m']:.2f} M params, {info['onnx_mb']:.1f} MB ONNX, "
              f"median {statistics.median(t):.3f} s, p90 {t[int(0.9 * (len(t) - 1))]:.3f} s, min {t[0]:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
