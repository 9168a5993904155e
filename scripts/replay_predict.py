#!/usr/bin/env python3
"""How often the early model pass would have passed the right slices: real series replayed in InstanceNumber order.

For every series under ``--root`` (default ``../shared/data/dicom``) with at least ``--min-slices`` slices
(one per single-frame file, one time point), taken as announcing its instance count (few exports here do;
``--announced-only`` keeps those that do), the slices the complete series chooses (``select_slices``, the agent's
salient selection with saliency computed from the files) are compared with what ``select.predict`` gives when
only the first 80 / 95 / 99 % of its instances (by InstanceNumber) have arrived: how many of the finally
chosen slices that had arrived were predicted, and how many slices were predicted (the model work spent
early). A slice chosen at completion and not predicted is passed then (``loop/early.py``).

    python scripts/replay_predict.py
    python scripts/replay_predict.py --root /data/exports --min-slices 64
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mediqa.agent.dicom.decode import slice_key
from mediqa.agent.dicom.index import scan_tree
from mediqa.agent.dicom.volume import plan_series
from mediqa.agent.select.predict import likely_chosen
from mediqa.agent.select.saliency import saliency_for_layout, select_slices

FRACTIONS = (0.8, 0.95, 0.99)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "dicom")
    parser.add_argument("--min-slices", type=int, default=20, help="shorter series are left out (default 20)")
    parser.add_argument("-k", type=int, default=7, help="slices scored per series (scoring.slices, default 7)")
    parser.add_argument("--announced-only", action="store_true",
                        help="only series whose ImagesInAcquisition gives their instance count")
    args = parser.parse_args()
    totals = {f: [0, 0, 0, 0] for f in FRACTIONS}  # chosen arrived, of them predicted, predicted, series predicted
    series = 0
    for records in scan_tree(args.root).values():
        counts = {r.images_in_acquisition for r in records}
        announced = counts.pop() if len(counts) == 1 else None
        expected = len(records)
        if (args.announced_only and announced != expected) or expected < args.min_slices \
                or any(r.is_multiframe or r.mosaic_tiles for r in records):
            continue
        ordered = sorted(records, key=lambda r: r.instance_number or 0)
        try:
            full = plan_series(ordered)
        except Exception:  # noqa: BLE001 - a series the agent would report unscored: nothing to predict
            continue
        if full.n_slices != expected or full.time_points > 1:  # 4D series are not passed early
            continue
        values = saliency_for_layout(full)
        store = {slice_key(ref): float(v) for ref, v in zip(full.slices, values, strict=True)}
        final = {full.slices[i].path for i in select_slices(full, args.k, saliency=values).indices}
        series += 1
        for fraction in FRACTIONS:
            arrived = ordered[: int(fraction * expected)]
            try:
                layout = plan_series(arrived)
            except Exception:  # noqa: BLE001 - as above
                continue
            chosen = likely_chosen(layout, expected, args.k, "salient", store)
            have = final & {r.path for r in arrived}
            totals[fraction][0] += len(have)
            if chosen is None:
                continue
            predicted = {layout.slices[i].path for i in chosen}
            totals[fraction][1] += len(have & predicted)
            totals[fraction][2] += len(predicted)
            totals[fraction][3] += 1
    kind = "announcing their count" if args.announced_only else "taken as announcing their count"
    print(f"{series} series of >= {args.min_slices} slices under {args.root}, {kind}")
    for fraction, (arrived_chosen, hit, early_slices, with_prediction) in totals.items():
        share = hit / arrived_chosen if arrived_chosen else float("nan")
        print(f"at {fraction:.0%} of the count: a prediction for {with_prediction} of {series} series; {hit} of "
              f"{arrived_chosen} chosen slices that had arrived were predicted ({share:.0%}); "
              f"{early_slices} slices passed early ({early_slices / max(1, with_prediction):.1f} per series)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
