"""The agent as a DICOM node: a C-STORE SCP (with C-ECHO) for CT and MR, spooling to disk.

A scanner or a PACS router pushes series to us over DICOM instead of exporting to a folder; the
instances land durably in a spool folder and the agent takes them from there like exported files.

API::

    node = DicomNode(DicomNodeConfig(listen="0.0.0.0:11112"), spool_dir, on_instance, on_association_released)
    with node:                   # or node.start() ... node.stop() (joins every thread it started)
        node.address             # (host, port) bound; None when listen is "off"
        node.release(path)       # scored: deleted now when keep_hours == 0, else left to prune
        node.prune(time.time())  # deletes files older than keep_hours, and idle empty folders

``on_instance(path, info)``: once per stored instance, after the file is durable (temp name, fsync,
rename, folder fsync) and before the peer gets 0x0000, so an acknowledged instance is never lost.
``on_association_released(info)``: once per established association, when it is released or aborted
(``info.ended`` "released" or "aborted"; ``instances`` may be 0, a C-ECHO). Both run on pynetdicom's
association threads, several in parallel: queue the work, never score there. A callback's exception
is logged and ignored (the file is on disk; the reconciliation scan finds it).

Spool: ``<spool>/<YYYYmmddTHHMMSS>-<random>/<sha256(SOP Instance UID)[:32]>.dcm``, 0600, one folder per
association: names carry no patient data (export folders often do). A file being written is
``.<name>.part``, a dot file the folder walk skips, so a kill -9 leaves no final name half-written;
leftover temp files are deleted at start.

Refusals, one log line each (AE title and address only): a calling AE not in ``allowed_calling_aes``
(empty: any) is rejected by pynetdicom's ``require_calling_aet`` (permanent, calling AE not recognised);
an address outside ``allowed_addresses`` (empty: any) permanent, no reason given; beyond
``max_associations`` transient. A full spool (``max_spool_bytes``, or under ``DISK_RESERVE_BYTES``
free) answers 0xA700 (out of resources): the sender keeps and retries; unscored data is never deleted
to make room. Only CT and MR storage is negotiated, in the transfer syntaxes pydicom decodes here.

``max_pdu_size`` is 262144 by default, not pynetdicom's 16382: the receive path is Python and costs
per PDU (a CT slice is ~0.5 MiB). storescu -> us, 300-slice 512x512 CT on loopback, 2 busy cores
(scripts/bench_dicom_node.py): 6.0 s / 8.2 ms CPU per file at 16382, 4.5 s / 6.4 ms at 262144, no
better at 1 MiB. Bounded (0 would be unlimited) so a peer cannot make us buffer huge PDUs.
pynetdicom's own logger prints UIDs at DEBUG: run it at WARNING.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import ipaddress
import logging
import os
import secrets
import shutil
import socketserver
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from pydicom import uid
from pydicom.pixels import get_decoder
from pydicom.uid import UID
from pynetdicom import AE, evt
from pynetdicom.dimse_primitives import C_STORE

from mediqa.errors import ConfigError, MediqaError

log = logging.getLogger(__name__)

PART_SUFFIX = ".part"
DISK_RESERVE_BYTES = 256 * 1024**2  # refuse before the disk itself is full: the agent's DB lives there too
JOIN_TIMEOUT_S = 10.0
MAX_PDU_LIMIT = 16 * 1024**2  # what one PDU may make us buffer, at most
# CT Image, Enhanced CT, Legacy Converted Enhanced CT; MR Image, Enhanced MR, Legacy Converted Enhanced MR
STORAGE_SOP_CLASSES = tuple(UID(f"1.2.840.10008.5.1.4.1.1.{s}") for s in ("2", "2.1", "2.2", "4", "4.1", "4.4"))
VERIFICATION = UID("1.2.840.10008.1.1")
# Explicit VR first: the one we prefer when a peer offers several for one SOP class.
CANDIDATE_TRANSFER_SYNTAXES = (
    uid.ExplicitVRLittleEndian, uid.ImplicitVRLittleEndian, uid.DeflatedExplicitVRLittleEndian,
    uid.JPEGBaseline8Bit, uid.JPEGExtended12Bit, uid.JPEGLossless, uid.JPEGLosslessSV1,
    uid.JPEGLSLossless, uid.JPEGLSNearLossless, uid.JPEG2000Lossless, uid.JPEG2000, uid.RLELossless)


def _decodable(ts: UID) -> bool:
    try:
        return bool(get_decoder(ts).is_available)
    except NotImplementedError:
        return False


def accepted_transfer_syntaxes() -> tuple[UID, ...]:
    """The candidates pydicom can decode with the plugins installed here: never accept what we cannot score."""
    return tuple(ts for ts in CANDIDATE_TRANSFER_SYNTAXES if _decodable(ts))


class DicomNodeError(MediqaError):
    """The DICOM node cannot start (its port is taken, the spool folder is not writable...)."""


def _check_ae(value: str, where: str) -> None:
    if not 0 < len(value) <= 16 or not value.strip() or not value.isascii() or "\\" in value \
            or any(ord(c) < 32 for c in value):
        raise ConfigError(f"{where} {value!r} is not a DICOM AE title", "1 to 16 ASCII characters, no backslash")


def parse_listen(listen: str) -> tuple[str, int] | None:
    """``"HOST:PORT"`` or ``"[IPV6]:PORT"`` (an IP literal; port 0 = any free port) -> (host, port); "off" -> None."""
    if listen.strip().lower() == "off":
        return None
    host, sep, port = listen.strip().rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ipaddress.ip_address(host)
        number = int(port)
    except ValueError:
        number = -1
    if not sep or not 0 <= number <= 65535:
        raise ConfigError(f"dicom listen {listen!r} is not HOST:PORT", "e.g. 127.0.0.1:11112, [::1]:11112, or off")
    return host, number


@dataclass(frozen=True)
class DicomNodeConfig:
    listen: str = "127.0.0.1:11112"  # loopback by default: opening to the scanner network is a decision
    ae_title: str = "MEDIQA"
    allowed_calling_aes: tuple[str, ...] = ()  # empty: any calling AE title is accepted
    allowed_addresses: tuple[str, ...] = ()  # IPs or CIDRs; empty: any address is accepted
    max_associations: int = 4
    max_pdu_size: int = 262144  # see the module docstring
    max_spool_bytes: int = 20 * 1024**3
    keep_hours: float = 24.0  # kept this long for inspection, then pruned; 0: deleted as soon as released

    def __post_init__(self) -> None:
        parse_listen(self.listen)
        _check_ae(self.ae_title, "dicom ae_title")
        for ae in self.allowed_calling_aes:
            _check_ae(ae, "dicom allowed_calling_aes entry")
        self.networks  # noqa: B018 (validates)
        for name, value, low, high in (("max_associations", self.max_associations, 1, 64),
                                       ("max_pdu_size", self.max_pdu_size, 4096, MAX_PDU_LIMIT),
                                       ("max_spool_bytes", self.max_spool_bytes, 1, float("inf")),
                                       ("keep_hours", self.keep_hours, 0, float("inf"))):
            if not low <= value <= high:
                raise ConfigError(f"dicom {name} must be in {low}..{high}, got {value}")

    @property
    def endpoint(self) -> tuple[str, int] | None:
        return parse_listen(self.listen)

    @property
    def networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        try:
            return tuple(ipaddress.ip_network(a, strict=False) for a in self.allowed_addresses)
        except ValueError as exc:
            raise ConfigError(f"dicom allowed_addresses: {exc}", "IP addresses or CIDRs like 10.1.0.0/16") from None


@dataclass(frozen=True)
class AssociationInfo:
    """One peer association. ``assoc_id`` is its spool folder's name; no patient data in here."""

    assoc_id: str
    calling_ae: str
    called_ae: str
    address: str
    port: int
    started: float  # epoch seconds
    folder: Path
    instances: int = 0  # stored so far (final count in on_association_released)
    bytes: int = 0
    ended: str = ""  # "", then "released" or "aborted"


def _is_temp(name: str) -> bool:
    return name.startswith(".") and name.endswith(PART_SUFFIX)


class DicomNode:
    """A C-STORE / C-ECHO SCP writing CT and MR instances to ``spool_dir``; see the module docstring."""

    def __init__(self, config: DicomNodeConfig, spool_dir: Path,
                 on_instance: Callable[[str, AssociationInfo], None],
                 on_association_released: Callable[[AssociationInfo], None]) -> None:
        self.config = config
        self.spool_dir = Path(spool_dir)
        self._on_instance = on_instance
        self._on_released = on_association_released
        self._lock = threading.Lock()
        self._sessions: dict[Any, AssociationInfo] = {}  # pynetdicom Association -> info
        self._used = 0
        self._full_logged = False
        self._ae: AE | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None

    # -- life cycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        endpoint = self.config.endpoint
        if endpoint is None or self._server is not None:
            return
        try:
            self.spool_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._used = self._recover()
        except OSError as exc:
            raise DicomNodeError(f"cannot use the DICOM spool folder: {exc.strerror}",
                                 "make it writable by the agent's user") from None
        ae = AE(self.config.ae_title)
        for sop_class in STORAGE_SOP_CLASSES:
            ae.add_supported_context(sop_class, list(accepted_transfer_syntaxes()))
        ae.add_supported_context(VERIFICATION)
        ae.require_calling_aet = list(self.config.allowed_calling_aes)
        ae.maximum_associations = self.config.max_associations
        ae.maximum_pdu_size = self.config.max_pdu_size
        ae.acse_timeout, ae.dimse_timeout, ae.network_timeout = 30, 60, 120
        handlers: list[Any] = [
            (evt.EVT_REQUESTED, self._on_requested), (evt.EVT_REJECTED, self._on_rejected),
            (evt.EVT_ESTABLISHED, self._on_established), (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_C_ECHO, lambda event: 0x0000), (evt.EVT_RELEASED, self._on_ended, ["released"]),
            (evt.EVT_ABORTED, self._on_ended, ["aborted"])]
        try:
            server = ae.make_server(endpoint, evt_handlers=handlers)
        except OSError as exc:
            raise DicomNodeError(f"cannot listen for DICOM on {self.config.listen}: {exc.strerror}",
                                 "choose a free port in dicom.listen, or set it to off") from None
        self._ae, self._server = ae, server
        self._thread = threading.Thread(target=server.serve_forever, name="mediqa-dicom-node", daemon=True)
        self._thread.start()
        log.info("DICOM node %s listening on %s", self.config.ae_title, self.address)

    def stop(self) -> None:
        """Stop accepting, abort open associations, and join every thread this node started."""
        server, thread, ae = self._server, self._thread, self._ae
        if server is None or thread is None or ae is None:
            return
        socketserver.BaseServer.shutdown(server)  # ends serve_forever (pynetdicom's shutdown wants start_server)
        server.server_close()  # closes the socket and joins the connection threads: no association starts after
        assocs = list(server.active_associations)
        for assoc in assocs:
            assoc.abort()
        for assoc in assocs:
            assoc.join(JOIN_TIMEOUT_S)
            assoc.dul.join(JOIN_TIMEOUT_S)
        thread.join(JOIN_TIMEOUT_S)
        self._server = self._thread = self._ae = None
        with self._lock:  # an association whose thread died without an end event: reported now, once
            left, self._sessions = list(self._sessions.values()), {}
        for info in left:
            self._report_end(dataclasses.replace(info, ended="aborted"))

    def __enter__(self) -> DicomNode:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def address(self) -> tuple[str, int] | None:
        return None if self._server is None else (str(self._server.server_address[0]),
                                                   int(self._server.server_address[1]))

    @property
    def used_bytes(self) -> int:
        with self._lock:
            return self._used

    # -- spool housekeeping -------------------------------------------------------------------------
    def _recover(self) -> int:
        """Delete temp files a crash left behind and empty folders; return the bytes of the files kept."""
        used = 0
        for dirpath, _, filenames in os.walk(self.spool_dir, topdown=False):
            for name in filenames:
                path = os.path.join(dirpath, name)
                if _is_temp(name):
                    os.unlink(path)
                else:
                    used += os.path.getsize(path)
            if dirpath != str(self.spool_dir) and not os.listdir(dirpath):
                os.rmdir(dirpath)
        return used

    def release(self, path: str | os.PathLike[str]) -> bool:
        """The agent is done with ``path``: delete it now when ``keep_hours`` is 0 (True if deleted)."""
        target = Path(path).resolve()
        if not target.is_relative_to(self.spool_dir.resolve()):
            raise ValueError("not a file of this node's spool")
        return self.config.keep_hours == 0 and self._delete(target)

    def prune(self, now: float | None = None) -> int:
        """Delete spooled files older than ``keep_hours`` (none when it is 0) and idle empty folders."""
        cutoff = (time.time() if now is None else now) - self.config.keep_hours * 3600
        removed, folders = 0, [p for p in self.spool_dir.iterdir() if p.is_dir()]
        with self._lock:  # after listing: a listed folder's association, if open, is in the snapshot
            active = {info.folder for info in self._sessions.values()}
        for folder in [p for p in folders if p not in active]:
            with contextlib.suppress(FileNotFoundError):  # released meanwhile
                for file in folder.iterdir():
                    if self.config.keep_hours > 0 and not _is_temp(file.name) and file.stat().st_mtime < cutoff:
                        removed += self._delete(file)
                if not any(folder.iterdir()):
                    folder.rmdir()
        return removed

    def _delete(self, path: Path) -> bool:
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            return False
        with self._lock:
            self._used -= size
        return True

    # -- pynetdicom event handlers (association threads) ------------------------------------------------
    def _on_requested(self, event: evt.Event) -> None:
        address, networks = event.assoc.requestor.address, self.config.networks
        if networks and not _address_allowed(address, networks):
            log.warning("DICOM association refused: address %s is not in allowed_addresses", address)
            event.assoc.acse.send_reject(0x01, 0x01, 0x01)

    def _on_rejected(self, event: evt.Event) -> None:  # pynetdicom's own refusals (AE title, limit)
        reason = getattr(event.assoc.acceptor.primitive, "reason_str", "?")
        log.warning("DICOM association refused (%s): calling AE %r from %s", reason,
                    event.assoc.requestor.ae_title.strip(), event.assoc.requestor.address)

    def _on_established(self, event: evt.Event) -> None:
        assoc_id = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{secrets.token_hex(4)}"
        info = AssociationInfo(assoc_id, event.assoc.requestor.ae_title.strip(), event.assoc.acceptor.ae_title.strip(),
                               event.assoc.requestor.address, int(event.assoc.requestor.port), time.time(),
                               self.spool_dir / assoc_id)
        with self._lock:
            self._sessions[event.assoc] = info

    def _on_ended(self, event: evt.Event, how: str) -> None:
        """EVT_RELEASED / EVT_ABORTED, on the association's own thread (EVT_CONN_CLOSE, on the DUL thread,
        can come before the release is recorded); ``pop`` makes it once even when both abort paths fire."""
        with self._lock:
            info = self._sessions.pop(event.assoc, None)
        if info is not None:  # None: never established (refused), or already reported
            self._report_end(dataclasses.replace(info, ended=how))

    def _report_end(self, info: AssociationInfo) -> None:
        log.info("DICOM association %s from %s (%s) %s: %d instances, %d bytes", info.assoc_id, info.calling_ae,
                 info.address, info.ended, info.instances, info.bytes)
        _call(self._on_released, info)

    def _on_store(self, event: evt.Event) -> int:
        with self._lock:
            info = self._sessions.get(event.assoc)
        if info is None:
            return 0x0110
        data = event.encoded_dataset()  # as sent, with the file meta (no decode, no re-encode)
        sop_uid = str(cast(C_STORE, event.request).AffectedSOPInstanceUID)
        name = hashlib.sha256(sop_uid.encode()).hexdigest()[:32] + ".dcm"
        if not self._reserve(len(data)):
            return 0xA700
        final = info.folder / name
        try:
            replaced = final.stat().st_size if final.exists() else 0
            self._write(final, data)
        except OSError as exc:
            with self._lock:
                self._used -= len(data)
            log.error("DICOM node cannot write to its spool: %s", exc.strerror or type(exc).__name__)
            return 0xA700 if exc.errno in (28, 122) else 0x0110  # ENOSPC, EDQUOT
        with self._lock:
            self._used -= replaced
            self._full_logged = False
            info = self._sessions.get(event.assoc, info)
            info = self._sessions[event.assoc] = dataclasses.replace(info, instances=info.instances + 1,
                                                                     bytes=info.bytes + len(data))
        _call(self._on_instance, str(final), info)
        return 0x0000

    def _reserve(self, size: int) -> bool:
        free = shutil.disk_usage(self.spool_dir).free
        with self._lock:
            if self._used + size <= self.config.max_spool_bytes and free - size >= DISK_RESERVE_BYTES:
                self._used += size
                return True
            first, self._full_logged = not self._full_logged, True
        if first:  # once until a store succeeds again: a retrying sender would flood the log
            log.warning("DICOM spool full (%d of %d bytes used, %d free on disk): answering out of resources",
                        self._used, self.config.max_spool_bytes, free)
        return False

    @staticmethod
    def _write(final: Path, data: bytes) -> None:
        """Temp name, fsync, rename, fsync the folder: the final name only ever holds a complete file."""
        final.parent.mkdir(mode=0o700, exist_ok=True)
        temp = final.with_name(f".{final.name}{PART_SUFFIX}")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temp, final)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        dir_fd = os.open(final.parent, os.O_RDONLY)  # makes the rename itself durable
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _address_allowed(address: str, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return False
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return any(ip in net or (mapped is not None and mapped in net) for net in networks)


def _call(callback: Callable[..., None], *args: Any) -> None:
    try:
        callback(*args)
    except Exception as exc:  # noqa: BLE001 - the file is durable; the agent's reconciliation scan finds it
        log.error("DICOM node callback %s failed: %s", getattr(callback, "__name__", "?"), type(exc).__name__)
