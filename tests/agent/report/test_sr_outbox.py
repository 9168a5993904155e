"""Results as DICOM SR: written to <state_dir>/sr/, sent to a PACS from an outbox table, exactly once.

Real peers only, on loopback, each started and stopped by its test (tests/dicom_peers.py): dcmtk's
storescu (the scanner), storescp and Orthanc (the PACS), dsrdump (an independent SR reader). The agent
is real (classical scorer); where timing matters it is stepped with a fake clock instead of run.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pydicom
import pytest
from dicom_peers import agent_config, free_port, orthanc, received_files, running_site, storescp, storescu, tool

from mediqa.agent.loop import scoring
from mediqa.agent.report.sr import sr_instance_uid
from mediqa.agent.report.sr_outbox import SR_DEFER_MAX_S, DicomOutputConfig, SrOutbox, pacs_destination
from mediqa.agent.samples import write_phantom_ct
from mediqa.agent.scoring.classical import ClassicalScorer
from mediqa.agent.service import Agent
from mediqa.errors import ConfigError, MediqaError

# pynetdicom 3.0.4 (transport.AssociationSocket.connect) calls shutdown() on the socket whose connect
# failed; that raises before close(), so the socket is closed by the garbage collector, with this warning.
UNCLOSED = "ignore:unclosed <socket.socket:ResourceWarning"


def _series(dest: Path, noise_hu: float, seed: int) -> list[Path]:
    write_phantom_ct(dest, noise_hu=noise_hu, seed=seed, slices=12, size=96)
    return sorted(dest.glob("*.dcm"))


def _wait(predicate, timeout_s: float = 30.0, what: str = "condition") -> None:
    end = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.05)


def _rows(db) -> dict[str, tuple]:
    rows = db.query("SELECT result_uuid, state, attempts, last_error FROM sr_outbox ORDER BY id")
    return {u: (s, a, e) for u, s, a, e in rows}


def _uuids(db) -> dict[str, str]:
    """Result uuid by decision."""
    return {d: u for u, d in db.query("SELECT uuid, decision FROM results WHERE origin='scored' ORDER BY id")}


def _output(port: int, **over) -> DicomOutputConfig:
    return DicomOutputConfig(**{"pacs_host": "127.0.0.1", "pacs_port": port, "pacs_ae_title": "PACS",
                                "backoff_s": 0.2, "timeout_s": 5.0, **over})


def _dsrdump(path: Path) -> str:
    run = subprocess.run([tool("dsrdump"), str(path)], capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr
    return run.stdout


class Stepped:
    """An agent on an export folder, stepped with a fake clock, its results fed to an outbox."""

    def __init__(self, tmp: Path, scorer=None) -> None:
        self.now = 1000.0
        self.export = tmp / "export"
        self.export.mkdir(exist_ok=True)
        self.state = tmp / "state"
        self.outbox: SrOutbox | None = None
        self.results: list = []
        self.agent = Agent(agent_config(self.state, watch={"file_stable_s": 0.0, "reconcile_interval_s": 0.001}),
                           scorer or ClassicalScorer(), self.export, clock=lambda: self.now, on_result=self._on_result)

    def _on_result(self, result, result_id) -> None:
        self.results.append(result)
        if self.outbox is not None:
            self.outbox.on_result(result, result_id)

    def make_outbox(self, output: DicomOutputConfig) -> SrOutbox:
        self.outbox = SrOutbox(output, self.state, db=lambda: self.agent.db,
                               records=lambda uid: self.agent.tracker.records(uid), clock=lambda: self.now)
        return self.outbox

    def score(self, seconds: float = 2.0) -> list:
        before = len(self.results)
        for _ in range(3):  # see the files, index them, score once quiet
            self.agent.step()
            self.now += seconds
        return self.results[before:]


@pytest.mark.slow
def test_srs_are_written_read_by_dsrdump_and_reach_storescp(tmp_path, clean, noisy, caplog):
    caplog.set_level(logging.DEBUG, logger="mediqa")
    with storescp(tmp_path / "pacs") as (port, received), \
            running_site(tmp_path, node={}, output=_output(port)) as site:
        for files in (clean, noisy):
            assert storescu(site.feed.address[1], files).returncode == 0
        results = site.wait_results(2)
        _wait(lambda: [s for s, _, _ in _rows(site.agent.db).values()] == ["sent", "sent"], what="both sent")
        uuids = _uuids(site.agent.db)
    assert {r.decision for r in results} == {"ok", "retake"}
    srs = sorted((site.state / "sr").glob("*.dcm"))
    assert len(srs) == 2
    dumps = {pydicom.dcmread(p).SOPInstanceUID: _dsrdump(p) for p in srs}
    assert "Retake recommended" in dumps[sr_instance_uid(uuids["retake"])]
    assert "No retake needed" in dumps[sr_instance_uid(uuids["ok"])]
    got = [pydicom.dcmread(p) for p in received_files(received)]
    assert sorted(ds.SOPInstanceUID for ds in got) == sorted(dumps)
    source = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in clean + noisy}
    for ds in got:
        assert ds.Modality == "SR" and ds.PatientName == "PHANTOM" and ds.PatientID == "PHANTOM"
        (study,) = ds.CurrentRequestedProcedureEvidenceSequence
        refs = [i.ReferencedSOPInstanceUID for s in study.ReferencedSeriesSequence for i in s.ReferencedSOPSequence]
        assert len(refs) == 12 and set(refs) <= source
        images = [i for i in _flat(ds) if i.ValueType == "IMAGE"]
        (worst,) = images
        assert worst.ReferencedSOPSequence[0].ReferencedSOPInstanceUID in refs
    assert "PHANTOM" not in caplog.text and not any(uid in caplog.text for uid in source)


def _flat(ds: pydicom.Dataset) -> list[pydicom.Dataset]:
    out = []
    for item in getattr(ds, "ContentSequence", []):
        out.append(item)
        out.extend(_flat(item))
    return out


@pytest.mark.slow
def test_orthanc_receives_the_series_and_files_its_sr_under_the_same_study(tmp_path, clean):
    with orthanc(tmp_path / "orthanc") as peer:
        with running_site(tmp_path, node={}, output=_output(peer.dicom_port, pacs_ae_title=peer.aet)) as site:
            assert storescu(peer.dicom_port, clean, "CT01", peer.aet).returncode == 0  # the scanner, to PACS
            assert storescu(site.feed.address[1], clean).returncode == 0  # and to us
            (result,) = site.wait_results(1)
            _wait(lambda: [s for s, _, _ in _rows(site.agent.db).values()] == ["sent"], what="the SR sent")
            uuid = _uuids(site.agent.db)["ok"]
        (study,) = peer.get("/studies")
        kinds, ct = {}, ""
        for sid in peer.get(f"/studies/{study}")["Series"]:
            info = peer.get(f"/series/{sid}")
            kinds[info["MainDicomTags"]["Modality"]] = len(info["Instances"])
            ct = sid if info["MainDicomTags"]["Modality"] == "CT" else ct
        assert kinds == {"CT": 12, "SR": 1}
        (sr,) = [i for i in peer.get(f"/studies/{study}/instances") if i["ParentSeries"] != ct]
        assert peer.get(f"/instances/{sr['ID']}/simplified-tags")["SOPInstanceUID"] == sr_instance_uid(uuid)
    assert result.decision == "ok"


@pytest.mark.slow
@pytest.mark.filterwarnings(UNCLOSED)
def test_a_pacs_that_is_down_keeps_the_sr_pending_then_it_is_sent_exactly_once_across_restarts(tmp_path, clean):
    port = free_port()  # nothing listens there yet
    site = Stepped(tmp_path)
    try:
        outbox = site.make_outbox(_output(port))
        for p in clean:
            (site.export / p.name).write_bytes(p.read_bytes())
        (result,) = site.score()
        outbox.run_once()
        (uuid,) = _uuids(site.agent.db).values()
        state, attempts, error = _rows(site.agent.db)[uuid]
        assert (state, attempts) == ("pending", 1) and "cannot connect" in error
        assert outbox.needs_files(result.series_uid) is False  # built: the source files may go
        site.now += 0.1
        outbox.run_once()  # not due yet (backoff 0.2 s): no second attempt
        assert _rows(site.agent.db)[uuid][1] == 1
        with storescp(tmp_path / "pacs", port=port) as (_, received):
            # a new worker (the agent restarted), in its thread, on real time
            again = SrOutbox(_output(port), site.state, db=lambda: site.agent.db,
                             records=lambda uid: site.agent.tracker.records(uid), poll_s=0.1)
            with again:
                _wait(lambda: _rows(site.agent.db)[uuid][0] == "sent", what="the SR sent")
            third = SrOutbox(_output(port), site.state, db=lambda: site.agent.db,
                             records=lambda uid: site.agent.tracker.records(uid))
            assert third.run_once() == (0, 0)
            time.sleep(0.5)  # storescp writes the file after answering
            files = received_files(received)
        assert len(files) == 1 and pydicom.dcmread(files[0]).SOPInstanceUID == sr_instance_uid(uuid)
        assert _rows(site.agent.db)[uuid][:2] == ("sent", 2)
    finally:
        site.agent.close()


@pytest.mark.filterwarnings(UNCLOSED)
def test_an_sr_is_failed_after_max_attempts_and_kept_on_disk(tmp_path, clean):
    site = Stepped(tmp_path)
    try:
        outbox = site.make_outbox(_output(free_port(), max_attempts=2))
        for p in clean:
            (site.export / p.name).write_bytes(p.read_bytes())
        site.score()
        outbox.run_once()
        site.now += 0.25
        outbox.run_once()
        ((state, attempts, error),) = _rows(site.agent.db).values()
        assert (state, attempts) == ("failed", 2) and "cannot connect" in error
        site.now += 100
        assert outbox.run_once() == (0, 0)
        assert len(list((site.state / "sr").glob("*.dcm"))) == 1
    finally:
        site.agent.close()


def test_a_superseding_result_is_a_new_sr_naming_the_one_it_replaces(tmp_path, clean):
    site = Stepped(tmp_path)
    try:
        outbox = site.make_outbox(DicomOutputConfig())  # no PACS: files only
        for p in clean:
            (site.export / p.name).write_bytes(p.read_bytes())
        (first,) = site.score()
        assert outbox.run_once() == (1, 0)
        ds = pydicom.dcmread(site.export / clean[5].name)
        ds.PixelData = bytes(len(ds.PixelData))  # new content, same instance: the series re-opens
        ds.save_as(site.export / clean[5].name, enforce_file_format=True)
        site.now += 1
        (second,) = site.score()
        assert outbox.run_once() == (1, 0)
        rows = site.agent.db.query("SELECT uuid, supersedes FROM results WHERE origin='scored' ORDER BY id")
        (old, _), (new, supersedes) = rows
        assert supersedes == old
        assert [s for s, _, _ in _rows(site.agent.db).values()] == ["local", "local"]
        srs = {pydicom.dcmread(p).SOPInstanceUID: pydicom.dcmread(p) for p in (site.state / "sr").glob("*.dcm")}
        assert set(srs) == {sr_instance_uid(old), sr_instance_uid(new)}
        (pre,) = srs[sr_instance_uid(new)].PredecessorDocumentsSequence
        assert pre.ReferencedSeriesSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == \
            sr_instance_uid(old)
        assert "PredecessorDocumentsSequence" not in srs[sr_instance_uid(old)]
        assert outbox.run_once() == (0, 0)  # nothing twice
    finally:
        site.agent.close()


class BrokenScorer(ClassicalScorer):
    def score(self, series):
        raise MediqaError("the model file is damaged", "reinstall")


def test_unscored_results_get_an_sr_skipped_and_earlier_results_do_not(tmp_path, clean, noisy):
    site = Stepped(tmp_path, scorer=BrokenScorer())
    try:
        (site.export / "a").mkdir()
        for p in clean:
            (site.export / "a" / p.name).write_bytes(p.read_bytes())
        (before,) = site.score()  # scored before any outbox existed: history, no SR
        outbox = site.make_outbox(DicomOutputConfig())
        (site.export / "b").mkdir()
        (site.export / "c").mkdir()
        for p in noisy:
            (site.export / "b" / p.name).write_bytes(p.read_bytes())
        for k, p in enumerate(_series(tmp_path / "loc", 4.0, 2)[:3]):
            ds = pydicom.dcmread(p)
            ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
            ds.save_as(site.export / "c" / f"{k}.dcm", enforce_file_format=True)
        results = site.score()
        assert sorted(r.decision for r in results) == ["skipped", "unscored"]
        assert outbox.run_once() == (1, 0)
        ((state, _, _),) = _rows(site.agent.db).values()
        (sr,) = (site.state / "sr").glob("*.dcm")
        assert state == "local" and "Not scored" in _dsrdump(sr)
        assert before.decision == "unscored"
    finally:
        site.agent.close()


def test_output_config_is_validated():
    assert pacs_destination(DicomOutputConfig()) is None
    dest = pacs_destination(DicomOutputConfig(pacs_host="10.1.2.3", pacs_ae_title="PACS"))
    assert dest is not None and (dest.port, dest.calling_ae) == (104, "MEDIQA")
    for bad in ({"pacs_host": "10.1.2.3"}, {"pacs_host": "h", "pacs_ae_title": "X" * 17},
                {"pacs_host": "h", "pacs_ae_title": "P", "pacs_port": 0}, {"max_attempts": 0}, {"backoff_s": 0},
                {"sr": False, "pacs_host": "h", "pacs_ae_title": "P"}, {"calling_ae_title": ""}):
        with pytest.raises(ConfigError):
            DicomOutputConfig(**bad)


def test_the_worker_never_blocks_on_result_and_stops_promptly(tmp_path):
    site = Stepped(tmp_path)
    try:
        outbox = site.make_outbox(DicomOutputConfig())
        outbox.start()
        t0 = time.monotonic()
        outbox.on_result(None, 0)  # type: ignore[arg-type]  # nothing stored yet: ignored, never raises
        assert time.monotonic() - t0 < 0.05
        outbox.stop()
        assert not [t for t in threading.enumerate() if t.name == "mediqa-sr-outbox"]
    finally:
        site.agent.close()


def test_a_backlog_of_reports_is_built_batch_after_batch_without_waiting(tmp_path, monkeypatch):
    """The worker built BUILD_BATCH (20) reports, then slept its poll interval (5 s) before the next 20: a
    start-up backlog's 140 reports took minutes, and the agent's memory release waited for them."""
    import mediqa.agent.report.sr_outbox as outbox_mod

    monkeypatch.setattr(outbox_mod, "BUILD_BATCH", 1)
    site = Stepped(tmp_path)
    try:
        outbox = SrOutbox(DicomOutputConfig(), site.state, db=lambda: site.agent.db,
                          records=lambda uid: site.agent.tracker.records(uid), clock=lambda: site.now, poll_s=120.0)
        site.outbox = outbox
        for k in range(3):
            (site.export / f"s{k}").mkdir()
            for p in _series(tmp_path / f"src{k}", 4.0 + 30 * k, seed=k):
                (site.export / f"s{k}" / p.name).write_bytes(p.read_bytes())
        assert len(site.score()) == 3 and outbox.pending()
        outbox.start()
        _wait(lambda: len(_rows(site.agent.db)) == 3, timeout_s=60, what="three reports, one batch each")
        _wait(lambda: not outbox.pending(), timeout_s=10, what="nothing pending")
    finally:
        if site.outbox is not None:
            site.outbox.stop()
        site.agent.close()


@pytest.mark.filterwarnings(UNCLOSED)
@pytest.mark.parametrize("pending", [False, True], ids=["written", "still-to-send"])
def test_report_files_are_deleted_after_keep_h_but_never_while_still_to_send(tmp_path, clean, pending):
    """SRs hold the patient module: kept ``keep_h`` for inspection, then deleted; the outbox row stays."""
    site = Stepped(tmp_path)
    try:
        output = _output(free_port(), backoff_s=10**6, keep_h=1.0) if pending else DicomOutputConfig(keep_h=1.0)
        outbox = site.make_outbox(output)
        for p in clean:
            (site.export / p.name).write_bytes(p.read_bytes())
        site.score()
        outbox.run_once()
        (report,) = (site.state / "sr").glob("*.dcm")
        stale = site.state / "sr" / ".crashed.dcm.part"
        stale.write_bytes(b"half")
        other = site.state / "sr" / "notes.txt"  # not the outbox's: never touched
        other.write_text("x")
        for path in (report, stale, other):
            os.utime(path, (site.now, site.now))
        site.now += 1800
        assert outbox.prune(site.agent.db, site.now) == 0  # younger than keep_h
        site.now += 2 * 3600
        assert outbox.prune(site.agent.db, site.now) == (1 if pending else 2)
        assert report.exists() == pending and not stale.exists() and other.exists()
        assert len(_rows(site.agent.db)) == 1
    finally:
        site.agent.close()


def test_keep_h_is_validated():
    with pytest.raises(ConfigError, match="keep_h"):
        DicomOutputConfig(keep_h=-1.0)


def test_reports_wait_while_the_agent_has_work_waiting_but_never_longer_than_the_bound(tmp_path, clean, noisy):
    """Building an SR costs a CPU core ~0.2 s (highdicom): during a burst or a start-up backlog that is taken
    from scoring the next series. Reports wait while the loop has files or series waiting, up to
    ``SR_DEFER_MAX_S`` after their result."""
    site = Stepped(tmp_path)
    try:
        outbox = site.make_outbox(DicomOutputConfig())
        busy = [True]
        outbox.busy = lambda: busy[0]
        (site.export / "a").mkdir()
        for p in clean:
            (site.export / "a" / p.name).write_bytes(p.read_bytes())
        assert not outbox.pending()
        assert site.score()
        assert outbox.run_once() == (0, 0)  # the loop says it has work waiting: not now
        assert outbox.pending()  # a report still to build: the agent's memory release waits for it
        site.now += SR_DEFER_MAX_S + 1
        assert outbox.run_once() == (1, 0)  # waited long enough: built all the same
        assert not outbox.pending()
        (site.export / "b").mkdir()
        for p in noisy:
            (site.export / "b" / p.name).write_bytes(p.read_bytes())
        assert site.score()
        busy[0] = False
        assert outbox.run_once() == (1, 0)  # nothing waiting: at once
    finally:
        site.agent.close()


def test_the_agent_says_when_it_has_work_waiting(tmp_path, clean, noisy, monkeypatch):
    monkeypatch.setattr(scoring, "SCORE_SLICE_S", 0.0)  # one series per pass: the other is left waiting
    site = Stepped(tmp_path)
    try:
        assert not site.agent.working
        for name, files in (("a", clean), ("b", noisy)):
            (site.export / name).mkdir()
            for p in files:
                (site.export / name / p.name).write_bytes(p.read_bytes())
        site.agent.step()  # found and indexed; quiet for now: nothing is waiting for the CPU
        assert not site.agent.working
        site.now += 60
        assert len(site.agent.step()) == 1 and site.agent.working  # both due, one scored
        assert len(site.agent.step()) == 1 and not site.agent.working
    finally:
        site.agent.close()


_AGENT_WITHOUT_HIGHDICOM = """
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from dicom_peers import agent_config
from mediqa.agent.report.sr_outbox import DicomOutputConfig, SrOutbox
from mediqa.agent.scoring.classical import ClassicalScorer
from mediqa.agent.service import Agent
state, export = Path(sys.argv[1]), Path(sys.argv[2])
now = [1000.0]
agent = Agent(agent_config(state, watch={"file_stable_s": 0.0, "reconcile_interval_s": 0.001}), ClassicalScorer(),
              export, clock=lambda: now[0])
outbox = SrOutbox(DicomOutputConfig(), state, db=lambda: agent.db, records=lambda uid: agent.tracker.records(uid),
                  clock=lambda: now[0])
agent.on_result = outbox.on_result
for _ in range(3):
    agent.step()
    now[0] += 5.0
print(outbox.run_once(), len(list((state / "sr").glob("*.dcm"))), "highdicom" in sys.modules)
agent.close()
"""


def test_reports_are_built_in_a_worker_and_highdicom_never_loads_into_the_agent(tmp_path, clean):
    """highdicom cost the agent ~62 MB resident for its whole life (252 against 170 MB idle after a backlog)."""
    export = tmp_path / "export" / "a"
    export.mkdir(parents=True)
    for p in clean:
        (export / p.name).write_bytes(p.read_bytes())
    run = subprocess.run([sys.executable, "-c", _AGENT_WITHOUT_HIGHDICOM, str(tmp_path / "state"),
                          str(tmp_path / "export"), str(Path(__file__).parents[2])],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["(1,", "0)", "1", "False"]
