"""Vendor attributes read from private tags (GE's b-value and image type) and the tile count a mosaic announces.

Each is read only under its vendor's own private creator: the same tag numbers mean other things elsewhere.
"""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.tag import Tag

from mediqa.agent.dicom.mosaic import SIEMENS_MOSAIC_TILES, UIH_SLICES
from mediqa.agent.dicom.values import first_float, item_attr, to_int

GE_B_VALUE = Tag(0x0043, 0x1039)  # GEMS_PARM_01 "Slop_int_6..9": the first value is the b-value
_GE_B_OFFSET = 1_000_000_000  # some GE releases add 1e9 to the b-value (dcm2niix subtracts it too)


def ge_b_value(ds: Dataset) -> float | None:
    """GE keeps the b-value of older DWI/DTI in a private tag, not in DiffusionBValue (a GE DTI was typed
    EPI without it). Only read under GE's own private creator; an unphysical value is no value."""
    if "GE" not in str(ds.get("Manufacturer", "")).upper() or GE_B_VALUE not in ds:
        return None
    creator = ds.get((0x0043, 0x0010))
    if creator is None or str(creator.value).strip() != "GEMS_PARM_01":
        return None
    b = first_float(ds[GE_B_VALUE].value)
    if b is not None and b >= _GE_B_OFFSET:
        b -= _GE_B_OFFSET
    return b if b is not None and 0.0 <= b <= 100_000.0 else None


GE_COMPLEX = Tag(0x0043, 0x102F)  # GEMS_PARM_01 image type: 0 magnitude, 1 phase, 2 real, 3 imaginary
_GE_COMPLEX_NAMES = {0: "MAGNITUDE", 1: "PHASE", 2: "REAL", 3: "IMAGINARY"}


def complex_component(ds: Dataset, shared: Dataset | None, first_frame: Dataset | None) -> str:
    """Magnitude or phase: ComplexImageComponent (enhanced MR: in the frame type), else GE's private image type.

    GE types its phase images ORIGINAL\\PRIMARY\\OTHER like magnitude ones: only this tag tells them apart.
    """
    value = ds.get("ComplexImageComponent") or item_attr(first_frame, "MRImageFrameTypeSequence",
                                                          "ComplexImageComponent") or item_attr(
        shared, "MRImageFrameTypeSequence", "ComplexImageComponent")
    if value:
        return str(value).upper()
    if "GE" in str(ds.get("Manufacturer", "")).upper() and GE_COMPLEX in ds:
        creator = ds.get((0x0043, 0x0010))
        if creator is not None and str(creator.value).strip() == "GEMS_PARM_01":
            return _GE_COMPLEX_NAMES.get(to_int(ds[GE_COMPLEX].value) or 0, "")
    return ""


def announced_tiles(ds: Dataset) -> int:
    """The tile count a mosaic header announces (Siemens or UIH), 0 when none: to name a mosaic that cannot fit."""
    for tag in (SIEMENS_MOSAIC_TILES, UIH_SLICES):
        if tag in ds:
            value = ds[tag].value
            if isinstance(value, (bytes, bytearray)):
                return int.from_bytes(bytes(value[:2]), "little") if len(value) >= 2 else 0
            return to_int(value) or 0
    return 0
