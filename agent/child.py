"""Setting up the agent's worker processes (header readers, the SR builder): quiet, and gone with the agent."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def quiet_child(parent: int) -> None:
    """A worker logs nothing (its lines would reach stderr without the agent's path scrubber), and dies
    with the agent: killed outright (an OOM kill, ``kill -9``), the agent cannot stop it, and an orphan
    would sit on its memory until the next reboot. Linux says so with a parent-death signal (sent when
    the thread that started the worker ends: a thread that lives as long as the agent); elsewhere the
    executor's own shutdown is all there is."""
    logging.disable(logging.CRITICAL)
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            return
        if os.getppid() != parent:  # the agent died before the signal was asked for
            os._exit(0)
