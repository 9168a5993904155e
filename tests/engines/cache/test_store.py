"""Cache layout, install, and the hash check that refuses tampered plans."""

from __future__ import annotations

import json

import pytest

from mediqa.engines.cache.manifest import MANIFEST_NAME, PLAN_NAME, ManifestError
from mediqa.engines.cache.store import EngineCache
from mediqa.engines.gpu import GpuIdentity

GPU = GpuIdentity(0, "NVIDIA L4", (8, 9), 58, 22478, "cuda-python")


def test_install_then_load_round_trip(tmp_path, install_fake_engine):
    cache = EngineCache(tmp_path)
    manifest = install_fake_engine(cache, GPU, plan=b"\x00plan-bytes")
    plan, loaded = cache.load_plan(manifest.key)
    assert plan == b"\x00plan-bytes" and loaded == manifest
    raw = json.loads((cache.entry_dir(manifest.key) / MANIFEST_NAME).read_text())
    assert raw["plan"]["sha256"] == manifest.plan_sha256
    assert raw["components"]["gpu"]["compute_capability"] == [8, 9]
    assert {p.name for p in cache.entry_dir(manifest.key).iterdir()} == {PLAN_NAME, MANIFEST_NAME}


def test_tampered_plan_is_refused(tmp_path, install_fake_engine):
    cache = EngineCache(tmp_path)
    manifest = install_fake_engine(cache, GPU)
    (cache.entry_dir(manifest.key) / PLAN_NAME).write_bytes(b"EVIL")
    with pytest.raises(ManifestError, match="refusing to load"):
        cache.load_plan(manifest.key)


def test_manifest_for_another_key_is_refused(tmp_path, install_fake_engine):
    cache = EngineCache(tmp_path)
    manifest = install_fake_engine(cache, GPU)
    path = cache.entry_dir(manifest.key) / MANIFEST_NAME
    raw = json.loads(path.read_text())
    raw["key"] = "f" * 64
    path.write_text(json.dumps(raw))
    with pytest.raises(ManifestError, match="expected"):
        cache.load_plan(manifest.key)


def test_missing_or_corrupt_manifest(tmp_path, install_fake_engine):
    cache = EngineCache(tmp_path)
    manifest = install_fake_engine(cache, GPU)
    (cache.entry_dir(manifest.key) / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(ManifestError, match="unreadable"):
        cache.load_plan(manifest.key)
    [entry] = list(cache.entries())
    assert entry.manifest is None and "unreadable" in entry.problem


def test_install_refuses_a_manifest_that_does_not_describe_the_plan(tmp_path, install_fake_engine):
    cache = EngineCache(tmp_path / "a")
    manifest = install_fake_engine(cache, GPU, plan=b"one")
    with pytest.raises(ManifestError, match="does not describe"):
        EngineCache(tmp_path / "b").install(b"two", manifest)
