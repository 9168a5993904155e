"""Checkpoint -> ONNX that checks itself (house style 11, after timm ``utils/onnx.py``).

Export with named inputs and a dynamic batch, verify the graph (``onnx.checker``, opset,
LayerNormalization kept as one op so TensorRT and ORT fuse it), compare ONNX Runtime with torch on
a fixed random batch within a stated tolerance, and write the model card into the metadata so the
agent never re-declares preprocessing.

torch 2.13's ``torch.onnx.export`` defaults to the dynamo exporter, which needs ``onnxscript``
(not installed here); the TorchScript exporter (``dynamo=False``) covers this plain-op network.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch

from mediqa.errors import ModelError
from mediqa.model_card import INPUT_NAMES, OUTPUT_NAMES, PROMPT_FIELDS, ModelCard, embed_card

logger = logging.getLogger(__name__)

OPSET = 17
INPUTS = INPUT_NAMES
OUTPUTS = OUTPUT_NAMES
# Measured max |ORT - torch| on the edge model is ~1e-6 (quality, 0..4 scale); 1e-4 leaves margin
# for other CPUs' kernels while still catching any real graph difference.
ATOL = 1e-4


@dataclass(frozen=True)
class ExportReport:
    path: Path
    opset: int
    size_bytes: int
    max_abs_diff_quality: float
    max_abs_diff_physics: float
    layernorm_ops: int


def export_onnx(model: torch.nn.Module, card: ModelCard, out: Path, opset: int = OPSET,
                atol: float = ATOL, seed: int = 0) -> ExportReport:
    """Export ``model`` (eval mode) to ``out`` atomically; raise ModelError if any check fails."""
    if opset < 17:
        raise ModelError(f"opset {opset} < 17 splits LayerNorm into primitive ops", "use opset >= 17")
    model = model.eval()
    pre = card.preprocessing
    gen = torch.Generator().manual_seed(seed)
    image = torch.rand(3, pre.channels, pre.crop_size, pre.crop_size, generator=gen) * 2 - 1
    prompt = torch.stack([torch.randint(0, len(card.vocabulary[k]), (3,), generator=gen)
                          for k in PROMPT_FIELDS], dim=1)
    # torch.onnx.export takes a path (``f: str | PathLike``): the graph goes through a private folder.
    with tempfile.TemporaryDirectory(prefix="mediqa-export-") as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript tracer warnings about constant shapes are expected
        traced = Path(folder) / "traced.onnx"
        torch.onnx.export(model, (image, prompt), traced, input_names=list(INPUTS), output_names=list(OUTPUTS),
                          dynamic_axes={name: {0: "N"} for name in INPUTS + OUTPUTS}, opset_version=opset,
                          do_constant_folding=True, dynamo=False)
        proto = onnx.load(str(traced))
    expected_ln = sum(isinstance(m, torch.nn.LayerNorm) for m in model.modules())
    ln = check_graph(proto, opset, expected_ln)
    embed_card(proto, card)
    onnx.checker.check_model(proto, full_check=True)
    data = proto.SerializeToString()
    dq, dp = _parity(model, data, card, atol, seed + 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".onnx.tmp")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(tmp, _readable_mode())  # mkstemp makes 0600; a service account must be able to read the model
    os.replace(tmp, out)
    report = ExportReport(out, opset, len(data), dq, dp, ln)
    logger.info("exported %s (%.1f MB, opset %d, %d LayerNormalization ops, parity quality %.2e physics %.2e)",
                out, len(data) / 1e6, opset, ln, dq, dp)
    return report


def _readable_mode() -> int:
    """What ``open()`` would have created: 0666 minus the process umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def check_graph(proto: onnx.ModelProto, opset: int, expected_layernorms: int) -> int:
    """Names, opset and LayerNorm fusion (one LayerNormalization node per nn.LayerNorm)."""
    got_in = tuple(i.name for i in proto.graph.input)
    got_out = tuple(o.name for o in proto.graph.output)
    if got_in != INPUTS or got_out != OUTPUTS:
        raise ModelError(f"ONNX I/O is {got_in} -> {got_out}, expected {INPUTS} -> {OUTPUTS}")
    domain_opset = {o.domain: o.version for o in proto.opset_import}
    if domain_opset.get("", 0) < opset:
        raise ModelError(f"ONNX opset {domain_opset.get('', 0)} < {opset}")
    ops = [n.op_type for n in proto.graph.node]
    ln = ops.count("LayerNormalization")
    if ln != expected_layernorms:
        raise ModelError(f"{ln} LayerNormalization nodes for {expected_layernorms} LayerNorm modules: "
                         "LayerNorm was decomposed into primitive ops")
    return ln


def _parity(model: torch.nn.Module, data: bytes, card: ModelCard, atol: float, seed: int) -> tuple[float, float]:
    """Max |ORT - torch| on a batch whose size differs from the export batch (tests the dynamic axis)."""
    import onnxruntime as ort

    pre = card.preprocessing
    rng = np.random.default_rng(seed)
    image = rng.uniform(-1, 1, (5, pre.channels, pre.crop_size, pre.crop_size)).astype(np.float32)
    prompt = np.stack([rng.integers(0, len(card.vocabulary[k]), 5)
                       for k in PROMPT_FIELDS], axis=1).astype(np.int64)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    q_ort, p_ort = sess.run(list(OUTPUTS), {"image": image, "prompt": prompt})
    with torch.no_grad():
        q_t, p_t = model(torch.from_numpy(image), torch.from_numpy(prompt))
    dq = float(np.max(np.abs(q_ort - q_t.numpy())))
    dp = float(np.max(np.abs(p_ort - p_t.numpy()))) if p_t.numel() else 0.0
    if q_ort.shape != (5,) or p_ort.shape != tuple(p_t.shape):
        raise ModelError(f"ONNX output shapes {q_ort.shape}, {p_ort.shape} do not match torch")
    if not (dq <= atol and dp <= atol):
        raise ModelError(f"ONNX Runtime differs from torch by {max(dq, dp):.2e} > {atol:.0e}")
    return dq, dp
