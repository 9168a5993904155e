"""The UIDs of a quality SR, derived from the result and the source series (no highdicom: the agent needs them)."""

from __future__ import annotations

import uuid

from pydicom.uid import generate_uid


def sr_instance_uid(result_uuid: str) -> str:
    """The SR SOP Instance UID of a result: the standard UUID-derived form ``2.25.<integer>``."""
    return f"2.25.{uuid.UUID(str(result_uuid)).int}"


def sr_series_uid(source_series_uid: str) -> str:
    """One SR series per source series, the same on every run and every agent."""
    return str(generate_uid(entropy_srcs=["mediqa-quality-sr", str(source_series_uid)]))
