"""Send DICOM files (our SRs, or a series) to a PACS with C-STORE: one association, one status per file.

API::

    dest = PacsDestination(host="pacs.local", port=104, called_ae="PACS")  # calling_ae "MEDIQA", timeout 30 s
    statuses = send_to(dest, paths)          # == send_files(paths, host, port, called_ae, calling_ae, timeout_s)
    done = [p for p, s in zip(paths, statuses) if status_ok(s)]

``send_files`` is a pure function: it opens one association for the batch, proposes one presentation
context per SOP class and transfer syntax found in the files' meta (uncompressed files also offer
explicit and implicit VR little endian, converted as the peer accepts), sends every file in order and
returns the DIMSE status of each (0x0000 success, 0xB0xx warnings: both ``status_ok``; a file whose
SOP class or transfer syntax the peer did not accept gets 0x0122 without being sent, as retrying
cannot help). Retries and outbox scheduling belong to the caller (the state DB).

Whatever stops the batch raises ``PacsError`` (a ``MediqaError``) whose ``remedy`` says what to fix:
a file that cannot be read, no connection, no answer within ``timeout_s``, a rejected association
(calling / called AE title not known, peer busy), an abort part-way (``statuses`` then holds what was
answered before it). Messages name files by position, never by path or content (export paths and
headers carry patient data).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pydicom
from pydicom.filereader import read_file_meta_info
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, evt

from mediqa.errors import MediqaError

log = logging.getLogger(__name__)

MAX_CONTEXTS = 128  # the DICOM limit of presentation contexts in one association
NOT_ACCEPTED = 0x0122  # Refused: SOP Class Not Supported
UNCOMPRESSED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)


class PacsError(MediqaError):
    """A send to the PACS failed as a whole; ``statuses`` has the answers received before it stopped."""

    def __init__(self, message: str, remedy: str | None = None, statuses: Sequence[int] = ()) -> None:
        super().__init__(message, remedy)
        self.statuses = list(statuses)


def _check_ae(value: str, name: str) -> None:
    if not 0 < len(value) <= 16 or not value.strip() or not value.isascii() or "\\" in value:
        raise PacsError(f"PACS {name} {value!r} is not a DICOM AE title", "1 to 16 ASCII characters, no backslash")


@dataclass(frozen=True)
class PacsDestination:
    """Where results go: the PACS's address and AE title, and the AE title we call from."""

    host: str
    port: int
    called_ae: str
    calling_ae: str = "MEDIQA"
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if not self.host:
            raise PacsError("PACS host is empty", "set the PACS host name or IP address")
        if not 0 < self.port < 65536:
            raise PacsError(f"PACS port {self.port} is out of range", "a TCP port 1..65535, often 104 or 11112")
        _check_ae(self.called_ae, "called_ae")
        _check_ae(self.calling_ae, "calling_ae")
        if not self.timeout_s > 0:
            raise PacsError(f"PACS timeout_s must be > 0, got {self.timeout_s}")


def status_ok(status: int) -> bool:
    """Stored: success (0x0000) or a warning (0xB000-0xBFFF: coercion, elements discarded...)."""
    return status == 0x0000 or 0xB000 <= status <= 0xBFFF


def send_to(dest: PacsDestination, paths: Sequence[str | os.PathLike[str]]) -> list[int]:
    return send_files(paths, dest.host, dest.port, dest.called_ae, dest.calling_ae, dest.timeout_s)


def _meta(paths: Sequence[str | os.PathLike[str]]) -> list[tuple[UID, UID]]:
    out = []
    for k, path in enumerate(paths, 1):
        try:
            meta = read_file_meta_info(path)
            out.append((UID(meta.MediaStorageSOPClassUID), UID(meta.TransferSyntaxUID)))
        except (OSError, AttributeError, pydicom.errors.InvalidDicomError) as exc:
            raise PacsError(f"file {k} of {len(paths)} cannot be read as DICOM ({type(exc).__name__})",
                            "the outbox lost or damaged it: rebuild the report") from None
    return out


def _contexts(kinds: list[tuple[UID, UID]]) -> list[tuple[UID, list[UID]]]:
    wanted: dict[tuple[UID, tuple[UID, ...]], None] = {}
    for sop_class, ts in kinds:
        offer = UNCOMPRESSED if ts in UNCOMPRESSED else (ts,)
        wanted[(sop_class, offer)] = None
    return [(c, list(t)) for c, t in wanted]


def _accepted(assoc: Any, sop_class: UID, ts: UID) -> bool:
    for cx in assoc.accepted_contexts:
        if cx.abstract_syntax == sop_class and (cx.transfer_syntax[0] == ts or
                                                (ts in UNCOMPRESSED and cx.transfer_syntax[0] in UNCOMPRESSED)):
            return True
    return False


def _refusal(assoc: Any, called_ae: str, calling_ae: str) -> PacsError:
    rsp = assoc.acceptor.primitive
    result, source, diag = (getattr(rsp, "result", None), getattr(rsp, "result_source", None),
                            getattr(rsp, "diagnostic", None))
    if source == 0x01 and diag == 0x03:
        return PacsError("the PACS refused the association: calling AE title not recognised",
                         f"register AE title {calling_ae!r} (this agent's host) on the PACS")
    if source == 0x01 and diag == 0x07:
        return PacsError("the PACS refused the association: called AE title not recognised",
                         f"check that the PACS's AE title is {called_ae!r}")
    if result == 0x02:
        return PacsError("the PACS refused the association for now (busy or out of resources)",
                         "it will be retried; if it persists, check the PACS's association limit")
    return PacsError(f"the PACS refused the association ({getattr(rsp, 'reason_str', 'no reason given')})",
                     "check this agent's AE title and address in the PACS's configuration")


def send_files(paths: Sequence[str | os.PathLike[str]], host: str, port: int, called_ae: str,
               calling_ae: str = "MEDIQA", timeout_s: float = 30.0) -> list[int]:
    """C-STORE ``paths`` to ``host:port`` in one association; the status of each, in order."""
    if not paths:
        return []
    kinds = _meta(paths)
    contexts = _contexts(kinds)
    if len(contexts) > MAX_CONTEXTS:
        raise PacsError(f"{len(contexts)} kinds of file in one batch, more than DICOM's {MAX_CONTEXTS}",
                        "send them in smaller batches")
    ae = AE(calling_ae)
    for sop_class, syntaxes in contexts:
        ae.add_requested_context(sop_class, syntaxes)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = timeout_s
    connected: list[bool] = []
    where = f"{called_ae}@{host}:{port}"
    assoc = ae.associate(host, port, ae_title=called_ae,
                         evt_handlers=[(evt.EVT_CONN_OPEN, lambda event: connected.append(True))])
    if not assoc.is_established:
        if assoc.is_rejected:
            raise _refusal(assoc, called_ae, calling_ae)
        if not connected:
            raise PacsError(f"cannot connect to the PACS {where}",
                            "check its host and port, that it runs, and the firewall between")
        raise PacsError(f"no answer from the PACS {where} within {timeout_s:g} s (association not established)",
                        "check that the port is a DICOM port, or raise the timeout")
    statuses: list[int] = []
    try:
        for k, (path, (sop_class, ts)) in enumerate(zip(paths, kinds, strict=True), 1):
            if not _accepted(assoc, sop_class, ts):
                log.warning("PACS %s does not accept file %d of %d (%s in %s): not sent", where, k, len(paths),
                            sop_class.name, ts.name)
                statuses.append(NOT_ACCEPTED)
                continue
            answer = assoc.send_c_store(pydicom.dcmread(path))
            if "Status" not in answer:
                raise PacsError(f"the PACS {where} stopped answering after {k - 1} of {len(paths)} files "
                                f"(aborted, or no answer within {timeout_s:g} s)",
                                "it will be retried; check the PACS's log if it persists", statuses)
            statuses.append(int(answer.Status))
    finally:
        if assoc.is_established:
            assoc.release()
    failed = sum(not status_ok(s) for s in statuses)
    log.info("sent %d files to PACS %s: %d stored, %d refused", len(paths), where, len(paths) - failed, failed)
    return statuses
