"""No patient names in logs: file keys, path labels, header-text cleaning and the path scrubber."""

from __future__ import annotations

import logging
import os

from mediqa.agent.report.privacy import PathLabels, PathScrubber, clean_text, file_key


def test_file_key_is_stable_pseudonymous_and_bytes_safe():
    name = "/export/DOE^JOHN_12345/IM0001"
    assert file_key(name) == file_key(name) and file_key(name).startswith("f-")
    assert "DOE" not in file_key(name)
    assert file_key(os.fsdecode(b"/export/\xff\xfe.dcm")).startswith("f-")  # not valid UTF-8: still a key


def test_labels_hide_paths_unless_the_site_asks_for_relative(tmp_path):
    path = str(tmp_path / "DOE^JOHN" / "IM1")
    assert "DOE" not in PathLabels(tmp_path).label(path)
    assert PathLabels(tmp_path, "relative").label(path) == os.path.join("DOE^JOHN", "IM1")
    assert PathLabels(tmp_path, "relative").label("/elsewhere/x").startswith("f-")  # never outside the root


def test_clean_text_removes_controls_that_forge_console_lines():
    forged = "T1 AX\x1b[2K\r FAKE OK\n#3 ok"
    cleaned = clean_text(forged)
    assert "\x1b" not in cleaned and "\r" not in cleaned and "\n" not in cleaned
    assert len(clean_text("x" * 1000)) == 200


def test_scrubber_removes_export_paths_from_messages_and_tracebacks(tmp_path, caplog):
    root = str(tmp_path / "export")
    secret = f"{root}/DOE^JOHN/IM0001"
    log = logging.getLogger("test-privacy")
    scrubber = PathScrubber([root])
    caplog.handler.addFilter(scrubber)
    try:
        log.warning("cannot read %s", secret)
        try:
            open(secret)  # noqa: SIM115 - the OS error carries the full path
        except FileNotFoundError:
            log.exception("failed")
    finally:
        caplog.handler.removeFilter(scrubber)
    text = caplog.text
    assert "DOE" not in text and "<export>/f-" in text and "FileNotFoundError" in text
