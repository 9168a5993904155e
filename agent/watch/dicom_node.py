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
is logged and ignored (the file is on disk; ``NodeFeed``'s periodic spool scan offers it again).

Spool (``agent/watch/spool.py``): ``<spool>/<YYYYmmddTHHMMSS>-<random>/<sha256(SOP Instance UID)[:32]>.dcm``,
0600, one folder per association: names carry no patient data (export folders often do). A file being
written is ``.<name>.part``, a dot file the folder walk skips, so a kill -9 leaves no final name
half-written; leftover temp files are deleted at start. ``prune(now, done)`` deletes only files
``done(path)`` says the agent has finished with (``agent/watch/node_feed.py`` asks the state DB).

Refusals, one log line each (AE title and address only): a calling AE not in ``allowed_calling_aes``
(empty: any) is rejected by pynetdicom's ``require_calling_aet`` (permanent, calling AE not recognised);
an address outside ``allowed_addresses`` (empty: any) permanent, no reason given; beyond
``max_associations`` transient. A full spool (``max_spool_bytes``, or under ``spool.DISK_RESERVE_BYTES``
free) answers 0xA700 (out of resources): the sender keeps and retries; unscored data is never deleted
to make room. Only CT and MR storage is negotiated, in the transfer syntaxes pydicom decodes here.

``max_pdu_size`` is 262144 by default, not pynetdicom's 16382: the receive path is Python and costs
per PDU (a CT slice is ~0.5 MiB). storescu -> us, 300-slice 512x512 CT on loopback, 2 busy cores
(scripts/bench_dicom_node.py): 6.0 s / 8.2 ms CPU per file at 16382, 4.5 s / 6.4 ms at 262144, no
better at 1 MiB. Bounded (0 would be unlimited) so a peer cannot make us buffer huge PDUs.
pynetdicom's own logger prints UIDs at DEBUG: run it at WARNING.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import logging
import os
import secrets
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

from mediqa.agent.config_dicom import DicomNodeConfig
from mediqa.agent.watch.spool import PART_SUFFIX as PART_SUFFIX  # re-exported: the temp files' suffix
from mediqa.agent.watch.spool import Spool
from mediqa.errors import MediqaError

log = logging.getLogger(__name__)

JOIN_TIMEOUT_S = 10.0
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
        self._spool = Spool(self.spool_dir, config.max_spool_bytes, config.keep_hours)
        self._ae: AE | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None

    # -- life cycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        endpoint = self.config.endpoint
        if endpoint is None or self._server is not None:
            return
        try:
            self._spool.recover()
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
        return self._spool.used_bytes

    # -- spool housekeeping (agent/watch/spool.py) ---------------------------------------------------
    def release(self, path: str | os.PathLike[str]) -> bool:
        """The agent is done with ``path``: delete it now when ``keep_hours`` is 0 (True if deleted)."""
        return self._spool.release(path)

    def prune(self, now: float | None = None, done: Callable[[Path], bool] | None = None) -> int:
        """Delete spooled files older than ``keep_hours`` (none when it is 0) and idle empty folders; with
        ``done``, only the files it returns True for (those the agent has finished with)."""
        return self._spool.prune(now, self.open_folders, done)

    def spooled_files(self) -> list[Path]:
        """Every complete file in the spool, oldest association first."""
        return self._spool.files()

    def open_folders(self) -> set[Path]:
        """The spool folders of the associations open now."""
        with self._lock:
            return {info.folder for info in self._sessions.values()}

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
        if not self._spool.reserve(len(data)):
            return 0xA700
        final = info.folder / name
        try:
            replaced = final.stat().st_size if final.exists() else 0
            self._spool.write(final, data)
        except OSError as exc:
            self._spool.unreserve(len(data))
            log.error("DICOM node cannot write to its spool: %s", exc.strerror or type(exc).__name__)
            return 0xA700 if exc.errno in (28, 122) else 0x0110  # ENOSPC, EDQUOT
        self._spool.stored(replaced)
        with self._lock:
            info = self._sessions.get(event.assoc, info)
            info = self._sessions[event.assoc] = dataclasses.replace(info, instances=info.instances + 1,
                                                                     bytes=info.bytes + len(data))
        _call(self._on_instance, str(final), info)
        return 0x0000


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
