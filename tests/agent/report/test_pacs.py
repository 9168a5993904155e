"""Sending SRs (and images) to a PACS: dcmtk's storescp and Orthanc as the peers, all on loopback.

Each peer is started by its test on a free port (bound to port 0 first) in a temp folder, with a
timeout on every wait, and stopped after (terminate, wait, kill).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pynetdicom import AE, evt

from mediqa.agent.report.pacs import PacsDestination, PacsError, send_files, send_to, status_ok
from mediqa.agent.report.sr import build_quality_sr, write_sr
from mediqa.agent.samples import write_phantom_ct

START_TIMEOUT_S = 20.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], deadline_s: float = START_TIMEOUT_S) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        assert proc.poll() is None, "the peer exited at start"
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port} after {deadline_s} s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@functools.cache
def _dcmtk_path(name: str) -> str | None:
    """dcmtk's ``name`` on PATH: pynetdicom installs Python apps of the same names (storescu...) in the venv."""
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        path = shutil.which(name, path=folder) if folder else None
        if path is None:
            continue
        try:
            out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if "$dcmtk:" in out.stdout + out.stderr:
            return path
    return None


def _tool(name: str) -> str:
    path = _dcmtk_path(name)
    if path is None:
        pytest.skip(f"dcmtk's {name} not found on PATH (install the Debian package 'dcmtk')")
    return path


def _binary(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not found on PATH (install the Debian package '{package}')")
    return path


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    dest = tmp_path_factory.mktemp("phantom")
    write_phantom_ct(dest, noise_hu=4.0, seed=0, slices=12, size=128)
    return sorted(dest.glob("*.dcm"))


@pytest.fixture(scope="module")
def sr_file(series: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in series]
    result = {"series_uid": headers[0].SeriesInstanceUID, "modality": "CT", "series_number": 2, "score": 1.5,
              "decision": "retake", "reasons": ["image noise above limit"], "measures": {"noise_hu": 21.0},
              "worst_slice": {"index": 3, "position_mm": 15.0, "score": 1.0, "rank": 4}}
    sr = build_quality_sr(result, headers[0], headers[3].SOPInstanceUID,
                          [(h.SOPClassUID, h.SOPInstanceUID) for h in headers])
    return write_sr(sr, tmp_path_factory.mktemp("sr"))


@pytest.fixture
def storescp(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    binary = _tool("storescp")
    port, out = _free_port(), tmp_path / "received"
    out.mkdir()
    proc = subprocess.Popen([binary, "-aet", "PACS", "-od", str(out), "-ta", "10", "-td", "10", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_port(port, proc)
        yield port, out
    finally:
        _stop(proc)


def test_sr_reaches_storescp(storescp, sr_file):
    port, out = storescp
    statuses = send_files([sr_file], "127.0.0.1", port, "PACS", "MEDIQA", timeout_s=10)
    assert statuses == [0x0000] and all(map(status_ok, statuses))
    (got,) = list(out.iterdir())
    assert pydicom.dcmread(got).SOPInstanceUID == pydicom.dcmread(sr_file).SOPInstanceUID


def test_destination_config_and_send_to(storescp, series):
    port, _ = storescp
    dest = PacsDestination(host="127.0.0.1", port=port, called_ae="PACS", timeout_s=10)
    assert dest.calling_ae == "MEDIQA"
    assert send_to(dest, series[:2]) == [0, 0]
    for bad in ({"port": 0}, {"called_ae": "X" * 17}, {"calling_ae": ""}, {"timeout_s": 0}, {"host": ""}):
        with pytest.raises(PacsError):
            PacsDestination(**{"host": "127.0.0.1", "port": 104, "called_ae": "PACS", **bad})


# pynetdicom 3.0.4 (transport.AssociationSocket.connect) calls shutdown() on the socket whose connect
# failed; that raises before close(), so the socket is closed by the garbage collector, with this warning.
@pytest.mark.filterwarnings("ignore:unclosed <socket.socket:ResourceWarning")
def test_nothing_listening_is_a_clear_error(sr_file):
    with pytest.raises(PacsError) as info:
        send_files([sr_file], "127.0.0.1", _free_port(), "PACS", "MEDIQA", timeout_s=3)
    assert "cannot connect" in str(info.value) and info.value.remedy


def test_a_silent_peer_times_out(sr_file):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)  # the kernel completes the connection; nobody ever answers
        t0 = time.monotonic()
        with pytest.raises(PacsError) as info:
            send_files([sr_file], "127.0.0.1", silent.getsockname()[1], "PACS", "MEDIQA", timeout_s=1)
    assert time.monotonic() - t0 < 10
    assert "no answer" in str(info.value) and "1" in str(info.value)


def test_refusals_say_what_to_fix(sr_file, series):
    ae = AE("PACS")
    ae.add_supported_context("1.2.840.10008.5.1.4.1.1.2")  # CT only: no SR storage
    ae.require_calling_aet = ["KNOWN"]
    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, lambda event: 0)])
    try:
        port = server.server_address[1]
        with pytest.raises(PacsError) as info:
            send_files([sr_file], "127.0.0.1", port, "PACS", "MEDIQA", timeout_s=5)
        assert "calling AE" in str(info.value) and "MEDIQA" in (info.value.remedy or "")
        statuses = send_files([series[0], sr_file], "127.0.0.1", port, "PACS", "KNOWN", timeout_s=5)
        assert statuses == [0x0000, 0x0122]  # the SR: SOP class not supported by this peer
        assert not status_ok(0x0122) and status_ok(0xB000)
    finally:
        ae.shutdown()
    with pytest.raises(PacsError, match="cannot be read"):
        send_files([sr_file.parent / "missing.dcm"], "127.0.0.1", port, "PACS", "KNOWN", timeout_s=5)
    assert send_files([], "127.0.0.1", port, "PACS", "KNOWN", timeout_s=5) == []  # nothing: no association


def _get(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
        return json.loads(r.read())


@pytest.mark.slow
def test_orthanc_files_the_sr_in_the_series_study(tmp_path, series, sr_file):
    binary = _binary("Orthanc", "orthanc")
    dicom_port, http_port = _free_port(), _free_port()
    config = {"Name": "mediqa-test", "StorageDirectory": str(tmp_path / "storage"),
              "IndexDirectory": str(tmp_path / "index"), "DicomAet": "ORTHANC", "DicomPort": dicom_port,
              "HttpPort": http_port, "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
              "DicomCheckCalledAet": True, "Plugins": [], "StorageCompression": False, "SaveJobs": False}
    (tmp_path / "orthanc.json").write_text(json.dumps(config))
    with (tmp_path / "orthanc.log").open("wb") as logf:
        proc = subprocess.Popen([binary, str(tmp_path / "orthanc.json")], stdout=logf, stderr=subprocess.STDOUT)
        try:
            _wait_port(http_port, proc)
            _wait_port(dicom_port, proc)
            assert send_files([*series, sr_file], "127.0.0.1", dicom_port, "ORTHANC", "MEDIQA",
                              timeout_s=20) == [0] * (len(series) + 1)
            (study,) = _get(http_port, "/studies")
            kinds = {}
            for sid in _get(http_port, f"/studies/{study}")["Series"]:
                info = _get(http_port, f"/series/{sid}")
                assert info["ParentStudy"] == study
                kinds[info["MainDicomTags"]["Modality"]] = len(info["Instances"])
            assert kinds == {"CT": len(series), "SR": 1}
        finally:
            _stop(proc)
