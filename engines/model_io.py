"""What an ONNX model expects and returns, read from the graph itself, plus its identity (sha256).

Every engine path (FP16 conversion, TensorRT build, runtime checks, the accuracy gate) is generic
over input/output names: they come from here, never from hard-coded contract names, so a retrained
model with other heads still builds and runs.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mediqa.errors import ModelError
from mediqa.model_card import SCORE_OUTPUT

logger = logging.getLogger(__name__)

Dim = int | str | None  # a fixed size, a symbolic name ("N"), or unknown


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output: name, numpy dtype and shape (symbolic dims allowed)."""

    name: str
    dtype: np.dtype
    shape: tuple[Dim, ...]

    def describe(self) -> str:
        dims = ",".join(str(d) if d is not None else "?" for d in self.shape)
        return f"{self.name} {self.dtype.name} [{dims}]"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype.name, "shape": list(self.shape)}


@dataclass(frozen=True)
class ModelInfo:
    """The parts of an ONNX model the engine code needs; cheap to pass around."""

    path: Path
    sha256: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    opset: int
    metadata: Mapping[str, str] = field(default_factory=dict)

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.inputs)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.outputs)

    @property
    def name(self) -> str:
        return self.path.stem


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Streaming sha256: models and plans can be hundreds of MB."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_model_info(path: str | Path) -> ModelInfo:
    """Read I/O specs, opset and metadata without loading external weight data."""
    import onnx
    from onnx import helper

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist", "pass the path of an exported .onnx model")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - onnx raises DecodeError / ValueError / OSError variants
        raise ModelError(f"{path} is not a readable ONNX model: {exc}") from None
    initializers = {init.name for init in model.graph.initializer}

    def spec(value: Any) -> TensorSpec:
        ttype = value.type.tensor_type
        dims: list[Dim] = []
        for d in ttype.shape.dim:
            if d.HasField("dim_value"):
                dims.append(int(d.dim_value))
            elif d.HasField("dim_param"):
                dims.append(str(d.dim_param))
            else:
                dims.append(None)
        return TensorSpec(value.name, np.dtype(helper.tensor_dtype_to_np_dtype(ttype.elem_type)), tuple(dims))

    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    info = ModelInfo(
        path=path,
        sha256=sha256_file(path),
        inputs=tuple(spec(v) for v in model.graph.input if v.name not in initializers),
        outputs=tuple(spec(v) for v in model.graph.output),
        opset=int(opset),
        metadata={p.key: p.value for p in model.metadata_props},
    )
    logger.debug("model %s: inputs %s, outputs %s", path.name,
                 [s.describe() for s in info.inputs], [s.describe() for s in info.outputs])
    return info


def score_output_name(info: ModelInfo, preferred: str = SCORE_OUTPUT) -> str:
    """The output the accuracy gate and the retake decision read: ``quality`` by contract,
    else the first output with one value per batch item."""
    if preferred in info.output_names:
        return preferred
    for out in info.outputs:
        if len(out.shape) == 1:
            return out.name
    raise ModelError(f"model {info.path.name} has no per-item score output (outputs: {info.output_names})",
                     "export the model with a 'quality' output of shape [N]")
