"""``mediqa engine`` end to end on CPU (no TensorRT here)."""

from __future__ import annotations

import sys

from mediqa.cli.main import main


def test_build_without_tensorrt_exits_1_and_says_why(tiny_onnx, golden, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    golden_path = golden.save(tmp_path / "golden.npz")
    rc = main(["engine", "build", str(tiny_onnx), "--golden", str(golden_path), "--cache", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert rc == 1
    assert "cannot build a TensorRT engine on this machine: the tensorrt package is not installed" in err
    assert "FP16 ONNX was written to" in err
    assert list((tmp_path / "c" / "fp16").glob("*.onnx"))


def test_list_and_verify_on_an_empty_cache(tmp_path, capsys, tiny_onnx, golden, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    assert main(["engine", "list", "--cache", str(tmp_path)]) == 0
    assert "0 engine(s)" in capsys.readouterr().out
    golden_path = golden.save(tmp_path / "g.npz")
    rc = main(["engine", "verify", str(tiny_onnx), "--cache", str(tmp_path), "--golden", str(golden_path)])
    captured = capsys.readouterr()
    assert rc == 1 and "cannot re-run the accuracy gate here" in captured.err


def test_bench_on_cpu(tiny_onnx, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    assert main(["engine", "bench", str(tiny_onnx), "--cache", str(tmp_path), "--slices", "3", "--runs", "2"]) == 0
    out = capsys.readouterr().out
    assert "onnxruntime-cpu fp32" in out and "ms" in out and "tensorrt (cached engine)" in out


def test_engine_help_lists_subcommands(capsys):
    assert main(["engine"]) == 0
    out = capsys.readouterr().out
    for sub in ("build", "list", "verify", "bench"):
        assert sub in out
