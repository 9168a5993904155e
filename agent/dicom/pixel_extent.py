"""What follows a header: is the PixelData element there and complete, how much it holds, and where
uncompressed pixels start (so the decoder can read them at that offset without parsing the header again).

``pixel_extent`` reads a few bytes after ``dcmread(..., stop_before_pixels=True)`` left the file at the
PixelData tag; ``native_pixel_layout`` says whether those pixels can be read straight from the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO, Literal

from pydicom.dataset import Dataset

from mediqa.agent.dicom.values import meta, to_int
from mediqa.errors import DicomSkip

SEQ_DELIMITER_LE = bytes.fromhex("feffdde000000000")
ITEM_TAG_LE = bytes.fromhex("feff00e0")
LONG_VRS = {b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"UN", b"SQ", b"UT", b"UC", b"UR"}


@dataclass(frozen=True)
class PixelExtent:
    """What follows the header: is the PixelData element there, complete, and how much does it hold."""

    complete: bool
    present: bool = False
    length: int | None = None  # native pixel data: bytes in the element ...
    start: int | None = None  # ... and where they start in the file
    fragments: int | None = None  # encapsulated: fragments seen (counted up to the frame limit + 1)


def pixel_extent(fh: BinaryIO, ds: Dataset, size: int, max_frames: int) -> PixelExtent:
    """Whether the PixelData element that follows the header is entirely in the file, and its size.

    ``stop_before_pixels`` leaves the file positioned at the PixelData tag. Native pixel data has a
    length to check against the file size; encapsulated (compressed) data is a run of items that must
    end with the sequence delimitation item. Items are counted (8 bytes read per item, at most
    ``max_frames`` + 2 of them); past that the delimiter is looked for near the end of the file.
    """
    syntax = meta(ds, "TransferSyntaxUID")
    big = syntax == "1.2.840.10008.1.2.2"
    implicit = syntax == "1.2.840.10008.1.2"
    pos = fh.tell()
    head = fh.read(12)
    if len(head) < 8:
        return PixelExtent(complete=False)
    order: Literal["big", "little"] = "big" if big else "little"
    group, elem = int.from_bytes(head[0:2], order), int.from_bytes(head[2:4], order)
    if (group, elem) != (0x7FE0, 0x0010):
        # some other trailing element: pixels were not expected here (a smaller tag: the file goes on)
        return PixelExtent(complete=(group, elem) > (0x7FE0, 0x0010))
    if implicit:
        length, start = int.from_bytes(head[4:8], order), pos + 8
    elif head[4:6] in LONG_VRS:
        if len(head) < 12:
            return PixelExtent(complete=False, present=True)
        length, start = int.from_bytes(head[8:12], order), pos + 12
    else:
        length, start = int.from_bytes(head[6:8], order), pos + 8
    if length != 0xFFFFFFFF:
        return PixelExtent(complete=start + length <= size, present=True, length=length, start=start)
    at, items = start, 0
    while items <= max_frames + 1:
        fh.seek(at)
        item = fh.read(8)
        if len(item) < 8:
            return PixelExtent(complete=False, present=True)
        if item == SEQ_DELIMITER_LE:
            return PixelExtent(complete=True, present=True, fragments=max(items - 1, 1) if items else 0)
        if item[:4] != ITEM_TAG_LE:
            raise DicomSkip("malformed_header", "compressed pixel data is not a sequence of fragments")
        at += 8 + int.from_bytes(item[4:8], "little")
        if at > size:
            return PixelExtent(complete=False, present=True)
        items += 1
    fh.seek(max(start, size - 1024))
    return PixelExtent(complete=SEQ_DELIMITER_LE in fh.read(), present=True, fragments=items - 1)


NATIVE_LITTLE_ENDIAN = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1")  # implicit and explicit VR


def native_pixel_layout(ds: Dataset, pixels: PixelExtent, count: int) -> tuple[int, int, int, int] | None:
    """Where uncompressed monochrome pixels of 8, 16 or 32 bits start, and how to read them; else None."""
    bits, stored = to_int(ds.get("BitsAllocated")), to_int(ds.get("BitsStored"))
    representation, samples = to_int(ds.get("PixelRepresentation")), to_int(ds.get("SamplesPerPixel"))
    if (pixels.start is None or pixels.length is None or meta(ds, "TransferSyntaxUID") not in NATIVE_LITTLE_ENDIAN
            or bits not in (8, 16, 32) or samples not in (None, 1) or representation not in (0, 1)):
        return None
    stored = bits if stored is None else stored
    if not 1 <= stored <= bits or pixels.length < count * (bits // 8):
        return None
    return pixels.start, bits, stored, representation
