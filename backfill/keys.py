"""What makes two backfill results the same: series UID, model file hash and the digest of the config
parts that change a score or a decision."""

from __future__ import annotations

import copyreg
import hashlib
import io
import json
import pickle
from types import MappingProxyType
from typing import Any

from mediqa.agent.config import AgentConfig
from mediqa.schema import to_plain

# Scoring settings that change how, not what, a series is scored (threads, where engines are cached).
_NOT_IN_DIGEST = ("threads", "engine_cache", "build_engines")


def config_digest(config: AgentConfig) -> str:
    """A short SHA-256 of the scoring, threshold and ingest settings (canonical JSON)."""
    scoring = {k: v for k, v in to_plain(config.scoring).items() if k not in _NOT_IN_DIGEST}
    relevant: dict[str, Any] = {"scoring": scoring, "thresholds": to_plain(config.thresholds),
                                "ingest": to_plain(config.ingest)}
    text = json.dumps(relevant, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def model_sha256(config: AgentConfig) -> str:
    """The SHA-256 of the model file the learned scorer would load ("" for the classical scorer), read by the
    driver without loading ONNX Runtime: it is part of the key a re-run compares."""
    if config.scoring.scorer != "learned":
        return ""
    from mediqa.agent.scoring.models import file_sha256, resolve_model

    return file_sha256(resolve_model(config.scoring.model))


def result_key(series_uid: str, model_sha: str, digest: str) -> tuple[str, str, str]:
    return (series_uid, model_sha or "", digest)


def config_blob(config: AgentConfig) -> bytes:
    """The loaded config, as it is, for workers (Ray actors, pool processes): a pickle whose frozen mappings
    travel as dicts and come back frozen. Only between processes of one run: never stored."""
    buf = io.BytesIO()
    pickler = pickle.Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = {**copyreg.dispatch_table, MappingProxyType: _proxy}  # this pickler only
    pickler.dump(config)
    return buf.getvalue()


def config_from_blob(blob: bytes) -> AgentConfig:
    config = pickle.loads(blob)  # written by this run's driver (config_blob), never read from disk
    if not isinstance(config, AgentConfig):
        raise TypeError(f"a backfill config blob holds {type(config).__name__}")
    return config


def _proxy(mapping: MappingProxyType[Any, Any]) -> tuple[Any, tuple[dict[Any, Any]]]:
    return frozen, (dict(mapping),)


def frozen(mapping: dict[Any, Any]) -> MappingProxyType[Any, Any]:
    """Unpickling side of ``_proxy`` (the mappingproxy type itself cannot be pickled by name)."""
    return MappingProxyType(mapping)
