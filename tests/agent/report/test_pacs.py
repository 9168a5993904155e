"""Sending SRs (and images) to a PACS: dcmtk's storescp and Orthanc as the peers, all on loopback.

Each peer is started by its test on a free port (bound to port 0 first) in a temp folder, with a
timeout on every wait, and stopped after (terminate, wait, kill): tests/dicom_peers.py.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from dicom_peers import free_port as _free_port
from dicom_peers import orthanc, storescp
from pynetdicom import AE, evt

from mediqa.agent.report.pacs import PacsDestination, PacsError, send_files, send_to, status_ok
from mediqa.agent.report.sr import build_quality_sr, write_sr
from mediqa.agent.samples import write_phantom_ct


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


@pytest.fixture(name="storescp")
def _storescp(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    with storescp(tmp_path / "received") as peer:
        yield peer


@pytest.mark.slow
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


@pytest.mark.slow
def test_a_silent_peer_times_out(sr_file):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)  # the kernel completes the connection; nobody ever answers
        t0 = time.monotonic()
        with pytest.raises(PacsError) as info:
            send_files([sr_file], "127.0.0.1", silent.getsockname()[1], "PACS", "MEDIQA", timeout_s=1)
    assert time.monotonic() - t0 < 10
    assert "no answer" in str(info.value) and "1" in str(info.value)


@pytest.mark.slow
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


@pytest.mark.slow
def test_orthanc_files_the_sr_in_the_series_study(tmp_path, series, sr_file):
    with orthanc(tmp_path) as peer:
        assert send_files([*series, sr_file], "127.0.0.1", peer.dicom_port, "ORTHANC", "MEDIQA",
                          timeout_s=20) == [0] * (len(series) + 1)
        (study,) = peer.get("/studies")
        kinds = {}
        for sid in peer.get(f"/studies/{study}")["Series"]:
            info = peer.get(f"/series/{sid}")
            assert info["ParentStudy"] == study
            kinds[info["MainDicomTags"]["Modality"]] = len(info["Instances"])
        assert kinds == {"CT": len(series), "SR": 1}
