"""Where models come from: the embedded default edge model, or a path from config. Reads the model card."""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path

from mediqa.agent.errors import ModelError
from mediqa.agent.scoring.model_card import METADATA_KEY, ModelCard

log = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "edge-default.onnx"


def default_model_path() -> Path:
    """The edge model shipped inside the package (agent/models/edge-default.onnx)."""
    path = Path(str(resources.files("mediqa.agent").joinpath("models", DEFAULT_MODEL_NAME)))
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


def read_card(model_path: Path) -> ModelCard:
    """The model card from the ONNX metadata (the JSON file beside it is only a human-readable copy)."""
    import onnx

    try:
        model = onnx.load(str(model_path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - any parse failure means the same thing to the user
        raise ModelError(f"{model_path} is not a readable ONNX model ({type(exc).__name__})") from None
    meta = {p.key: p.value for p in model.metadata_props}
    if METADATA_KEY not in meta:
        raise ModelError(f"{model_path} has no MedIQA model card in its metadata",
                         "export it with `mediqa export onnx CHECKPOINT`")
    return ModelCard.from_json(meta[METADATA_KEY])
