"""A series still arriving over an open DICOM association is not due, whatever its quiet period says."""

from __future__ import annotations

from test_reliability_support import Clock, agent, make_series


def test_a_series_in_an_open_association_waits_for_the_release(tmp_path):
    export = tmp_path / "export"
    files = make_series(export, "assoc1", slices=4)
    folder = str(files[0].parent)
    clock = Clock()
    shown: list = []
    a = agent(tmp_path / "state", export, clock, shown)
    still_open = {folder}
    a.open_folders = lambda: set(still_open)
    a.reconcile()
    for _ in range(4):
        a.step()
        clock.now += 5.0  # far past the quiet period
    assert shown == []  # the association is open: more instances may come
    still_open.clear()  # released
    a.step()
    clock.now += 1.0
    a.step()
    assert len(shown) == 1 and shown[0].n_instances == 4
