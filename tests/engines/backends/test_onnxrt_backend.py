"""ONNX Runtime backends and the base class's feed checks."""

from __future__ import annotations

import numpy as np
import pytest

from mediqa.engines.backends.onnxrt import OrtBackend
from mediqa.errors import ModelError, Skip


def test_cpu_backend_runs_and_reports_specs(tiny_onnx, golden):
    with OrtBackend(tiny_onnx, threads=1) as backend:
        assert set(backend.input_specs) == {"image", "prompt"}
        assert backend.output_names == ("quality", "physics")
        out = backend.infer(golden.cases[0].inputs)
    assert out["quality"].shape == (6,) and out["physics"].shape == (6, 2)
    assert not backend.loaded


@pytest.mark.parametrize(("feed_change", "message"), [
    (lambda f: f.pop("prompt"), "model inputs are"),
    (lambda f: f.__setitem__("image", f["image"].astype(np.float64)), "must be float32"),
    (lambda f: f.__setitem__("image", f["image"][:, :2]), "axis 1 must be 3"),
    (lambda f: f.__setitem__("prompt", f["prompt"][:2]), "disagree on the batch"),
    (lambda f: f.__setitem__("image", f["image"][0]), "must have shape"),
])
def test_feed_checks(tiny_onnx, golden, feed_change, message):
    feed = dict(golden.cases[0].inputs)
    feed_change(feed)
    with OrtBackend(tiny_onnx) as backend, pytest.raises(ModelError, match=message):
        backend.infer(feed)


def test_infer_before_load_is_a_bug(tiny_onnx, golden):
    with pytest.raises(RuntimeError, match="before load"):
        OrtBackend(tiny_onnx).infer(golden.cases[0].inputs)


def test_cuda_backend_refuses_without_cuda_provider(tiny_onnx):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("onnxruntime-gpu is installed here")
    with pytest.raises(Skip, match="no CUDAExecutionProvider") as info:
        OrtBackend(tiny_onnx, "cuda").load()
    assert info.value.kind == "package"


def test_unloadable_model_is_a_load_skip(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(Skip) as info:
        OrtBackend(bad).load()
    assert info.value.kind == "load"


def test_contended_cpu_runs_on_a_one_thread_session_with_the_same_outputs(tiny_onnx, golden):
    feed = golden.cases[0].inputs
    with OrtBackend(tiny_onnx, threads=2) as backend:
        wide = backend.infer(feed)
        backend.set_contended(True)
        assert backend.threads_in_use == 1
        assert backend.wait_spare(30)  # made beside the series (next test)
        narrow = backend.infer(feed)
        assert backend._narrow is not None and backend._narrow is not backend._session
        for name in wide:
            np.testing.assert_allclose(wide[name], narrow[name], rtol=1e-5, atol=1e-6)  # sums split differently
        backend.set_contended(False)
        assert backend.threads_in_use == 2
        backend.release_spare()
        assert backend._narrow is None
        backend.infer(feed)
        assert backend._narrow is None  # uncontended: the spare is not made again


def test_one_thread_backend_has_nothing_to_narrow(tiny_onnx, golden):
    with OrtBackend(tiny_onnx, threads=1) as backend:
        backend.set_contended(True)
        backend.infer(golden.cases[0].inputs)
        assert backend.threads_in_use == 1 and backend._narrow is None


def test_a_contended_series_does_not_wait_for_the_one_thread_session(tiny_onnx, golden, monkeypatch):
    """Making the spare session takes about a second on two busy cores: the series that first finds the
    cores busy runs on the wide session meanwhile, and the spare is made beside it."""
    import threading

    import onnxruntime

    release = threading.Event()
    real = onnxruntime.InferenceSession

    def slow_when_narrow(path, sess_options=None, providers=None):
        if sess_options is not None and sess_options.intra_op_num_threads == 1:
            release.wait(30)
        return real(path, sess_options=sess_options, providers=providers)

    feed = golden.cases[0].inputs
    with OrtBackend(tiny_onnx, threads=2) as backend:
        wide = backend.infer(feed)
        monkeypatch.setattr(onnxruntime, "InferenceSession", slow_when_narrow)
        backend.set_contended(True)
        done: list[dict[str, np.ndarray]] = []
        runner = threading.Thread(target=lambda: done.append(backend.infer(feed)), daemon=True)
        runner.start()
        runner.join(10)
        release.set()
        assert done, "infer waited for the one-thread session to be made"
        for name in wide:
            np.testing.assert_array_equal(wide[name], done[0][name])  # the wide session answered
        assert backend.wait_spare(10)
        narrow = backend.infer(feed)
        assert backend._narrow is not None
        for name in wide:
            np.testing.assert_allclose(wide[name], narrow[name], rtol=1e-5, atol=1e-6)
        backend.release_spare()
        assert backend._narrow is None


def test_a_spare_made_ahead_is_used_once_the_cores_are_busy(tiny_onnx, golden):
    feed = golden.cases[0].inputs
    with OrtBackend(tiny_onnx, threads=2) as backend:
        backend.prepare_spare()
        assert backend.wait_spare(30) and backend.threads_in_use == 2  # made, not yet used
        spare = backend._narrow
        backend.set_contended(True)
        backend.infer(feed)
        assert backend._narrow is spare  # used as it was, not made again
    assert backend._narrow is None  # closed with the backend


def test_one_thread_and_unloaded_backends_make_no_spare(tiny_onnx):
    backend = OrtBackend(tiny_onnx, threads=2)
    backend.prepare_spare()  # not loaded: nothing to copy the options of
    assert backend._spare_made is None
    with OrtBackend(tiny_onnx, threads=1) as single:
        single.prepare_spare()
        assert single._spare_made is None and single._narrow is None
