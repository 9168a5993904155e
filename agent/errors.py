"""The few error types users see. Each message says what was found and what to do.

User errors (``MediqaError``) make the CLI exit 1 with one line; anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations


class MediqaError(Exception):
    """An error the user can fix; ``remedy`` tells them how."""

    def __init__(self, message: str, remedy: str | None = None) -> None:
        super().__init__(message)
        self.remedy = remedy

    def __str__(self) -> str:
        base = super().__str__()
        return f"{base} ({self.remedy})" if self.remedy else base


class ConfigError(MediqaError):
    """The configuration file is missing, malformed or names an unknown key."""


class DicomSkip(MediqaError):
    """A file that is not (or not yet) a scorable DICOM image. ``reason`` is a short code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class SeriesError(MediqaError):
    """A series cannot be assembled into a volume (no usable images, inconsistent geometry)."""


class ModelError(MediqaError):
    """A model file or its model card is missing or inconsistent."""


class BackendUnavailable(MediqaError):
    """An inference backend cannot run here; the message says why (package, GPU, engine...)."""
