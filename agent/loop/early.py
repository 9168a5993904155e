"""The model pass before a series' last file: the slices it will likely choose, passed while the rest arrives.

A series that announces its slice count is scored the moment its last file is indexed, and the model
pass was most of what the technologist then waited for (``docs/performance.md``, "Tracing it"). So while
such a series arrives, the loop predicts which slices the complete series will choose
(``pipeline.early_input``, ``select/predict.py``) and passes those to the model (``scorer.prime``) in a
thread of its own, while the loop goes on indexing the last files. The scorer keeps each slice's outputs
under the digest of its exact input (``scoring/slice_outputs.py``). At completion the series is analysed
as always, from all its files, and only the chosen slices whose input was not seen go to the model: a
prediction that proves wrong costs a model pass, never a wrong result.

Bounded: one pass at a time, started when no series is due; each series at most ``len(EARLY_AT)`` times,
when its arrived instances first reach each fraction of its count; the later passes send only slices not
passed before. Not when the rest of the series is already written and only waits to be indexed (as many
files wait in its folders as it lacks): completion is then as near as the pass would be, and would wait
for it. A series that ever stopped the agent while it was scored is not passed early, and a pass counts
as a scoring attempt until it ends (a decoder that kills the agent here is caught as at completion).
``completion.pass_ahead_on_count: false`` turns it off.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from mediqa.agent.loop.base import LoopBase
from mediqa.agent.pipeline import early_input
from mediqa.agent.scoring.base import SeriesInput
from mediqa.agent.series.tracker import SeriesState
from mediqa.errors import MediqaError

log = logging.getLogger(__name__)

EARLY_AT = (0.8, 0.95, 0.99)  # fractions of the announced count at which the likely chosen slices are passed
EARLY_KEPT = 1000  # series whose early passes are remembered (bounded memory)
SLICE_S = 0.04  # what passing one slice takes, until the early passes measured it (28 crops: ~0.1-0.25 s here)
FIRST_PASS_K = 2  # a series' first pass sends up to 2 x scoring.slices slices (both guesses of select.predict)
LATER_SLICES = 2  # ... a later one only those its guesses changed: a slice or two
JOIN_S = 30.0  # how long stopping the agent waits for an early pass still running


@dataclass
class EarlyPass:
    """A model pass running in its thread, for the series ``series_uid``."""

    series_uid: str
    series_key: str
    thread: threading.Thread | None = None
    started: float = 0.0  # time.perf_counter() when the thread started
    seconds: float = 0.0  # how long the model pass took
    slices: int = 0  # slices the model was fed
    failed: str = ""  # the exception's type, when it failed
    done: threading.Event = field(default_factory=threading.Event)


class EarlyPassJob(LoopBase):
    _early: dict[str, int]  # series uid -> how many of EARLY_AT it has been passed at
    _early_pass: EarlyPass | None  # the pass running now (one at a time)
    _early_slice_s: float  # what passing one slice took lately (the early passes' own measure)
    _early_seen_at: float  # when the series were last looked at (the agent's clock)

    def _pass_early(self) -> None:
        """Start passing one arriving series' likely chosen slices to the model, if one has reached the next
        fraction of its count and no pass is running."""
        self._reap_early()
        prime: Callable[[SeriesInput], int] | None = getattr(self.scorer, "prime", None)
        if prime is None or not self.config.completion.pass_ahead_on_count or self.due_left \
                or self._early_pass is not None:
            return
        st = self._early_candidate()
        if st is None:
            return
        uid = st.series_uid
        if len(self._early) >= EARLY_KEPT and uid not in self._early:
            del self._early[next(iter(self._early))]
        self._early[uid] = _stage(st)
        records = self.tracker.records(uid)
        stored = self.tracker.saliency(uid) if self.config.scoring.selection == "salient" else None
        try:
            self.tracker.begin_attempt(uid)  # a crash from here on counts, as at completion (ended at the reap)
        except sqlite3.OperationalError:
            return
        running = EarlyPass(uid, st.series_key)
        self._early_pass = running
        try:
            inputs = early_input(records, st.expected or 0, self.config, stored_saliency=stored)
        except MediqaError as exc:  # what the files hold: completion says it, in the series' result
            log.debug("series %s: no early model pass (%s)", st.series_key, type(exc).__name__)
            inputs = None
        except Exception as exc:  # noqa: BLE001 - an optimisation: the series is scored at completion as always
            self._internal_error(f"predicting the slices of series {st.series_key}", exc)
            inputs = None
        if inputs is None:
            running.done.set()
            self._reap_early()
            return
        contend = getattr(self.scorer, "set_contended", None)
        if contend is not None:
            contend(self._pool.in_flight() > 0)  # our reading workers hold both cores right now
        # ONNX Runtime leaves the GIL while it computes: the loop goes on indexing the series' last files.
        running.thread = threading.Thread(target=_prime, args=(prime, inputs, running), name="mediqa-early-pass",
                                          daemon=True)
        running.started = time.perf_counter()
        running.thread.start()

    def _reap_early(self, wait: bool = False) -> None:
        """The pass that ran, once it is done (``wait``: until it is): its attempt ended, what it did logged."""
        running = self._early_pass
        if running is None or not (running.done.is_set() or wait):
            return
        if running.thread is not None:
            running.thread.join(JOIN_S if wait else None)
            if running.thread.is_alive():
                return  # still running after JOIN_S: the agent stops without it (a daemon thread)
        self._early_pass = None
        with contextlib.suppress(sqlite3.Error):
            self.tracker.end_attempt(running.series_uid)
        if running.slices:  # measured with the loop's own work beside it, as the next pass will run
            self._early_slice_s = 0.5 * self._early_slice_s + 0.5 * running.seconds / running.slices
        if running.failed:
            log.warning("series %s: the early model pass failed (%s); it is scored at completion as always",
                        running.series_key, running.failed)
        else:
            log.debug("series %s: %d slices passed to the model early (%.0f ms)", running.series_key, running.slices,
                      running.seconds * 1000)

    def _early_candidate(self) -> SeriesState | None:
        """An open series with a count, arrived this run, that reached its next fraction of the count.

        Only series with a file recorded since the last look are looked at (``_applied``): a fast export
        makes a pass per file, and a query over every open series per pass slowed the loop down.
        """
        since, self._early_seen_at = self._early_seen_at, self.clock()
        for uid in [uid for uid, at in self._applied.items() if at >= since]:
            st = self.tracker.state(uid)
            if st is None or st.state not in ("open", "reopened"):
                continue
            if st.expected is None or st.instances >= st.expected or st.attempts > 0:
                continue  # no count, due by its count now, or it once stopped the agent
            if st.series_uid not in self._arrived:
                continue  # arrived before this start: completion comes at once
            if _stage(st) <= self._early.get(st.series_uid, 0):
                continue
            left = st.expected - st.instances
            first = self._early.get(st.series_uid, 0) == 0
            slices = self.config.scoring.slices * FIRST_PASS_K if first else LATER_SLICES
            if left / _rate(st) < slices * self._early_slice_s:
                continue  # the rest arrives before the pass would end: completion would wait for it
            if self._waiting_in(self.tracker.folders(st.series_uid)) >= left:
                continue  # the rest is written and waits to be indexed: completion is as near as this pass
            return st
        return None

    def _waiting_in(self, folders: set[str]) -> int:
        """Files found in ``folders`` and not indexed yet (this series' or another's)."""
        return sum(len(self._pending.get(folder, ())) for folder in folders)


def _prime(prime: Callable[[SeriesInput], int], inputs: SeriesInput, running: EarlyPass) -> None:
    """In the pass's thread: feed the model; never raises (the loop logs what happened at the reap)."""
    try:
        running.slices = prime(inputs)
        running.seconds = time.perf_counter() - running.started
    except Exception as exc:  # noqa: BLE001 - an optimisation: the series is scored at completion as always
        running.failed = type(exc).__name__
    finally:
        running.done.set()


def _rate(st: SeriesState) -> float:
    """Instances per second the series arrives at (as indexed this run; at least one per second)."""
    return max(1.0, st.instances / max(1e-3, st.last_arrival - st.first_arrival))


def _stage(st: SeriesState) -> int:
    """How many of ``EARLY_AT`` the series' arrived instances have reached."""
    expected = st.expected or 0
    return sum(st.instances >= fraction * expected for fraction in EARLY_AT) if expected > 1 else 0
