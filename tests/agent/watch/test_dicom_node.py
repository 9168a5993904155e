"""The agent as a DICOM node: dcmtk's echoscu / storescu (the reference peers) talk to it on loopback.

Every peer runs on 127.0.0.1 with a timeout; the node listens on port 0 (the kernel picks a free one)
and is stopped by each test, so no server or thread outlives it (conftest checks threads).
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pydicom
import pytest
from dicom_peers import tool as _tool
from pydicom.uid import (
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    MRImageStorage,
    RLELossless,
    SecondaryCaptureImageStorage,
)
from pynetdicom import AE

from mediqa.agent.samples import write_phantom_ct
from mediqa.agent.watch.dicom_node import (
    PART_SUFFIX,
    AssociationInfo,
    DicomNode,
    DicomNodeConfig,
    accepted_transfer_syntaxes,
)
from mediqa.errors import ConfigError

PEER_TIMEOUT_S = 60


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    dest = tmp_path_factory.mktemp("phantom")
    write_phantom_ct(dest, noise_hu=4.0, seed=0, slices=12, size=128)
    return sorted(dest.glob("*.dcm"))


class Recorder:
    """The node's two callbacks, recorded; ``released`` is set when an association ends."""

    def __init__(self) -> None:
        self.instances: list[tuple[str, AssociationInfo]] = []
        self.ended: list[AssociationInfo] = []
        self.released = threading.Event()
        self.lock = threading.Lock()

    def on_instance(self, path: str, info: AssociationInfo) -> None:
        with self.lock:
            self.instances.append((path, info))

    def on_released(self, info: AssociationInfo) -> None:
        with self.lock:
            self.ended.append(info)
        self.released.set()


def _node(spool: Path, rec: Recorder, **config) -> DicomNode:
    config.setdefault("listen", "127.0.0.1:0")
    return DicomNode(DicomNodeConfig(**config), spool, rec.on_instance, rec.on_released)


def _storescu(port: int, files: list[Path], aet: str = "CT01", aec: str = "MEDIQA",
              *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [_tool("storescu"), "-aet", aet, "-aec", aec, "-to", "10", "-ta", "10", "-td", "10", *extra,
           "127.0.0.1", str(port), *map(str, files)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=PEER_TIMEOUT_S)


def _spooled(spool: Path) -> list[Path]:
    return sorted(p for p in spool.rglob("*") if p.is_file())


@pytest.mark.slow
def test_echo_answers_and_spools_nothing(tmp_path):
    rec = Recorder()
    with _node(tmp_path / "spool", rec) as node:
        host, port = node.address
        assert host == "127.0.0.1" and port > 0
        r = subprocess.run([_tool("echoscu"), "-aet", "CT01", "-aec", "MEDIQA", "-to", "10", "127.0.0.1", str(port)],
                           capture_output=True, text=True, timeout=PEER_TIMEOUT_S)
        assert r.returncode == 0, r.stderr
        assert rec.released.wait(10)
    assert _spooled(tmp_path / "spool") == [] and rec.instances == []
    (info,) = rec.ended
    assert info.instances == 0 and info.calling_ae == "CT01" and info.ended == "released"


@pytest.mark.slow
def test_storescu_series_arrives_complete_once_each(tmp_path, phantom, caplog):
    caplog.set_level(logging.INFO)  # pynetdicom's own DEBUG dumps carry UIDs: it is run at WARNING
    caplog.set_level(logging.DEBUG, logger="mediqa")
    rec = Recorder()
    spool = tmp_path / "spool"
    with _node(spool, rec) as node:
        r = _storescu(node.address[1], phantom)
        assert r.returncode == 0, r.stderr
        assert rec.released.wait(10)
        assert node.used_bytes == sum(p.stat().st_size for p in _spooled(spool))
    sent = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in phantom}
    files = _spooled(spool)
    assert len(files) == len(phantom)
    got = set()
    for f in files:
        ds = pydicom.dcmread(f)  # complete: file meta, header and pixels all read back
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.pixel_array.shape == (128, 128)
        got.add(ds.SOPInstanceUID)
        assert "PHANTOM" not in str(f.relative_to(spool)) and ds.SOPInstanceUID not in str(f)
        assert f.suffix == ".dcm" and oct(f.stat().st_mode & 0o777) == "0o600"
    assert got == sent
    assert sorted(p for p, _ in rec.instances) == sorted(map(str, files))  # once each
    (info,) = rec.ended
    assert info.instances == len(phantom) and info.ended == "released" and info.folder == files[0].parent
    assert {i.assoc_id for _, i in rec.instances} == {info.assoc_id}
    assert "PHANTOM" not in caplog.text and not any(uid in caplog.text for uid in sent)


@pytest.mark.slow
def test_unknown_calling_ae_is_refused_and_logged_without_phi(tmp_path, phantom, caplog):
    caplog.set_level(logging.INFO, logger="mediqa")
    rec = Recorder()
    spool = tmp_path / "spool"
    with _node(spool, rec, allowed_calling_aes=("CT01",)) as node:
        r = _storescu(node.address[1], phantom[:2], "INTRUDER")
        assert r.returncode != 0
        assert "Calling AE Title Not Recognized" in r.stderr + r.stdout
        ok = _storescu(node.address[1], phantom[:1], "CT01")
        assert ok.returncode == 0, ok.stderr
        assert rec.released.wait(10)
    assert len(_spooled(spool)) == 1 and len(rec.instances) == 1
    refusals = [m for m in caplog.messages if "refused" in m]
    assert len(refusals) == 1 and "calling AE" in refusals[0] and "PHANTOM" not in caplog.text


@pytest.mark.slow
def test_address_outside_the_allow_list_is_refused(tmp_path, phantom):
    rec = Recorder()
    with _node(tmp_path / "spool", rec, allowed_addresses=("10.0.0.0/8", "192.168.1.7")) as node:
        r = _storescu(node.address[1], phantom[:1])
        assert r.returncode != 0
    assert _spooled(tmp_path / "spool") == [] and rec.instances == []
    with _node(tmp_path / "spool", rec, allowed_addresses=("127.0.0.0/8",)) as node:
        assert _storescu(node.address[1], phantom[:1]).returncode == 0


@pytest.mark.slow
def test_beyond_max_associations_is_refused_transiently(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="mediqa")
    rec = Recorder()
    with _node(tmp_path / "spool", rec, max_associations=1) as node:
        ae = AE("HOLDER")
        ae.add_requested_context("1.2.840.10008.1.1")
        held = ae.associate("127.0.0.1", node.address[1], ae_title="MEDIQA")
        try:
            assert held.is_established
            r = subprocess.run([_tool("echoscu"), "-aet", "CT01", "-aec", "MEDIQA", "-to", "10", "127.0.0.1",
                                str(node.address[1])], capture_output=True, text=True, timeout=PEER_TIMEOUT_S)
            assert r.returncode != 0 and "Transient" in r.stderr + r.stdout
        finally:
            held.release()
    assert [m for m in caplog.messages if "refused" in m and "CT01" in m]


@pytest.mark.slow
def test_full_spool_is_out_of_resources_and_nothing_half_written(tmp_path, phantom):
    rec = Recorder()
    spool = tmp_path / "spool"
    one = phantom[0].stat().st_size
    with _node(spool, rec, max_spool_bytes=int(one * 2.5)) as node:
        r = _storescu(node.address[1], phantom)
        assert r.returncode != 0  # storescu stops at the first refusal
        assert rec.released.wait(10)
        # the exact status, seen by a plain SCU
        ae = AE("CT01")
        ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
        assoc = ae.associate("127.0.0.1", node.address[1], ae_title="MEDIQA")
        assert assoc.is_established
        status = assoc.send_c_store(pydicom.dcmread(phantom[5]))
        assoc.release()
        assert status.Status == 0xA700
    files = _spooled(spool)
    assert len(files) == 2 and len(rec.instances) == 2
    assert all(f.name.endswith(".dcm") and not f.name.startswith(".") for f in files)
    for f in files:
        pydicom.dcmread(f).pixel_array  # noqa: B018 (complete)


@pytest.mark.slow
def test_leftover_part_files_are_removed_at_start_and_kept_files_counted(tmp_path):
    spool = tmp_path / "spool"
    (spool / "20240101T000000-abcd1234").mkdir(parents=True)
    kept = spool / "20240101T000000-abcd1234" / "0f00.dcm"
    kept.write_bytes(b"x" * 100)
    part = spool / "20240101T000000-abcd1234" / f".1234{PART_SUFFIX}"
    part.write_bytes(b"half")
    (spool / "20240101T000001-ffff0000").mkdir()  # an empty association folder from a crash
    (spool / "20240101T000001-ffff0000" / f".ab{PART_SUFFIX}").write_bytes(b"half")
    rec = Recorder()
    with _node(spool, rec) as node:
        assert node.used_bytes == 100
    assert _spooled(spool) == [kept]
    assert not (spool / "20240101T000001-ffff0000").exists()


KILL_CHILD = r"""
import os, signal, sys, time
from pathlib import Path
from mediqa.agent.watch import dicom_node
from mediqa.agent.watch.dicom_node import DicomNode, DicomNodeConfig

def die(fd):  # the bytes are in the temp file, not yet synced nor renamed: a kill -9 lands here
    os.kill(os.getpid(), signal.SIGKILL)

dicom_node.os.fsync = die
node = DicomNode(DicomNodeConfig(listen="127.0.0.1:0"), Path(sys.argv[1]), lambda p, i: None, lambda i: None)
node.start()
print(node.address[1], flush=True)
time.sleep(30)
"""


@pytest.mark.slow
def test_kill_9_while_receiving_leaves_no_file_under_a_final_name(tmp_path, phantom):
    spool = tmp_path / "spool"
    child = subprocess.Popen([sys.executable, "-c", KILL_CHILD, str(spool)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        r = _storescu(port, phantom[:3])
        assert r.returncode != 0
        assert child.wait(timeout=20) == -9
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)
        if child.stdout is not None:
            child.stdout.close()
    left = _spooled(spool)
    assert left and all(f.name.startswith(".") and f.name.endswith(PART_SUFFIX) for f in left)
    rec = Recorder()
    with _node(spool, rec):
        pass
    assert _spooled(spool) == []


@pytest.mark.slow
def test_only_ct_and_mr_storage_is_negotiated(tmp_path):
    rec = Recorder()
    with _node(tmp_path / "spool", rec) as node:
        ae = AE("CT01")
        for cls in (CTImageStorage, MRImageStorage, SecondaryCaptureImageStorage):
            ae.add_requested_context(cls, ExplicitVRLittleEndian)
        for ts in (ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, JPEGLosslessSV1, JPEGLSLossless,
                   JPEG2000Lossless, RLELossless):
            ae.add_requested_context(CTImageStorage, ts)
        assoc = ae.associate("127.0.0.1", node.address[1], ae_title="MEDIQA")
        try:
            accepted = {(str(c.abstract_syntax), str(c.transfer_syntax[0])) for c in assoc.accepted_contexts}
        finally:
            assoc.release()
    assert (str(SecondaryCaptureImageStorage), str(ExplicitVRLittleEndian)) not in accepted
    assert (str(MRImageStorage), str(ExplicitVRLittleEndian)) in accepted
    assert {ts for cls, ts in accepted if cls == str(CTImageStorage)} == {
        str(t) for t in (ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian,
                         JPEGLosslessSV1, JPEGLSLossless, JPEG2000Lossless, RLELossless)}
    assert str(RLELossless) in map(str, accepted_transfer_syntaxes())


@pytest.mark.slow
def test_rle_compressed_file_arrives_bit_exact(tmp_path, phantom):
    ds = pydicom.dcmread(phantom[0])
    ds.compress(RLELossless)
    src = tmp_path / "rle.dcm"
    ds.save_as(src, enforce_file_format=True)
    rec = Recorder()
    with _node(tmp_path / "spool", rec) as node:
        assert _storescu(node.address[1], [src], "CT01", "MEDIQA", "-xr").returncode == 0
        assert rec.released.wait(10)
    (path, _), = rec.instances
    got = pydicom.dcmread(path)
    assert got.file_meta.TransferSyntaxUID == RLELossless
    assert (got.pixel_array == pydicom.dcmread(phantom[0]).pixel_array).all()


@pytest.mark.slow
def test_release_and_prune(tmp_path, phantom):
    spool = tmp_path / "spool"
    rec = Recorder()
    with _node(spool, rec, keep_hours=0.0) as node:
        assert _storescu(node.address[1], phantom[:2]).returncode == 0
        assert rec.released.wait(10)
        (a, _), (b, _) = rec.instances
        assert node.release(a) is True and not os.path.exists(a)
        assert node.release(a) is False  # already gone
        with pytest.raises(ValueError):
            node.release(str(tmp_path / "elsewhere.dcm"))
        assert node.used_bytes == os.path.getsize(b)
        assert node.prune(time.time() + 10 * 86400) == 0  # keep_hours 0: only release deletes
    rec = Recorder()
    with _node(spool, rec, keep_hours=1.0) as node:
        assert node.release(b) is False and os.path.exists(b)  # kept for the inspection window
        assert node.prune(time.time()) == 0
        assert node.prune(time.time() + 3601) == 1
        assert node.used_bytes == 0
    assert _spooled(spool) == [] and list(spool.iterdir()) == []  # the empty association folder went too


@pytest.mark.slow
def test_stop_aborts_an_open_association_and_joins_its_threads(tmp_path, phantom):
    rec = Recorder()
    node = _node(tmp_path / "spool", rec)
    node.start()
    ae = AE("CT01")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", node.address[1], ae_title="MEDIQA")
    try:
        assert assoc.is_established
        assert assoc.send_c_store(pydicom.dcmread(phantom[0])).Status == 0
        t0 = time.monotonic()
        node.stop()
        assert time.monotonic() - t0 < 5
        assoc.join(10)
        assert assoc.is_aborted and not assoc.is_alive()
    finally:
        if assoc.is_established:
            assoc.abort()
    (info,) = rec.ended
    assert info.ended == "aborted" and info.instances == 1 and len(_spooled(tmp_path / "spool")) == 1
    node.stop()  # idempotent


@pytest.mark.slow
def test_ipv6_loopback(tmp_path):
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    rec = Recorder()
    with _node(tmp_path / "spool", rec, listen="[::1]:0", allowed_addresses=("::1",)) as node:
        ae = AE("CT01")
        ae.add_requested_context("1.2.840.10008.1.1")
        assoc = ae.associate("::1", node.address[1], ae_title="MEDIQA")
        assert assoc.is_established and assoc.send_c_echo().Status == 0
        assoc.release()
        assert rec.released.wait(10)
    assert rec.ended[0].address == "::1"


def test_off_disables_and_config_is_validated(tmp_path):
    rec = Recorder()
    node = _node(tmp_path / "spool", rec, listen="off")
    node.start()
    assert node.address is None
    node.stop()
    assert DicomNodeConfig().listen == "127.0.0.1:11112" and DicomNodeConfig().ae_title == "MEDIQA"
    assert DicomNodeConfig(listen="[::1]:104").endpoint == ("::1", 104)
    for bad in ({"listen": "127.0.0.1"}, {"listen": "host:99999"}, {"ae_title": "A" * 17},
                {"ae_title": " "}, {"allowed_calling_aes": ("OK", "B\\AD")}, {"allowed_addresses": ("10.0.0.300",)},
                {"max_associations": 0}, {"max_pdu_size": 0}, {"max_pdu_size": 2**30}, {"max_spool_bytes": 0},
                {"keep_hours": -1.0}):
        with pytest.raises(ConfigError):
            DicomNodeConfig(**bad)
