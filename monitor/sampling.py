"""The sampling thread: wakes every sample interval, samples, and flushes on time.

It knows nothing of what a sample is: it calls ``sample()`` every ``interval`` seconds
(or, given ``next_interval``, after as many seconds as that says once each sample is
taken: headroom-aware sampling) and ``flush()`` every ``flush_interval`` seconds or
sooner when a document's worth is buffered: ``sample()`` returns True, or
``flush_due()`` says so. A failing call is counted and logged (the first three), never
allowed to end the thread.

Each pass of the loop runs cold, after a sleep, where every Python call costs several
microseconds of CPU (tens on Firecracker): the loop makes as few as it can (one sample,
one interval, no flush check of its own when ``sample()`` reports it).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger("tmpwarden.monitor")

LONGEST_SLEEP = 0.25
"""The thread sleeps at most this long at a time, so stop() is never kept waiting long;
a longer wait (headroom-aware sampling's stretched intervals) is one timed wait on the
stop flag's gate instead: one wakeup per sample, however long the interval."""
THREAD_NAME = "tmpwarden-monitor"
LOGGED_ERRORS = 3


class StopFlag:
    """Tells one sampling thread to end: a plain attribute (the cheapest check) and a
    held lock whose release cuts a long wait short.

    A long wait is one ``Lock.acquire(timeout=...)``: a single C call and one futex
    wait, where ``Event.wait`` runs a Condition's Python code on every wakeup.
    """

    def __init__(self) -> None:
        self.stopped = False
        self.gate = threading.Lock()
        self.gate.acquire()  # held until stop(): acquire(timeout=...) is a timed wait

    def stop(self) -> None:
        self.stopped = True
        with contextlib.suppress(RuntimeError):  # released already: stopped twice
            self.gate.release()


class SamplingThread:
    """A daemon thread calling ``sample`` every ``interval`` seconds (see module docstring).

    ``sample()`` returning True, or ``flush_due()`` (optional) returning True, makes the
    thread flush after that sample.

    ``clock`` is monotonic seconds and ``sleep`` sleeps seconds (both injectable: a
    test runs :meth:`run` on a fake clock; an injected ``sleep`` takes every wait, in
    steps of at most :data:`LONGEST_SLEEP`). ``next_interval`` (seconds, called after each
    sample; ``interval`` when it fails) replaces the fixed ``interval``, which stays the
    first one. :meth:`start` and :meth:`stop` are idempotent; :attr:`cpu_seconds` is the
    CPU time the thread has used.
    """

    def __init__(
        self,
        sample: Callable[[], object],
        flush: Callable[[], object],
        flush_due: Callable[[], bool] | None = None,
        *,
        interval: float,
        flush_interval: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] | None = None,
        next_interval: Callable[[], float] | None = None,
    ) -> None:
        self._sample = sample
        self._flush = flush
        self._flush_due = flush_due
        self.interval = interval
        self.flush_interval = flush_interval
        self._clock = clock
        self._sleep = sleep or time.sleep
        self._long_waits = sleep is None
        self._next_interval = next_interval
        self._lock = threading.Lock()
        self._stop_flag = StopFlag()
        self._cpu_before_stop = 0.0
        self._thread: threading.Thread | None = None
        self.errors = 0

    @property
    def cpu_seconds(self) -> float:
        """CPU time the sampling thread has used (read from outside it: costs it nothing)."""
        thread = self._thread
        if thread is None or thread.ident is None or not thread.is_alive():
            return self._cpu_before_stop
        try:
            clock_id = time.pthread_getcpuclockid(thread.ident)
            return self._cpu_before_stop + time.clock_gettime(clock_id)
        except OSError:  # the thread ended between the checks
            return self._cpu_before_stop

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the thread (idempotent)."""
        with self._lock:
            if self.running:
                return
            # Each thread has its own stop flag: a thread that outlives stop()'s join (a
            # slow statvfs) still ends, even if start() has made a new one meanwhile.
            self._stop_flag = StopFlag()
            self._thread = threading.Thread(
                target=self.run, args=(self._stop_flag,), name=THREAD_NAME, daemon=True
            )
            self._thread.start()

    def stop(self) -> bool:
        """Stop the thread; False when it was not running (idempotent)."""
        thread = self._thread
        if thread is None:
            return False
        self._cpu_before_stop = self.cpu_seconds
        self._stop_flag.stop()
        thread.join(timeout=LONGEST_SLEEP + 2 * self.interval + 1.0)
        self._thread = None
        return True

    def run(self, stop: StopFlag) -> None:
        """The thread's loop, in the calling thread, until ``stop.stopped``."""
        # Plain sleeps and a flag: on Firecracker every wakeup costs tens of microseconds
        # of CPU, and a timed Event wait costs more than a sleep. A wait longer than
        # LONGEST_SLEEP is one timed acquire of the stop flag's gate (a C call, like sleep).
        base = interval = self.interval
        clock = self._clock
        sleep = self._sleep
        long_waits = self._long_waits
        step = self._next_interval
        sample = self._sample
        flush_due = self._flush_due
        wait = stop.gate.acquire
        next_sample = clock() + interval
        next_flush = clock() + self.flush_interval
        while not stop.stopped:
            delay = next_sample - clock()
            if delay > 0:
                if long_waits and delay > LONGEST_SLEEP:
                    wait(True, delay)
                else:
                    sleep(min(delay, LONGEST_SLEEP))
                    if delay > LONGEST_SLEEP:
                        continue
            if stop.stopped:
                break
            interval = base
            try:
                full = sample()
                if step is not None:
                    interval = step()
                # Flush on time, or when a document's worth of buckets is ready.
                if (
                    full is True
                    or next_sample >= next_flush
                    or (flush_due is not None and flush_due())
                ):
                    self._flush()
                    next_flush = clock() + self.flush_interval
            except Exception:  # never let the thread die; count and log
                self.errors += 1
                if self.errors <= LOGGED_ERRORS:
                    log.exception("tmpwarden monitor: sampling failed")
            next_sample += interval
            now = clock()
            if next_sample < now:  # fell behind (or the process was frozen): skip ahead
                next_sample = now + interval
