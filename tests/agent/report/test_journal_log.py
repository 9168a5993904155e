"""journald logging: a fake JOURNAL_STREAM naming a real file, a real AF_UNIX socket for the journal."""

from __future__ import annotations

import logging
import os
import socket
import struct
import sys
import tempfile
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import TextIO

import pytest

from mediqa.agent.report import journal_log as jl

pytestmark = pytest.mark.skipif(not hasattr(socket, "AF_UNIX") or sys.platform == "win32",
                                reason="journald is Linux-only")

RETAKE = {"result_id": 42, "series_key": "s-0123abcd", "decision": "retake", "score": 0.7, "modality": "CT",
          "scorer": "learned", "patient_name": "never logged"}
OK = {"id": 43, "series_key": "s-89ef", "decision": "ok", "score": 3.2, "modality": "MR", "scorer": "classical"}


@pytest.fixture(autouse=True)
def _restore_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test sets up the root logger; put it back (and close our handlers) afterwards."""
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
            h.close()
    for h in handlers:
        if h not in root.handlers:
            root.addHandler(h)
    root.setLevel(level)


@pytest.fixture
def stream(tmp_path: Path) -> Iterator[TextIO]:
    with open(tmp_path / "stderr.txt", "w+", encoding="utf-8") as f:
        yield f


def journal_env(stream: TextIO) -> dict[str, str]:
    st = os.fstat(stream.fileno())
    return {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}


@pytest.fixture
def journal_socket() -> Iterator[tuple[socket.socket, str]]:
    folder = Path(tempfile.mkdtemp(prefix="mq-jl-", dir="/tmp"))
    path = str(folder / "socket")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2.0)
    try:
        yield sock, path
    finally:
        sock.close()
        if os.path.exists(path):
            os.unlink(path)
        folder.rmdir()


def parse_entry(data: bytes) -> dict[str, str]:
    """The reverse of the native framing: KEY=value lines, and KEY\\n<u64 len><bytes>\\n."""
    out: dict[str, str] = {}
    i = 0
    while i < len(data):
        nl = data.index(b"\n", i)
        line = data[i:nl]
        if b"=" in line:
            key, _, value = line.partition(b"=")
            out[key.decode()] = value.decode()
            i = nl + 1
        else:
            (size,) = struct.unpack("<Q", data[nl + 1:nl + 9])
            out[line.decode()] = data[nl + 9:nl + 9 + size].decode()
            assert data[nl + 9 + size:nl + 10 + size] == b"\n"
            i = nl + 10 + size
    return out


def lines_of(stream: TextIO) -> list[str]:
    stream.flush()
    stream.seek(0)
    return stream.read().splitlines()


def test_stream_is_journal_matches_device_and_inode(stream: TextIO, tmp_path: Path) -> None:
    assert jl.stream_is_journal(stream, journal_env(stream))
    with open(tmp_path / "other.txt", "w", encoding="utf-8") as other:
        assert not jl.stream_is_journal(other, journal_env(stream))
    assert not jl.stream_is_journal(stream, {})
    assert not jl.stream_is_journal(stream, {"JOURNAL_STREAM": "garbage"})
    assert not jl.stream_is_journal(StringIO(), journal_env(stream))  # no file descriptor


def test_prefix_mode_gives_every_line_its_priority(stream: TextIO, tmp_path: Path) -> None:
    mode = jl.configure_service_logging(logging.DEBUG, stream=stream, environ=journal_env(stream),
                                        socket_path=str(tmp_path / "no-journal-here"))
    assert mode == "prefix"
    log = logging.getLogger("mediqa.test")
    log.debug("d")
    log.info("i")
    log.warning("w")
    log.error("e")
    log.critical("c")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("agent fault")
    jl.log_result(log, RETAKE, "   #2 HEAD CT  score 0.70  RETAKE  noise")
    jl.log_result(log, OK, "\x1b[32m   #3 T1  score 3.20  ok\x1b[0m")
    out = lines_of(stream)
    assert out[:5] == ["<7>DEBUG mediqa.test: d", "<6>INFO mediqa.test: i", "<4>WARNING mediqa.test: w",
                       "<3>ERROR mediqa.test: e", "<2>CRITICAL mediqa.test: c"]
    fault = [line for line in out if line.startswith("<3>")]
    assert any("Traceback" in line for line in fault) and any("RuntimeError: boom" in line for line in fault)
    assert all(line[:1] == "<" and line[2:3] == ">" for line in out)  # traceback lines are prefixed too
    assert out[-2] == "<4>WARNING mediqa.test:    #2 HEAD CT  score 0.70  RETAKE  noise"
    assert out[-1] == "<6>INFO mediqa.test:    #3 T1  score 3.20  ok"  # colour codes removed
    assert os.environ.get("NO_COLOR") == "1" and os.environ.get("TQDM_DISABLE") == "1"


def test_native_mode_sends_structured_fields(stream: TextIO, journal_socket: tuple[socket.socket, str]) -> None:
    sock, path = journal_socket
    assert jl.configure_service_logging(logging.INFO, stream=stream, environ=journal_env(stream),
                                        socket_path=path) == "native"
    log = logging.getLogger("mediqa.alert")
    jl.log_result(log, RETAKE, "   #2 HEAD CT  score 0.70  RETAKE  noise")
    entry = parse_entry(sock.recv(65536))
    assert entry["MESSAGE"] == "   #2 HEAD CT  score 0.70  RETAKE  noise"
    assert entry["PRIORITY"] == "4"
    assert entry["SYSLOG_IDENTIFIER"] == "mediqa"
    assert entry["LOGGER"] == "mediqa.alert"
    assert entry["MESSAGE_ID"] == jl.RETAKE_MESSAGE_ID
    assert entry["MEDIQA_RESULT_ID"] == "42"
    assert entry["MEDIQA_SERIES_KEY"] == "s-0123abcd"
    assert entry["MEDIQA_DECISION"] == "retake"
    assert entry["MEDIQA_SCORE"] == "0.70"
    assert entry["CODE_FUNC"] == "test_native_mode_sends_structured_fields"  # the caller, not log_result
    assert not any("never logged" in v for v in entry.values())  # only the listed fields travel
    jl.log_result(log, OK, "ok line")
    entry = parse_entry(sock.recv(65536))
    assert entry["PRIORITY"] == "6" and entry["MEDIQA_RESULT_ID"] == "43" and entry["MEDIQA_DECISION"] == "ok"
    assert entry["MESSAGE_ID"] == jl.RESULT_MESSAGE_ID
    log.debug("below the level")
    try:
        raise ValueError("bad")
    except ValueError:
        log.exception("fault")
    entry = parse_entry(sock.recv(65536))  # the debug record was filtered: this is the fault
    assert entry["PRIORITY"] == "3"
    assert entry["MESSAGE"].startswith("fault\nTraceback") and "ValueError: bad" in entry["MESSAGE"]
    assert lines_of(stream) == []  # nothing went to stderr


def test_native_mode_falls_back_to_prefixed_stderr(stream: TextIO, journal_socket: tuple[socket.socket, str]) -> None:
    sock, path = journal_socket
    assert jl.configure_service_logging(logging.INFO, stream=stream, environ=journal_env(stream),
                                        socket_path=path) == "native"
    sock.close()
    os.unlink(path)  # journald went away
    jl.log_result(logging.getLogger("mediqa.alert"), RETAKE, "retake line")
    assert lines_of(stream) == ["<4>WARNING mediqa.alert: retake line"]
    handler = next(h for h in logging.getLogger().handlers if isinstance(h, jl.JournalHandler))
    assert handler.failures == 1


def test_plain_mode_on_a_terminal_or_file(stream: TextIO) -> None:
    assert jl.configure_service_logging(logging.INFO, stream=stream, environ={}) == "plain"
    jl.log_result(logging.getLogger("mediqa.alert"), RETAKE, "retake line")
    (line,) = lines_of(stream)
    assert not line.startswith("<") and line.endswith("WARNING mediqa.alert: retake line")
    assert "NO_COLOR" not in os.environ


def test_configuring_twice_leaves_one_handler(stream: TextIO) -> None:
    root = logging.getLogger()
    before = len(root.handlers)
    jl.configure_service_logging(logging.INFO, stream=stream, environ={})
    jl.configure_service_logging(logging.DEBUG, stream=stream, environ=journal_env(stream), socket_path="/nonexistent")
    assert len(root.handlers) == before + 1 and root.level == logging.DEBUG
    logging.getLogger("mediqa.x").info("once")
    assert lines_of(stream) == ["<6>INFO mediqa.x: once"]


def test_field_framing_and_names() -> None:
    assert jl.encode_entry({"MESSAGE": "one line"}) == b"MESSAGE=one line\n"
    assert jl.encode_entry({"MESSAGE": "a\nb"}) == b"MESSAGE\n" + struct.pack("<Q", 3) + b"a\nb\n"
    with pytest.raises(ValueError):
        jl.encode_entry({"_PID": "1"})  # trusted fields are journald's
    with pytest.raises(ValueError):
        jl.encode_entry({"lower": "x"})
    record = logging.LogRecord("mediqa", logging.INFO, __file__, 1, "m", None, None)
    record.journal_fields = {"mediqa_series_key": "s-1", "bad-name": "x", "EMPTY": None}
    fields = jl.journal_fields(record, "m")
    assert fields["MEDIQA_SERIES_KEY"] == "s-1" and "BAD-NAME" not in fields and "EMPTY" not in fields
