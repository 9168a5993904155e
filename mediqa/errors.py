"""The project's one error hierarchy. Each message says what was found and what to do.

User errors (``MediqaError``) make the CLI exit 1 with one line; anything else is a bug and keeps
its traceback. Part of the contract floor: imports nothing of ours, so every layer can raise these.
``DicomSkip`` is not a user-facing error: it is how the reader says "not (or not yet) a scorable image".
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


class SeriesError(MediqaError):
    """A series cannot be assembled into a volume (no usable images, inconsistent geometry)."""


class ModelError(MediqaError):
    """A model file or its model card is missing or inconsistent."""


class BackendUnavailable(MediqaError):
    """An inference backend cannot run here; the message says why (package, GPU, engine...)."""


SKIP_KINDS = ("package", "gpu", "engine", "load", "gate", "config")


class Skip(BackendUnavailable):
    """Why one backend cannot run here; ``kind`` is one of SKIP_KINDS (the chain groups messages by it)."""

    def __init__(self, kind: str, message: str, remedy: str | None = None) -> None:
        super().__init__(message, remedy)
        self.kind = kind


class CannotBuildHere(BackendUnavailable):
    """No TensorRT or no GPU here; raised only after the FP16 ONNX was written and checked."""


class DicomSkip(Exception):
    """A file that is not (or not yet) a scorable DICOM image.

    ``reason`` is a short code (``not_dicom``, ``incomplete``...); ``retry`` says the file may still be
    arriving (half-written) and is worth reading again once it is stable; ``series_uid`` is set when the
    header named its series, so the series' result can say how many of its images could be read.
    """

    def __init__(self, reason: str, detail: str = "", retry: bool = False, series_uid: str | None = None) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.retry = retry
        self.series_uid = series_uid
