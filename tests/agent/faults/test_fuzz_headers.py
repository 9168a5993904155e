"""Header fuzzing: 1-8 random bytes changed in the first 2 KiB of good files, seeded and reproducible.

Whatever comes of it, ``read_header`` (with the config's limits) raises only ``DicomSkip``; records
that come out survive the JSON round trip, ``plan_series`` or raise ``SeriesError``, and every way of
decoding their pixels raises at most ``SeriesError``. Warnings are errors in this suite, so a numpy
overflow or an escaped pydicom warning fails here too. A failure names its case: base file, case
number and the changed offsets (``poison.fuzz_cases`` with the same seed makes it again).

Bases: a phantom CT slice (explicit VR LE), an MR-like slice (implicit VR LE), an enhanced multi-frame
MR (functional-group sequences) and an RLE-compressed CT slice (encapsulated pixel data). About 8 ms
a case on this machine: the default run (400 cases) takes ~4 s, the ``slow`` one (4,000) ~35 s.
"""

from __future__ import annotations

import contextlib
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from poison import compressed, fuzz_cases, good_ct, good_enhanced_mr, good_mr
from pydicom.uid import RLELossless

from mediqa.agent.config import HeaderLimits
from mediqa.agent.dicom.decode import decode_downsampled, decode_downsampled_partial, decode_record_downsampled
from mediqa.agent.dicom.index import read_header
from mediqa.agent.dicom.records import InstanceRecord, record_from_json, record_to_json
from mediqa.agent.dicom.volume import plan_series
from mediqa.errors import DicomSkip, SeriesError

LIMITS = HeaderLimits()


@pytest.fixture(scope="module")
def bases(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[tuple[str, bytes]], dict[str, list[Path]]]:
    root = tmp_path_factory.mktemp("fuzz_bases")
    ct = good_ct(root / "ct")
    mr = good_mr(root / "mr")
    emr = good_enhanced_mr(root / "emr")
    rle = compressed(ct[0], root / "rle.dcm", RLELossless)
    files = {"ct": ct[1], "mr": mr[0], "emr": emr, "rle": rle}
    return [(name, path.read_bytes()) for name, path in files.items()], {"ct": ct, "mr": mr}


def _pixels_at_most_series_error(case: str, records: list[InstanceRecord], outcomes: Counter[str]) -> None:
    try:
        layout = plan_series(records)
    except SeriesError:
        outcomes["plan: SeriesError"] += 1
        return
    every = range(layout.n_slices)
    try:
        pixels = layout.read_slices(every)
        assert pixels.shape[0] == layout.n_slices, case
        outcomes["read"] += 1
    except SeriesError:
        outcomes["read: SeriesError"] += 1
    part = layout.read_partial(every)
    assert len(part.indices) + len(part.failed) == layout.n_slices, case
    images, failed = decode_downsampled_partial(layout, every, 16)
    assert len(images) == layout.n_slices, case
    try:
        decode_downsampled(layout, every, 16)
    except SeriesError:
        assert failed, case
    for record in records:
        with contextlib.suppress(SeriesError):
            decode_record_downsampled(record, 16)


def _run(bases: list[tuple[str, bytes]], good: dict[str, list[Path]], tmp_path: Path, count: int, seed: int
         ) -> Counter[str]:
    outcomes: Counter[str] = Counter()
    by_series: dict[str, list[InstanceRecord]] = defaultdict(list)
    for case, data in fuzz_cases(bases, count, seed):
        path = tmp_path / f"{case}.dcm"
        path.write_bytes(data)
        try:
            record = read_header(path, limits=LIMITS)
        except DicomSkip as skip:
            outcomes[skip.reason] += 1
            continue
        except BaseException as exc:
            raise AssertionError(f"case {case} (seed {seed}): read_header raised {type(exc).__name__}: {exc}") from exc
        outcomes["record"] += 1
        assert record_from_json(record_to_json(record)) == record, case
        try:
            _pixels_at_most_series_error(case, [record], outcomes)
        except (AssertionError, SeriesError):
            raise
        except BaseException as exc:
            raise AssertionError(f"case {case} (seed {seed}): {type(exc).__name__}: {exc}") from exc
        by_series[record.series_uid].append(record)
    # fuzzed records planned with the good slices of their series: mixed sizes, geometry, duplicates
    for base in good.values():
        for path in base:
            try:
                record = read_header(path, limits=LIMITS)
            except DicomSkip:
                continue
            by_series[record.series_uid].append(record)
    for uid, records in by_series.items():
        try:
            _pixels_at_most_series_error(f"series of {len(records)} records", records, outcomes)
        except (AssertionError, SeriesError):
            raise
        except BaseException as exc:
            raise AssertionError(f"series {uid[-12:]} (seed {seed}): {type(exc).__name__}: {exc}") from exc
    return outcomes


@pytest.mark.slow
def test_header_fuzz(bases, tmp_path):
    files, good = bases
    outcomes = _run(files, good, tmp_path, count=400, seed=20240611)
    # the fuzzer reaches every kind of outcome, or it tests less than it claims
    assert outcomes["record"] > 100 and outcomes["read"] > 50
    assert outcomes["malformed_header"] > 5 and outcomes["header_limits"] > 0 and outcomes["read: SeriesError"] > 5


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_header_fuzz_long(bases, tmp_path, seed):
    files, good = bases
    _run(files, good, tmp_path, count=1000, seed=seed)
