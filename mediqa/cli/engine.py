"""``mediqa engine``: build, list, verify and benchmark inference engines.

Nothing heavy is imported here at module level (no torch, no onnxruntime, no tensorrt) so
``mediqa --help`` stays fast; each command imports what it needs. User errors are raised as
MediqaError (the CLI prints one line and exits 1); output is plain text.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mediqa.errors import BackendUnavailable, MediqaError

if TYPE_CHECKING:  # type hints only: each command imports what it runs
    from mediqa.agent.config import AgentConfig
    from mediqa.engines.backends.base import Backend
    from mediqa.engines.cache.store import EngineCache
    from mediqa.engines.gate.golden import GoldenSet

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
    b.set_defaults(func=cmd_build)

    ls = esub.add_parser("list", help="engines in the cache and which one matches this GPU",
                         description="List cached engines (model, GPU, TensorRT version, gate result) and mark "
                         "the ones this machine's GPU and TensorRT can load.")
    _cache_args(ls)
    ls.add_argument("--json", action="store_true", help="print the manifests as JSON")
    ls.set_defaults(func=cmd_list)

    v = esub.add_parser("verify", help="re-check plan hashes; re-run the accuracy gate on this GPU's engine",
                        description="Check every cached plan against its manifest (works anywhere). With TensorRT "
                        "and a GPU, also re-run the accuracy gate on the engine for this GPU and record the result.")
    _model_args(v)
    v.set_defaults(func=cmd_verify)

    bn = esub.add_parser("bench", help="latency per series for each backend available here",
                         description="Time one series (slices x crops crops) on every backend that runs here: "
                         "TensorRT (cached engine), ONNX Runtime CUDA, ONNX Runtime CPU FP32 and FP16-ONNX.")
    _model_args(bn)
    bn.add_argument("--runs", type=int, default=20, help="timed runs per backend (default 20)")
    bn.add_argument("--threads", type=int, default=None, help="ONNX Runtime CPU threads (default: config)")
    bn.set_defaults(func=cmd_bench)


def _cache_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cache", metavar="DIR", help="engine cache (default: scoring.engine_cache, else "
                   "<state_dir>/engines)")
    p.add_argument("--gpu", type=int, default=0, metavar="N", help="CUDA device index (default 0)")
    p.add_argument("--config", metavar="PATH", help="agent config (default: $MEDIQA_CONFIG, else "
                   "/etc/mediqa/agent.yaml when it exists, else the packaged agent.yaml): the service's engine cache")


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="?", metavar="MODEL.onnx", help="exported FP32 model (default: the embedded model)")
    _cache_args(p)
    p.add_argument("--golden", metavar="FILE.npz", help="golden set for the accuracy gate (default: the cached "
                   "one for this model, else built from --golden-dicom)")
    p.add_argument("--golden-dicom", metavar="DIR", help="build the golden set from the DICOM series under DIR "
                   "(clean, plus degraded copies)")
    p.add_argument("--slices", type=int, default=None, help="slices per series (default: config scoring.slices)")


logger = logging.getLogger(__name__)


def _config(args: argparse.Namespace) -> AgentConfig:
    """The same config (and so state dir and engine cache) as the service and every other command."""
    from mediqa.cli.common import config_source, load_config_source

    return load_config_source(config_source(args))


def resolve_cache(args: argparse.Namespace) -> EngineCache:
    from mediqa.engines.cache.store import EngineCache

    if args.cache:
        return EngineCache(args.cache)
    return EngineCache(_config(args).engine_cache_path)


def resolve_model(args: argparse.Namespace) -> Path:
    if args.model:
        return Path(args.model)
    from mediqa.agent.scoring.models import resolve_model

    return resolve_model(_config(args).scoring.model)


def resolve_golden(args: argparse.Namespace, model: Path, cache: EngineCache) -> GoldenSet:
    """--golden FILE, else the cached golden set for this model, else build one from --golden-dicom, else
    from the bundled sample series (the shared real series when present, generated phantoms otherwise)."""
    from mediqa.engines.gate.golden import GoldenSet
    from mediqa.engines.model_io import read_model_info
    from mediqa.model_card import card_from_metadata

    if args.golden:
        return GoldenSet.load(args.golden)
    info = read_model_info(model)
    cached = cache.root / "golden" / f"{info.sha256[:16]}.npz"
    if cached.is_file() and not args.golden_dicom:
        logger.info("golden set: %s", cached)
        return GoldenSet.load(cached)
    from mediqa.agent.golden import build_golden_from_dicom

    card = card_from_metadata(info.metadata)

    if args.golden_dicom:
        golden = build_golden_from_dicom(Path(args.golden_dicom), card, slices=_slices(args))
        source = args.golden_dicom
    else:
        import tempfile

        from mediqa.agent.samples import prepare_samples

        with tempfile.TemporaryDirectory(prefix="mediqa-golden-") as tmp:
            prepare_samples(Path(tmp))  # never the export folder: golden data must hold no patient images
            golden = build_golden_from_dicom(Path(tmp), card, slices=_slices(args))
        source = "the bundled sample series (pass --golden-dicom DIR to use your own)"
    golden.save(cached)
    logger.info("golden set built from %s and saved to %s", source, cached)
    return golden


def _slices(args: argparse.Namespace) -> int:
    return int(args.slices) if args.slices else int(_config(args).scoring.slices)


def cmd_build(args: argparse.Namespace) -> int:
    from mediqa.engines.builder.layers import describe_counts
    from mediqa.engines.builder.pipeline import build_engine
    from mediqa.engines.gate.accuracy import DEFAULT_TOLERANCE

    model, cache = resolve_model(args), resolve_cache(args)
    golden = resolve_golden(args, model, cache)
    outcome = build_engine(model, cache, golden, gpu_index=args.gpu, slices=_slices(args), typing=args.typing,
                           force=args.force, tolerance=args.tolerance or DEFAULT_TOLERANCE)
    m = outcome.manifest
    print(f"FP16 ONNX: {outcome.fp16.path}\n  {outcome.fp16.gate.summary()}")
    state = "up to date" if outcome.up_to_date else "built and installed"
    print(f"engine {m.key[:12]} {state}: {outcome.directory}")
    print(f"  TensorRT {m.tensorrt_version}, {m.gpu.get('name')} ({m.sm}), mode: {m.build.get('mode')}")
    print(f"  layers: {describe_counts(m.layer_precisions)}")
    diff = float(m.accuracy.get("max_abs_diff", float("nan")))
    print(f"  gate: {'PASS' if m.gate_passed else 'FAIL'}, max |diff| {diff:.4f}")
    return 0


def _here() -> tuple[str | None, dict[str, Any] | None, str]:
    """(TensorRT version, GPU key fields, note) for marking matching entries."""
    from mediqa.engines.backends.tensorrt import import_tensorrt
    from mediqa.engines.gpu import probe_gpu

    notes = []
    try:
        trt_version: str | None = str(import_tensorrt().__version__)
    except BackendUnavailable as exc:
        trt_version = None
        notes.append(str(exc))
    try:
        gpu = probe_gpu(0, allow_smi=True)
        fields: dict[str, Any] | None = gpu.key_fields()
        notes.append(gpu.describe())
    except BackendUnavailable as exc:
        fields = None
        notes.append(str(exc))
    return trt_version, fields, "; ".join(notes)


def cmd_list(args: argparse.Namespace) -> int:
    cache = resolve_cache(args)
    entries = list(cache.entries())
    if args.json:
        print(json.dumps([e.manifest.to_dict() if e.manifest else {"directory": str(e.directory),
                          "problem": e.problem} for e in entries], indent=2))
        return 0
    trt_version, gpu_fields, note = _here()
    print(f"engine cache {cache.root}: {len(entries)} engine(s); here: {note}")
    for e in entries:
        if e.manifest is None:
            print(f"  ! {e.directory.name}: unusable ({e.problem})")
            continue
        m = e.manifest
        match = gpu_fields is not None and m.gpu == gpu_fields and m.tensorrt_version == trt_version
        model = f"{m.model.get('name', '?')} ({m.components['model_sha256'][:12]})"
        print(f"  {'*' if match else ' '} {m.key[:12]} {model} {m.gpu.get('name', '?')} {m.sm}, "
              f"TensorRT {m.tensorrt_version}, built {m.build.get('time_utc', '?')}, "
              f"gate {'PASS' if m.gate_passed else 'FAIL'}")
    if entries:
        print("  (* = loadable by this GPU and TensorRT)")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from mediqa.engines.builder.verify import check_integrity, verify_engine

    cache = resolve_cache(args)
    rows = check_integrity(cache)
    for row in rows:
        print(f"  {'ok ' if row.ok else 'BAD'} {row.directory.name}: {row.detail}")
    bad = [r for r in rows if not r.ok]
    print(f"integrity: {len(rows) - len(bad)}/{len(rows)} plans match their manifests")
    model = resolve_model(args)
    try:
        gate = verify_engine(model, cache, resolve_golden(args, model, cache), gpu_index=args.gpu,
                             slices=_slices(args))
    except BackendUnavailable as exc:
        raise MediqaError(f"cannot re-run the accuracy gate here: {exc}",
                          "run `mediqa engine verify` on the console with the GPU") from None
    print(gate.summary())
    return 0 if gate.passed and not bad else 1


def cmd_bench(args: argparse.Namespace) -> int:
    from mediqa.engines.backends.onnxrt import OrtBackend
    from mediqa.engines.bench import bench_backend, synthetic_feed
    from mediqa.engines.cache.key import series_batch
    from mediqa.engines.model_io import read_model_info
    from mediqa.model_card import card_from_metadata

    model, cache = resolve_model(args), resolve_cache(args)
    cfg = _config(args)
    threads = args.threads or cfg.scoring.threads
    info = read_model_info(model)
    card = card_from_metadata(info.metadata)
    batch = series_batch(card, _slices(args))
    size = getattr(getattr(card, "preprocessing", None), "crop_size", None)
    items = {s.name: tuple(size if d is None or isinstance(d, str) else d for d in s.shape[1:])
             for s in info.inputs} if size else None
    feed = synthetic_feed(info, batch, items)
    slices = _slices(args)
    rows = [bench_backend(lambda: _trt_from_cache(model, cache, args.gpu, slices), "tensorrt (cached engine)",
                          feed, args.runs)]
    rows.append(bench_backend(lambda: OrtBackend(model, "cuda", threads, args.gpu), "onnxruntime-cuda fp32", feed,
                              args.runs))
    rows.append(bench_backend(lambda: OrtBackend(model, "cpu", threads), f"onnxruntime-cpu fp32 ({threads} thr)",
                              feed, args.runs))
    fp16 = cache.fp16_path(info.sha256)
    if fp16.is_file():
        rows.append(bench_backend(lambda: OrtBackend(fp16, "cpu", threads, label="fp16"),
                                  f"onnxruntime-cpu fp16-onnx ({threads} thr)", feed, args.runs))
    print(f"latency per series ({batch} crops, {args.runs} runs, median / p90) for {model.name}:")
    for row in rows:
        print(row.line())
    return 0


def _trt_from_cache(model: Path, cache: EngineCache, gpu_index: int, slices: int) -> Backend:
    from mediqa.engines.chain import select_backend

    backend, _ = select_backend(model, ("tensorrt",), engine_cache=cache.root, gpu_index=gpu_index, slices=slices)
    return backend
