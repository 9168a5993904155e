"""`mediqa engine build` with no golden set: built from the bundled samples, never from the export folder."""

from __future__ import annotations

import pytest
from contract_model import contract_model

from mediqa.cli.main import main


@pytest.mark.slow
def test_build_without_golden_uses_bundled_samples(tmp_path, capsys, caplog):
    caplog.set_level("INFO")
    model = tmp_path / "m.onnx"
    contract_model(model)
    rc = main(["engine", "build", str(model), "--cache", str(tmp_path / "cache")])
    err = capsys.readouterr().err
    assert rc == 1  # no TensorRT here: says why, after writing and checking the FP16 ONNX
    assert "FP16 ONNX was written" in err and "same decisions" in err
    assert "bundled sample series" in caplog.text
    assert list((tmp_path / "cache" / "golden").glob("*.npz"))
