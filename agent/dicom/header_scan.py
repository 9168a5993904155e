"""A fast walk over a header's elements that hands pydicom the same raw elements ``dcmread`` would.

Why: on 2 cores the reading workers spent half their time in ``dcmread`` (pydicom's element loop reads
each element with several small file reads and parses undefined-length sequences eagerly;
docs/performance.md). This walk reads the header into memory once and slices it with
``struct.unpack_from``; every sequence stays raw bytes, which pydicom parses only if a value inside is
asked for. The result is a pydicom ``FileDataset`` of ``RawDataElement``s, so every value is still
converted by pydicom itself (VR lookup, character sets, private dictionaries, empty values): the
records are identical by construction, and ``tests/agent/dicom/test_header_scan.py`` checks it over
every file the project holds.

It covers the ordinary case only: a preamble, a file meta group, and a little-endian data set (implicit
or explicit VR, native or encapsulated pixels) that reaches its PixelData element. Anything else
(big endian, deflate, a command group, a first element whose VR contradicts the transfer syntax, an
unknown VR, an undefined-length UN, a file that ends inside the header) raises ``NotOrdinary`` and the
caller reads the file with ``dcmread`` as before, which gives that file exactly today's outcome.
"""

from __future__ import annotations

import struct
from collections.abc import MutableMapping
from typing import Any, BinaryIO

from pydicom.datadict import dictionary_VR, keyword_dict
from pydicom.dataelem import DataElement, RawDataElement, empty_value_for_VR
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.filereader import ENCODED_VR
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32

IMPLICIT_LE = "1.2.840.10008.1.2"
_NOT_COVERED = {"1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"}  # explicit big endian, deflated
_LONG_VRS = {str(vr).encode() for vr in EXPLICIT_VR_LENGTH_32}  # pydicom's own sets, so the walk agrees with it
_KNOWN_VRS = {vr for vr in ENCODED_VR if len(vr) == 2}
_PIXEL_TAGS = {0x7FE00010, 0x7FE00009, 0x7FE00008}  # where dcmread(stop_before_pixels=True) stops
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF
_Elements = MutableMapping[BaseTag, DataElement | RawDataElement]  # what pydicom's Dataset is made from
_CHUNK = 65536
_TAG = struct.Struct("<HH")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<L")
_IMPLICIT_HEAD = struct.Struct("<HHL")
_EXPLICIT_HEAD = struct.Struct("<HH2sH")


class NotOrdinary(Exception):
    """This file is not the ordinary case the walk covers: read it with ``dcmread``."""


class _Buffer:
    """The file's first bytes, read on demand in large chunks (a header is read once, not per element)."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh
        self.data = fh.read(_CHUNK)

    def need(self, end: int) -> bytes:
        if end > len(self.data):
            more = self.fh.read(max(end - len(self.data), _CHUNK))
            if len(self.data) + len(more) < end:
                raise NotOrdinary("the file ends inside the header")
            self.data += more
        return self.data


class _PlainValues:
    """``get(keyword)`` that converts plain values itself, as pydicom would (mixed into pydicom's classes).

    Why: building a record asks ~60 values, and pydicom's conversion (VR lookup hooks, a ``DataElement``
    per value, validation) took more time than the walk. The plain cases are converted here: text and
    UID values (ASCII bytes only), decimal and integer strings, binary numbers, and empty values; the
    result is what ``Dataset.get`` returns or equal to it (a decimal string comes back as ``float``,
    which is how every reader of the record takes it). Anything else (private tags, an unknown or UN VR,
    a non-ASCII text, a number that does not parse, a wrong byte count) goes to pydicom's own ``get``.
    Nothing is cached in the data set, so pydicom still sees every element raw.
    """

    _dict: MutableMapping[BaseTag, DataElement | RawDataElement]

    def get(self, key: Any, default: Any = None) -> Any:
        tag = _TAG_OF.get(key) if isinstance(key, str) else None
        if tag is None:
            return super().get(key, default)  # type: ignore[misc]
        raw = self._dict.get(tag)
        if raw is None:
            return default
        if type(raw) is RawDataElement:
            value = _plain_value(raw, tag)
            if value is not _NOT_PLAIN:
                return value
        return super().get(key, default)  # type: ignore[misc]


class ScannedDataset(_PlainValues, FileDataset):
    """The data set of a walked header."""


class ScannedMeta(_PlainValues, FileMetaDataset):
    """The file meta group of a walked header."""


def scan_header(fh: BinaryIO) -> tuple[FileDataset, int]:
    """The header as ``dcmread(fh, stop_before_pixels=True)`` gives it, and the offset of its PixelData tag.

    ``fh`` is left positioned at that tag (where ``dcmread`` leaves it), for ``pixel_extent``.
    """
    buf = _Buffer(fh)
    data = buf.need(132)
    if data[128:132] != b"DICM":
        raise NotOrdinary("no DICM preamble")
    meta_elements, pos = _read_elements(buf, 132, implicit=False, meta=True)
    file_meta = ScannedMeta(meta_elements)
    file_meta.set_original_encoding(is_implicit_vr=False, is_little_endian=True, character_encoding="iso8859")
    syntax = _meta_text(meta_elements.get(BaseTag(0x00020010)))
    if not syntax or syntax in _NOT_COVERED:
        raise NotOrdinary(f"transfer syntax {syntax or 'missing'}")
    implicit = syntax == IMPLICIT_LE
    data = buf.need(pos + 6)
    if _TAG.unpack_from(data, pos)[0] == 0x0000:
        raise NotOrdinary("a command group follows the file meta")
    looks_explicit = 0x40 < data[pos + 4] < 0x5B and 0x40 < data[pos + 5] < 0x5B
    if looks_explicit == implicit:  # dcmread warns and switches: leave that to it
        raise NotOrdinary("the first element's encoding contradicts the transfer syntax")
    elements, pixel_at = _read_elements(buf, pos, implicit=implicit, meta=False)
    fh.seek(pixel_at)
    out = ScannedDataset(fh, elements, data[:128], file_meta, implicit, True)
    out.set_original_encoding(implicit, True, out._character_set)
    return out, pixel_at


def _meta_text(raw: DataElement | RawDataElement | None) -> str:
    if raw is None or not raw.value:
        return ""
    return bytes(raw.value).decode("ascii", "replace").rstrip("\0 ")


def _read_elements(buf: _Buffer, pos: int, *, implicit: bool, meta: bool) -> tuple[_Elements, int]:
    """Top-level elements from ``pos``: the meta group (``meta``: until the group is not 0002), else
    the data set up to a PixelData tag. Returns them and where the walk stopped.

    The hot loop of indexing: locals and one ``unpack_from`` per element (profiled; ~1 us an element)."""
    elements: _Elements = {}
    head = _IMPLICIT_HEAD.unpack_from if implicit else _EXPLICIT_HEAD.unpack_from
    u32, long_vrs, known = _U32.unpack_from, _LONG_VRS, _KNOWN_VRS
    data = buf.data
    while True:
        if pos + 8 > len(data):
            data = buf.need(pos + 8)  # the end of the file here: not the ordinary case (dcmread decides)
        if implicit:
            group, elem, length = head(data, pos)
            vr: str | None = None
            value_at = pos + 8
        else:
            group, elem, raw_vr, length = head(data, pos)
            if raw_vr not in known:
                if meta and group != 0x0002:
                    return elements, pos
                raise NotOrdinary("an unknown VR")
            if raw_vr in long_vrs:
                if pos + 12 > len(data):
                    data = buf.need(pos + 12)
                length = u32(data, pos + 8)[0]
                value_at = pos + 12
            else:
                value_at = pos + 8
            vr = raw_vr.decode()
        tag = group << 16 | elem
        if meta:
            if group != 0x0002:
                return elements, pos
        elif tag in _PIXEL_TAGS:
            if tag != 0x7FE00010:
                raise NotOrdinary("float pixel data")
            return elements, pos
        if group == 0xFFFE:
            raise NotOrdinary("a delimiter at the top level")
        if length == _UNDEFINED:
            pos, value_end = _skip_undefined(buf, value_at, tag, vr, implicit)
            data = buf.data
            vr, length = "SQ", value_end - value_at
            value: Any = data[value_at:value_end]
        else:
            pos = value_at + length
            if pos > len(data):
                data = buf.need(pos)
            value = data[value_at:pos] if length else empty_value_for_VR(vr, raw=True)
        btag = BaseTag(tag)
        elements[btag] = RawDataElement(btag, vr, length, value, value_at, implicit, True)


def _element_head(buf: _Buffer, pos: int, implicit: bool) -> tuple[str | None, int, int]:
    """(VR or None for implicit, value length, where the value starts) of the element at ``pos``."""
    data = buf.data
    if implicit:
        return None, _U32.unpack_from(data, pos + 4)[0], pos + 8
    raw_vr = data[pos + 4:pos + 6]
    if raw_vr not in _KNOWN_VRS:
        raise NotOrdinary("an unknown VR")
    if raw_vr in _LONG_VRS:
        data = buf.need(pos + 12)
        return raw_vr.decode(), _U32.unpack_from(data, pos + 8)[0], pos + 12
    return raw_vr.decode(), _U16.unpack_from(data, pos + 6)[0], pos + 8


def _skip_undefined(buf: _Buffer, at: int, tag: int, vr: str | None, implicit: bool) -> tuple[int, int]:
    """An undefined-length sequence starting at ``at``: (the offset after its delimiter, where its items end)."""
    if vr == "UN" or (vr is None and _dictionary_vr(tag) != "SQ") or vr not in (None, "SQ"):
        raise NotOrdinary("an undefined-length value that is not a known sequence")
    pos = at
    while True:
        data = buf.need(pos + 8)
        group, elem = _TAG.unpack_from(data, pos)
        item_tag, length = group << 16 | elem, _U32.unpack_from(data, pos + 4)[0]
        if item_tag == _SEQ_END:
            return pos + 8, pos
        if item_tag != _ITEM:
            raise NotOrdinary("a sequence holds something that is not an item")
        if length != _UNDEFINED:
            pos += 8 + length
            buf.need(pos)
            continue
        pos = _skip_item(buf, pos + 8, implicit)


def _skip_item(buf: _Buffer, pos: int, implicit: bool) -> int:
    """The elements of an undefined-length item from ``pos``; returns the offset after its delimiter."""
    first = True
    while True:
        data = buf.need(pos + 8)
        group, elem = _TAG.unpack_from(data, pos)
        tag = group << 16 | elem
        if tag == _ITEM_END:
            return pos + 8
        if first and not implicit and not (0x40 < data[pos + 4] < 0x5B and 0x40 < data[pos + 5] < 0x5B):
            raise NotOrdinary("an implicit-VR item inside an explicit-VR data set")
        first = False
        vr, length, value_at = _element_head(buf, pos, implicit)
        if length == _UNDEFINED:
            pos, _ = _skip_undefined(buf, value_at, tag, vr, implicit)
        else:
            pos = value_at + length
            buf.need(pos)


def _dictionary_vr(tag: int) -> str:
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return ""


_TAG_OF: dict[str, BaseTag] = {keyword: BaseTag(tag) for keyword, tag in keyword_dict.items()}
_NOT_PLAIN = object()
_STRING_VRS = {"CS", "AS", "SH", "LO", "UC"}  # split at backslashes, right-stripped (convert_string/_text)
_NUMBER_FORMATS = {"US": "H", "SS": "h", "UL": "L", "SL": "l", "FL": "f", "FD": "d"}
_NUMBER_SIZES = {vr: struct.calcsize("<" + f) for vr, f in _NUMBER_FORMATS.items()}
_PUBLIC_VR: dict[int, str] = {}


def _vr_of(raw: RawDataElement, tag: int) -> str:
    if raw.VR is not None:
        return str(raw.VR)
    vr = _PUBLIC_VR.get(tag)
    if vr is None:
        vr = _PUBLIC_VR[tag] = _dictionary_vr(tag)
    return vr


def _plain_value(raw: RawDataElement, tag: int) -> Any:
    """The value pydicom would give ``raw``, or ``_NOT_PLAIN`` when this is not a case converted here."""
    vr = _vr_of(raw, tag)
    value = raw.value
    if not value:  # what pydicom's empty_value_for_VR gives a converted element
        if vr in _STRING_VRS or vr == "UI":
            return ""
        return None if vr in _NUMBER_FORMATS or vr in ("DS", "IS") else _NOT_PLAIN
    if vr in _NUMBER_FORMATS:
        size = _NUMBER_SIZES[vr]
        if len(value) % size:
            return _NOT_PLAIN  # pydicom raises here: let it
        numbers = struct.unpack(f"<{len(value) // size}{_NUMBER_FORMATS[vr]}", value)
        return numbers[0] if len(numbers) == 1 else MultiValue(_same, numbers)
    if not value.isascii() or b"\x1b" in value:  # ISO 2022 escapes: the character set matters
        return _NOT_PLAIN
    text = value.decode("ascii")
    try:
        items: list[Any]
        if vr == "DS":
            items = [float(v) for v in text.strip().rstrip(" \x00").split("\\")]
        elif vr == "IS":
            items = [int(v) for v in text.rstrip(" \x00").split("\\")]
        elif vr == "UI":
            items = text.rstrip("\x00 ").split("\\")
        elif vr == "CS" or vr == "AS":
            items = text.rstrip(" \x00").split("\\")
        elif vr in _STRING_VRS:
            items = [v.rstrip("\x00 ") for v in text.split("\\")]
        else:
            return _NOT_PLAIN
    except ValueError:
        return _NOT_PLAIN
    return items[0] if len(items) == 1 else MultiValue(_same, items)


def _same(value: Any) -> Any:
    return value
