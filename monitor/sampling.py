"""The sampling thread: wakes every sample interval, samples, and flushes on time.

It knows nothing of what a sample is: it calls ``sample()`` every ``interval`` seconds
and ``flush()`` every ``flush_interval`` seconds or sooner when ``flush_due()`` says a
document's worth is buffered. A failing call is counted and logged (the first three),
never allowed to end the thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger("tmpwarden.monitor")

LONGEST_SLEEP = 0.25
"""The thread sleeps at most this long at a time, so stop() is never kept waiting long."""
THREAD_NAME = "tmpwarden-monitor"
LOGGED_ERRORS = 3


class _StopFlag:
    """Tells one sampling thread to end (a plain attribute: the cheapest check)."""

    stopped = False


class SamplingThread:
    """A daemon thread calling ``sample`` every ``interval`` seconds (see module docstring).

    ``clock`` is monotonic seconds (injectable). :meth:`start` and :meth:`stop` are
    idempotent; :attr:`cpu_seconds` is the CPU time the thread has used.
    """

    def __init__(
        self,
        sample: Callable[[], object],
        flush: Callable[[], object],
        flush_due: Callable[[], bool],
        *,
        interval: float,
        flush_interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sample = sample
        self._flush = flush
        self._flush_due = flush_due
        self.interval = interval
        self.flush_interval = flush_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._stop_flag = _StopFlag()
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
            self._stop_flag = _StopFlag()
            self._thread = threading.Thread(
                target=self._run, args=(self._stop_flag,), name=THREAD_NAME, daemon=True
            )
            self._thread.start()

    def stop(self) -> bool:
        """Stop the thread; False when it was not running (idempotent)."""
        thread = self._thread
        if thread is None:
            return False
        self._cpu_before_stop = self.cpu_seconds
        self._stop_flag.stopped = True
        thread.join(timeout=LONGEST_SLEEP + 2 * self.interval + 1.0)
        self._thread = None
        return True

    def _run(self, stop: _StopFlag) -> None:
        # Plain sleeps and a flag: on Firecracker every wakeup costs tens of microseconds
        # of CPU, and a timed Event/Lock wait costs more than a sleep.
        interval = self.interval
        clock = self._clock
        next_sample = clock() + interval
        next_flush = clock() + self.flush_interval
        while not stop.stopped:
            delay = next_sample - clock()
            if delay > 0:
                time.sleep(min(delay, LONGEST_SLEEP))
                if delay > LONGEST_SLEEP:
                    continue
            if stop.stopped:
                break
            try:
                self._sample()
                # Flush on time, or when a document's worth of buckets is ready.
                if next_sample >= next_flush or self._flush_due():
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
