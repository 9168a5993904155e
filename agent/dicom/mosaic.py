"""Mosaics: many slices tiled into one image (Siemens MOSAIC, UIH VFRAME/"GRID"), cut with real positions.

Header-only, like the rest of the reader: how many tiles, how the grid is laid out, and where each tile
sits in patient space (its top-left voxel), so the planner orders and reports mosaic slices in mm.

- **Siemens MOSAIC** (ImageType MOSAIC). The tile count is NumberOfImagesInMosaic (0019,100A), else the
  same name in the CSA image header (0029,1010), else ``sSliceArray.lSize`` of the CSA series header's
  ASCCONV protocol, else (older systems that write none of these) inferred from AcquisitionMatrix and
  the image size: a grid of square tiles of the acquired matrix (trailing tiles may then be blank).
  The grid is ceil(sqrt(n)) tiles per side. Siemens writes ImagePositionPatient for the top-left corner
  of the whole mosaic as if it were one slice; the standard correction (nibabel's MosaicWrapper,
  dcm2niix) moves it to the first tile by half the difference between mosaic and tile size along the
  row and column directions. Tile k lies k x SpacingBetweenSlices (else SliceThickness) along the CSA
  SliceNormalVector (else the normal of ImageOrientationPatient). On the shared mosaics (dcm_qa_ts,
  dcm_qa axasc36, dcm_qa_decubitus DWI) the tile centres so computed match the ASCCONV slice centres
  to 2e-5 mm (``tests/agent/dicom/test_mosaic.py``).
- **UIH VFRAME** (ImageType VFRAME, United Imaging's "GRID" format, dcm2niix UIH/README): the slice
  count is MRNumberOfSliceInVolume (0065,1050); the grid is ceil(sqrt(n)) tiles wide and
  ceil(n / width) tall (not square); MRVFrameSequence (0065,1051) gives each tile's ImagePositionPatient.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from mediqa.agent.dicom.values import first_float as _float
from mediqa.agent.dicom.values import value_list as _list

SIEMENS_MOSAIC_TILES = Tag(0x0019, 0x100A)
CSA_IMAGE, CSA_SERIES = Tag(0x0029, 0x1010), Tag(0x0029, 0x1020)
UIH_SLICES, UIH_VFRAMES = Tag(0x0065, 0x1050), Tag(0x0065, 0x1051)
MAX_TILES = 1024  # a mosaic of more slices than this is no scanner's
_CSA_MAX_TAGS = 1000
_LSIZE = re.compile(rb"sSliceArray\.lSize\s*=\s*(\d+)")

Vec3 = tuple[float, float, float]


@dataclass(frozen=True)
class Mosaic:
    """How one mosaic image is cut: ``tiles`` slices on a ``grid`` (rows, columns) of tiles, and where each
    tile's top-left voxel sits (patient mm; empty when the header has no geometry). ``note`` says what was
    inferred."""

    tiles: int
    grid: tuple[int, int]
    positions: tuple[Vec3, ...] = ()
    note: str = ""


def read_csa(data: bytes) -> dict[str, list[str]]:
    """The values of a Siemens CSA header (CSA1 or CSA2 "SV10"), by element name, as text.

    Bounded: a damaged header gives what was read up to the damage, never an exception.
    """
    out: dict[str, list[str]] = {}
    try:
        csa2 = data[:4] == b"SV10"
        pos = 8 if csa2 else 0
        n_tags, _ = struct.unpack_from("<2I", data, pos)
        pos += 8
        if not 0 < n_tags <= _CSA_MAX_TAGS:
            return out
        first_items = 0
        for index in range(n_tags):
            name_raw, _vm, _vr, _dt, n_items, _ = struct.unpack_from("<64si4s3i", data, pos)
            pos += 84
            if index == 1:
                first_items = n_items  # CSA1 item lengths are offset by the second tag's item count
            if not 0 <= n_items <= _CSA_MAX_TAGS:
                return out
            values = []
            for _item in range(n_items):
                x0, x1, _x2, _x3 = struct.unpack_from("<4i", data, pos)
                pos += 16
                length = x1 if csa2 else x0 - first_items
                if length < 0 or pos + length > len(data):
                    break
                text = data[pos:pos + length].split(b"\0", 1)[0].decode("latin-1").strip()
                if text:
                    values.append(text)
                pos += length + (-length % 4)
            out[name_raw.split(b"\0", 1)[0].decode("latin-1")] = values
    except struct.error:
        return out
    return out


def describe_mosaic(ds: Dataset, image_type: Sequence[str], rows: int, columns: int) -> Mosaic | None:
    """The mosaic layout of this image, or None when it is not a mosaic (or one that cannot be cut)."""
    types = set(image_type)
    if "VFRAME" in types and UIH_SLICES in ds:
        return _uih(ds, rows, columns)
    if "MOSAIC" in types:
        return _siemens(ds, rows, columns)
    return None


def _siemens(ds: Dataset, rows: int, columns: int) -> Mosaic | None:
    csa = read_csa(_bytes(ds.get(CSA_IMAGE)))
    note = ""
    n = _count(ds.get(SIEMENS_MOSAIC_TILES)) or _int(_first(csa.get("NumberOfImagesInMosaic")))
    if n is None:
        match = _LSIZE.search(_bytes(ds.get(CSA_SERIES)))
        n = int(match.group(1)) if match else None
    if n is None:
        side = _inferred_side(ds, rows, columns)
        if side is None:
            return None
        n, note = side * side, "mosaic tile count inferred from AcquisitionMatrix (trailing tiles may be blank)"
    if n == 1:
        return Mosaic(1, (1, 1))  # one slice: the image itself
    if not 1 < n <= MAX_TILES:
        return None
    per_side = math.ceil(math.sqrt(n))
    if per_side > min(rows, columns):
        return None
    tile_rows, tile_cols = rows // per_side, columns // per_side
    geometry = _geometry(ds)
    if geometry is None:
        return Mosaic(n, (per_side, per_side), (), note)
    ipp, row_dir, col_dir, spacing = geometry
    # Siemens' position is the mosaic's corner taken as one slice: move it to the first tile's corner.
    first = ipp + col_dir * spacing[0] * (rows - tile_rows) / 2.0 + row_dir * spacing[1] * (columns - tile_cols) / 2.0
    normal = _unit(_floats(csa.get("SliceNormalVector"), 3)) if csa.get("SliceNormalVector") else None
    if normal is None:
        normal = _unit(np.cross(row_dir, col_dir))
    step = _step(ds)
    positions = tuple(_vec(first + k * step * normal) for k in range(n)) if normal is not None else ()
    return Mosaic(n, (per_side, per_side), positions, note)


def _uih(ds: Dataset, rows: int, columns: int) -> Mosaic | None:
    n = _int(ds[UIH_SLICES].value)
    if n is None or not 1 < n <= MAX_TILES:
        return None
    grid_cols = math.ceil(math.sqrt(n))
    grid_rows = math.ceil(n / grid_cols)
    if grid_cols > columns or grid_rows > rows:
        return None
    positions: tuple[Vec3, ...] = ()
    frames = ds.get(UIH_VFRAMES)
    items = list(frames.value) if frames is not None and frames.VR == "SQ" else []
    found = [_floats(item.get("ImagePositionPatient"), 3) for item in items[:n]]
    if len(found) == n and all(p is not None for p in found):
        positions = tuple(_vec(p) for p in found if p is not None)
    return Mosaic(n, (grid_rows, grid_cols), positions,
                  "" if positions else "UIH VFRAME without per-tile positions")


def tile_of(arr: np.ndarray, tiles: int, index: int, grid: tuple[int, int] | None = None) -> np.ndarray:
    """Tile ``index`` (row-major) of a mosaic; ``grid`` (rows, columns) of tiles, square when None."""
    grid_rows, grid_cols = grid if grid else (math.ceil(math.sqrt(tiles)),) * 2
    h, w = arr.shape[0] // grid_rows, arr.shape[1] // grid_cols
    r, c = divmod(index, grid_cols)
    return arr[r * h:(r + 1) * h, c * w:(c + 1) * w]


def _inferred_side(ds: Dataset, rows: int, columns: int) -> int | None:
    """Tiles per side from the acquired matrix: the largest AcquisitionMatrix value that tiles the image."""
    values = sorted({v for v in (_int(x) for x in _list(ds.get("AcquisitionMatrix"))) if v}, reverse=True)
    for size in values:
        if rows % size == 0 and columns % size == 0 and rows // size == columns // size >= 2:
            return rows // size
    return None


def _geometry(ds: Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    ipp = _floats(ds.get("ImagePositionPatient"), 3)
    iop = _floats(ds.get("ImageOrientationPatient"), 6)
    spacing = _floats(ds.get("PixelSpacing"), 2)
    if ipp is None or iop is None or spacing is None:
        return None
    return np.asarray(ipp), np.asarray(iop[:3]), np.asarray(iop[3:]), np.asarray(spacing)


def _step(ds: Dataset) -> float:
    """Tile-to-tile distance: SpacingBetweenSlices (centre to centre), else SliceThickness, else 1 mm."""
    for name in ("SpacingBetweenSlices", "SliceThickness"):
        value = _float(ds.get(name))
        if value is not None and 0.0 < abs(value) <= 200.0:
            return abs(value)
    return 1.0


def _unit(v: np.ndarray | Sequence[float] | None) -> np.ndarray | None:
    if v is None:
        return None
    arr = np.asarray(v, dtype=np.float64)
    norm = float(np.linalg.norm(arr))
    return arr / norm if norm > 1e-6 and np.isfinite(norm) else None


def _vec(v: np.ndarray | Sequence[float]) -> Vec3:
    return (float(v[0]), float(v[1]), float(v[2]))


def _bytes(element: Any) -> bytes:
    value = getattr(element, "value", None)
    return bytes(value) if isinstance(value, (bytes, bytearray)) else b""


def _first(values: list[str] | None) -> str | None:
    return values[0] if values else None


def _floats(value: Any, n: int) -> list[float] | None:
    try:
        items = [float(v) for v in _list(value)]
    except (TypeError, ValueError, OverflowError):
        return None
    return items if len(items) == n and all(math.isfinite(v) for v in items) else None


def _int(value: Any) -> int | None:
    f = _float(value)
    return int(f) if f is not None and abs(f) < 2**31 else None


def _count(element: Any) -> int | None:
    """NumberOfImagesInMosaic as pydicom gives it: a US value, or raw bytes when the VR was not known."""
    if element is None:
        return None
    value = element.value
    if isinstance(value, (bytes, bytearray)):
        return int.from_bytes(bytes(value[:2]), "little") if len(value) >= 2 else None
    return _int(value)
