"""``manifest.json`` beside each plan: what it is, how it was built, and whether it passed the gate.

A plan is executable code: the manifest's ``plan.sha256`` is the only thing that lets a plan be loaded,
and the manifest is written *after* the plan, so it doubles as the commit marker of an install.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mediqa.errors import MediqaError

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
PLAN_NAME = "engine.plan"


class ManifestError(MediqaError):
    """A manifest is missing, unreadable, or does not match its plan."""


@dataclass(frozen=True)
class Manifest:
    key: str
    components: dict[str, Any]  # model_sha256, recipe, tensorrt_version, gpu (see cache.key)
    plan_sha256: str
    plan_bytes: int
    model: dict[str, Any] = field(default_factory=dict)  # name, path, card name/version, fp16 onnx sha
    build: dict[str, Any] = field(default_factory=dict)  # time_utc, seconds, host, versions, mode
    layer_precisions: dict[str, Any] = field(default_factory=dict)
    accuracy: dict[str, Any] = field(default_factory=dict)  # the gate result (GateResult.to_dict)
    schema: int = SCHEMA_VERSION

    @property
    def gate_passed(self) -> bool:
        return bool(self.accuracy.get("passed"))

    @property
    def tensorrt_version(self) -> str:
        return str(self.components.get("tensorrt_version", "?"))

    @property
    def gpu(self) -> dict[str, Any]:
        return dict(self.components.get("gpu", {}))

    @property
    def sm(self) -> str:
        cc = self.gpu.get("compute_capability") or ["?", "?"]
        return f"sm_{cc[0]}{cc[1]}"

    def to_dict(self) -> dict[str, Any]:
        return {"schema": self.schema, "key": self.key, "components": self.components,
                "plan": {"file": PLAN_NAME, "sha256": self.plan_sha256, "bytes": self.plan_bytes},
                "model": self.model, "build": self.build, "layer_precisions": self.layer_precisions,
                "accuracy": self.accuracy}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Manifest:
        try:
            plan = raw["plan"]
            return cls(key=str(raw["key"]), components=dict(raw["components"]),
                       plan_sha256=str(plan["sha256"]), plan_bytes=int(plan["bytes"]),
                       model=dict(raw.get("model", {})), build=dict(raw.get("build", {})),
                       layer_precisions=dict(raw.get("layer_precisions", {})),
                       accuracy=dict(raw.get("accuracy", {})), schema=int(raw.get("schema", 0)))
        except (KeyError, TypeError, ValueError) as exc:
            raise ManifestError(f"manifest is missing or has a malformed field: {exc}") from None

    def with_accuracy(self, accuracy: dict[str, Any]) -> Manifest:
        return Manifest(self.key, self.components, self.plan_sha256, self.plan_bytes, self.model,
                        self.build, self.layer_precisions, accuracy, self.schema)


def read_manifest(path: Path) -> Manifest:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(f"no manifest at {path}") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ManifestError(f"manifest {path} is unreadable: {exc}") from None
    if not isinstance(raw, dict):
        raise ManifestError(f"manifest {path} is not a JSON object")
    manifest = Manifest.from_dict(raw)
    if manifest.schema != SCHEMA_VERSION:
        raise ManifestError(f"manifest {path} has schema {manifest.schema}, this agent reads {SCHEMA_VERSION}",
                            "run `mediqa engine build --force`")
    return manifest
