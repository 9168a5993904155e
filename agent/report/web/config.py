"""The console's settings and where it listens.

``ConsoleConfig`` is the ``console:`` block of ``agent.yaml``, defined in ``agent/config_console.py`` (the
config layer, below the report layer that uses it); everything here reads it through ``ConsoleSettings``.

The console listens on loopback by default: a scanner console's page is for the person at that console.
Any other address is refused unless a token guards it (``security.py``); ``off`` turns the console off.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Protocol

from mediqa.agent.config_console import DEFAULT_LISTEN as DEFAULT_LISTEN  # re-exported
from mediqa.agent.config_console import ConsoleConfig as ConsoleConfig  # re-exported
from mediqa.errors import ConfigError

MIN_TOKEN_CHARS = 16


class ConsoleSettings(Protocol):
    """What the console reads from its settings (``ConsoleConfig`` or ``AgentConfig.console``)."""

    @property
    def listen(self) -> str: ...
    @property
    def token(self) -> str: ...
    @property
    def show_patient(self) -> bool: ...
    @property
    def sheets_max_age_h(self) -> float: ...
    @property
    def sheets_max_mb(self) -> float: ...
    @property
    def site(self) -> str: ...
    @property
    def station(self) -> str: ...


@dataclass(frozen=True)
class Listen:
    host: str
    port: int

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and the name ``localhost``; any other name counts as reachable from elsewhere."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_listen(text: str) -> Listen | None:
    """``host:port`` (``[v6]:port``) -> ``Listen``; ``off`` or empty -> None. Raises ``ConfigError``."""
    value = text.strip()
    if value.lower() in ("", "off", "no", "false"):
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise ConfigError(f"console.listen {text!r} is not host:port", f"e.g. {DEFAULT_LISTEN}, or off")
    bracketed = host.startswith("[") and host.endswith("]")
    host = host[1:-1] if bracketed else host
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"console.listen {text!r}: the port must be 0..65535", f"e.g. {DEFAULT_LISTEN}")
    if ":" in host or bracketed:
        try:
            ipaddress.IPv6Address(host)
            if not bracketed:
                raise ValueError(host)
        except ValueError:
            raise ConfigError(f"console.listen {text!r}: an IPv6 address goes in brackets", "e.g. [::1]:8765") \
                from None
    return Listen(host, int(port))


def check_console(cfg: ConsoleSettings) -> Listen | None:
    """Validate the console settings at start; returns where to listen (None: off)."""
    where = parse_listen(cfg.listen)
    if cfg.token and len(cfg.token) < MIN_TOKEN_CHARS:
        raise ConfigError(f"console.token is shorter than {MIN_TOKEN_CHARS} characters",
                          "leave it empty to have one generated, or use a long random one")
    for name, value in (("console.sheets_max_age_h", cfg.sheets_max_age_h),
                        ("console.sheets_max_mb", cfg.sheets_max_mb)):
        if value < 0:
            raise ConfigError(f"{name} must not be negative (0 turns the limit off)")
    return where
