"""``mediqa engine``: build, list, verify and benchmark inference engines.

Registered by ``mediqa.agent.cli``. Nothing heavy is imported here at module level (no torch, no
onnxruntime, no tensorrt) so ``mediqa --help`` stays fast; each command imports what it needs.
"""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Engines make scoring fast on the console's GPU. `build` converts the model to mixed-precision FP16 ONNX
(checked against FP32 on ONNX Runtime CPU), builds a TensorRT engine for this GPU and TensorRT version,
and installs it only if it passes the accuracy gate (same retake decision as FP32 on every golden case).
The agent then picks the first backend that works: tensorrt, onnxruntime-cuda, onnxruntime-cpu.

  mediqa engine build                  build for GPU 0 with the embedded default model
  mediqa engine build model.onnx --gpu 1 --golden golden.npz
  mediqa engine list                   cached engines; which one this GPU would load
  mediqa engine verify                 re-check plan hashes and re-run the accuracy gate
  mediqa engine bench                  latency per series for every backend available here
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("engine", help="build, list, verify and benchmark inference engines (TensorRT/ONNX Runtime)",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])
    esub = p.add_subparsers(dest="engine_command", metavar="SUBCOMMAND")

    b = esub.add_parser("build", help="FP16 ONNX + TensorRT engine for this GPU, gated against FP32",
                        description="Convert MODEL to FP16 ONNX, check it on ONNX Runtime CPU, build a TensorRT "
                        "engine for the chosen GPU and install it in the cache if it passes the accuracy gate. "
                        "Without TensorRT or a GPU, the FP16 ONNX is still written and checked; the command then "
                        "says why it cannot build and exits 1.")
    _model_args(b)
    b.add_argument("--force", action="store_true", help="rebuild even if a passing engine is cached")
    b.add_argument("--typing", choices=("strong", "flag"), default="strong",
                   help="strong: strongly typed network from the FP16 ONNX (TensorRT 10 and 11, default); "
                   "flag: FP32 network + BuilderFlag.FP16 (TensorRT 10 only)")
    b.add_argument("--tolerance", type=float, default=None,
                   help="max per-crop score difference vs FP32 on the 0-4 scale (default 0.1)")
    b.set_defaults(func=_run("build"))

    ls = esub.add_parser("list", help="engines in the cache and which one matches this GPU",
                         description="List cached engines (model, GPU, TensorRT version, gate result) and mark "
                         "the ones this machine's GPU and TensorRT can load.")
    _cache_args(ls)
    ls.add_argument("--json", action="store_true", help="print the manifests as JSON")
    ls.set_defaults(func=_run("list"))

    v = esub.add_parser("verify", help="re-check plan hashes; re-run the accuracy gate on this GPU's engine",
                        description="Check every cached plan against its manifest (works anywhere). With TensorRT "
                        "and a GPU, also re-run the accuracy gate on the engine for this GPU and record the result.")
    _model_args(v)
    v.set_defaults(func=_run("verify"))

    bn = esub.add_parser("bench", help="latency per series for each backend available here",
                         description="Time one series (slices x crops crops) on every backend that runs here: "
                         "TensorRT (cached engine), ONNX Runtime CUDA, ONNX Runtime CPU FP32 and FP16-ONNX.")
    _model_args(bn)
    bn.add_argument("--runs", type=int, default=20, help="timed runs per backend (default 20)")
    bn.add_argument("--threads", type=int, default=None, help="ONNX Runtime CPU threads (default: config)")
    bn.set_defaults(func=_run("bench"))


def _cache_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cache", metavar="DIR", help="engine cache (default: scoring.engine_cache, else "
                   "<state_dir>/engines)")
    p.add_argument("--gpu", type=int, default=0, metavar="N", help="CUDA device index (default 0)")
    p.add_argument("--config", metavar="PATH", help="agent config (default: the packaged agent.yaml)")


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="?", metavar="MODEL.onnx", help="exported FP32 model (default: the embedded model)")
    _cache_args(p)
    p.add_argument("--golden", metavar="FILE.npz", help="golden set for the accuracy gate (default: the cached "
                   "one for this model, else built from --golden-dicom)")
    p.add_argument("--golden-dicom", metavar="DIR", help="build the golden set from the DICOM series under DIR "
                   "(clean, plus degraded copies)")
    p.add_argument("--slices", type=int, default=None, help="slices per series (default: config scoring.slices)")


def _run(name: str):  # type: ignore[no-untyped-def]
    def run(args: argparse.Namespace) -> int:
        from mediqa.engines import commands

        return int(getattr(commands, f"cmd_{name}")(args))

    return run
