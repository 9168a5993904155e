"""Where models come from: the embedded default edge model, or a path from config."""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path

from mediqa.errors import ModelError

log = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "edge-default.onnx"


def default_model_path() -> Path:
    """The edge model shipped inside the package (agent/models/edge-default.onnx)."""
    path = Path(str(resources.files("mediqa.agent").joinpath("models").joinpath(DEFAULT_MODEL_NAME)))
    if not path.is_file():
        raise ModelError(f"the embedded default model {path} is missing",
                         "reinstall mediqa, set scoring.model to an exported .onnx, or use --scorer classical")
    return path


def resolve_model(setting: str) -> Path:
    """``"default"`` -> the embedded model; anything else is a path to an exported ONNX file."""
    if setting == "default":
        return default_model_path()
    path = Path(setting).expanduser()
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist", "check scoring.model or export one with "
                                                              "`mediqa export onnx CHECKPOINT`")
    return path
