"""The spool's byte accounting, without a DICOM peer."""

from __future__ import annotations

import threading
from pathlib import Path

from mediqa.agent.watch.spool import Spool


def test_used_bytes_never_lags_a_deleted_file(tmp_path, monkeypatch):
    """Whoever sees a spool file gone sees its bytes gone too (a CI run read used_bytes in between)."""
    spool = Spool(tmp_path / "spool", max_bytes=10**6, keep_hours=0.0)
    spool.recover()
    final = spool.root / "assoc" / "a.dcm"
    assert spool.reserve(100)
    Spool.write(final, b"x" * 100)
    spool.stored(0)
    seen: list[int] = []
    real_unlink = Path.unlink

    def unlink_then_look(self: Path, missing_ok: bool = False) -> None:
        real_unlink(self, missing_ok=missing_ok)
        reader = threading.Thread(target=lambda: seen.append(spool.used_bytes))
        reader.start()
        reader.join(0.5)  # blocks while the accounting is under way; reads at once if it is not guarded
        readers.append(reader)

    readers: list[threading.Thread] = []
    monkeypatch.setattr(Path, "unlink", unlink_then_look)
    assert spool.release(final)
    for reader in readers:
        reader.join(5)
    assert not final.exists() and seen == [0] and spool.used_bytes == 0
