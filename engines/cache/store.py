"""The engine cache on disk: one folder per key holding ``engine.plan`` + ``manifest.json``.

Layout::

    <cache>/.lock                         exclusive lock held by writers
    <cache>/entries/<key[:24]>/engine.plan
    <cache>/entries/<key[:24]>/manifest.json
    <cache>/fp16/<model_sha[:16]>.fp16.onnx  the mixed-precision ONNX the strongly typed build parses
    <cache>/timing/<trt>-<sm>-<gpu>.cache  TensorRT timing cache, reused across builds on this GPU model

Loading reads the plan bytes once, hashes *those* bytes and compares with the manifest before handing
them on: no window in which a swapped file could be deserialized.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mediqa.engines.cache.files import FileLock
from mediqa.engines.cache.manifest import MANIFEST_NAME, PLAN_NAME, Manifest, ManifestError, read_manifest
from mediqa.engines.files import atomic_write_bytes, atomic_write_json
from mediqa.engines.model_io import sha256_bytes

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CacheEntry:
    directory: Path
    manifest: Manifest | None
    problem: str | None = None  # why the entry is unusable (unreadable manifest ...)


class EngineCache:
    def __init__(self, root: str | Path, lock_timeout_s: float = 600.0) -> None:
        self.root = Path(root).expanduser()
        self.lock_timeout_s = lock_timeout_s

    def lock(self) -> FileLock:
        return FileLock(self.root / ".lock", timeout_s=self.lock_timeout_s)

    def entry_dir(self, key: str) -> Path:
        return self.root / "entries" / key[:24]

    def fp16_path(self, model_sha256: str) -> Path:
        return self.root / "fp16" / f"{model_sha256[:16]}.fp16.onnx"

    def timing_cache_path(self, tensorrt_version: str, sm: str, gpu_name: str) -> Path:
        slug = re.sub(r"[^A-Za-z0-9]+", "-", gpu_name).strip("-").lower() or "gpu"
        return self.root / "timing" / f"trt{tensorrt_version}-{sm}-{slug}.cache"

    def install(self, plan: bytes, manifest: Manifest) -> Path:
        """Write plan then manifest, each atomically; the caller holds :meth:`lock`."""
        if sha256_bytes(plan) != manifest.plan_sha256 or len(plan) != manifest.plan_bytes:
            raise ManifestError("refusing to install: the manifest does not describe this plan")
        directory = self.entry_dir(manifest.key)
        atomic_write_bytes(directory / PLAN_NAME, plan)
        atomic_write_json(directory / MANIFEST_NAME, manifest.to_dict())
        logger.info("installed engine %s (%d bytes) in %s", manifest.key[:12], len(plan), directory)
        return directory

    def update_manifest(self, manifest: Manifest) -> None:
        """Rewrite a manifest (e.g. after ``verify``); the caller holds :meth:`lock`."""
        atomic_write_json(self.entry_dir(manifest.key) / MANIFEST_NAME, manifest.to_dict())

    def manifest(self, key: str) -> Manifest | None:
        path = self.entry_dir(key) / MANIFEST_NAME
        return read_manifest(path) if path.exists() else None

    def load_plan(self, key: str) -> tuple[bytes, Manifest]:
        """Plan bytes whose sha256 matches the manifest; ManifestError otherwise (never a silent load)."""
        directory = self.entry_dir(key)
        manifest = read_manifest(directory / MANIFEST_NAME)
        if manifest.key != key:
            raise ManifestError(f"manifest in {directory} is for key {manifest.key[:12]}, expected {key[:12]}")
        try:
            plan = (directory / PLAN_NAME).read_bytes()
        except OSError as exc:
            raise ManifestError(f"plan in {directory} is unreadable: {exc}") from None
        actual = sha256_bytes(plan)
        if actual != manifest.plan_sha256:
            raise ManifestError(
                f"plan {directory / PLAN_NAME} has sha256 {actual[:12]}, its manifest says "
                f"{manifest.plan_sha256[:12]}: refusing to load it (a plan is executable code)",
                "delete that folder and run `mediqa engine build --force`",
            )
        return plan, manifest

    def entries(self) -> Iterator[CacheEntry]:
        base = self.root / "entries"
        if not base.is_dir():
            return
        for directory in sorted(p for p in base.iterdir() if p.is_dir()):
            try:
                yield CacheEntry(directory, read_manifest(directory / MANIFEST_NAME))
            except ManifestError as exc:
                yield CacheEntry(directory, None, str(exc))

    def entries_for_model(self, model_sha256: str) -> list[Manifest]:
        return [e.manifest for e in self.entries()
                if e.manifest and e.manifest.components.get("model_sha256") == model_sha256]
