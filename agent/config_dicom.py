"""The ``dicom:`` section of the agent's configuration: the DICOM node (C-STORE SCP) and the SR outputs.

Kept apart from the modules that use it (``agent/watch/dicom_node.py``, ``agent/report/sr_outbox.py``) so
loading a config never imports pynetdicom or highdicom, and the config layer imports nothing above it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from mediqa.errors import ConfigError

MAX_PDU_LIMIT = 16 * 1024**2  # what one PDU may make us buffer, at most


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
class DicomOutputConfig:
    """``dicom.output``: quality SRs (``sr``) and, when ``pacs_host`` is set, where to send them.

    """

    sr: bool = True  # write an SR of every result to <state_dir>/sr/ (and send it when a PACS is set)
    pacs_host: str = ""  # empty: no PACS, files only
    pacs_port: int = 104
    pacs_ae_title: str = ""  # the PACS's AE title (required with pacs_host)
    calling_ae_title: str = "MEDIQA"  # ours, as registered on the PACS
    timeout_s: float = 30.0  # connect / association / each answer
    max_attempts: int = 20  # then the row is failed (the file stays)
    backoff_s: float = 10.0  # first retry after this, doubling up to max_backoff_s
    max_backoff_s: float = 900.0
    # Reports hold the patient module: kept this long for inspection and resending by hand, then deleted
    # (never while still to be sent); 0 keeps them for good.
    keep_h: float = 168.0

    def __post_init__(self) -> None:
        for key in ("calling_ae_title", "pacs_ae_title"):
            value = getattr(self, key)
            if (value or key == "calling_ae_title") and (not 0 < len(value) <= 16 or not value.strip()
                                                         or not value.isascii() or "\\" in value):
                raise ConfigError(f"dicom.output.{key} {value!r} is not a DICOM AE title",
                                  "1 to 16 ASCII characters, no backslash")
        if not 0 < self.pacs_port < 65536:
            raise ConfigError(f"dicom.output.pacs_port {self.pacs_port} is out of range",
                              "a TCP port 1..65535, often 104 or 11112")
        if self.max_attempts < 1:
            raise ConfigError(f"dicom.output.max_attempts must be at least 1, got {self.max_attempts}")
        for key in ("timeout_s", "backoff_s", "max_backoff_s"):
            if not getattr(self, key) > 0:
                raise ConfigError(f"dicom.output.{key} must be > 0, got {getattr(self, key)}")
        if not self.keep_h >= 0:
            raise ConfigError(f"dicom.output.keep_h must not be negative, got {self.keep_h}",
                              "hours to keep the SR files (0: keep them for good)")
        if self.pacs_host and not self.sr:
            raise ConfigError("dicom.output.pacs_host is set but sr is false: there would be nothing to send",
                              "set dicom.output.sr: true, or remove pacs_host")
        if self.pacs_host and not self.pacs_ae_title:
            raise ConfigError("dicom.output.pacs_ae_title is empty", "set the PACS's AE title (ask its administrator)")


@dataclass(frozen=True)
class DicomConfig:
    """``dicom:``: a ``node`` section turns the DICOM node on (off by default: a taken port must not stop
    existing sites from starting); ``output`` writes (and sends) an SR of every result."""

    node: DicomNodeConfig | None = None
    spool_dir: str = ""  # "" = <state_dir>/dicom-spool; relative paths live in the state dir
    output: DicomOutputConfig = field(default_factory=DicomOutputConfig)
