"""StorageMonitor: the background thread that samples ``/tmp`` and memory and acts.

It samples every ``sample_interval``, tracks levels with hysteresis and the
time-to-full trend, runs callbacks on their own thread, aggregates samples into
EMF documents flushed every ``flush_interval`` and at the end of every invocation,
and traces phases. Any Lambda can use it; nothing here knows about packaging.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from monitor.callbacks import (
    Callback,
    CallbackRunner,
    MonitorEvent,
    cleanup_paths,
    collect_garbage,
)
from monitor.config import MonitorConfig
from monitor.emf import MAX_VALUES_PER_METRIC, EmfEmitter, LineSink, SampleBuffer, StdoutSink
from monitor.emf_rules import MAX_METRIC_VALUE, clean_dimension_value, clean_metric_value
from monitor.errors import ConfigurationError
from monitor.invocation import InvocationSummary, LevelEvent, OpenPhase, Peaks, PhaseRecord
from monitor.metrics import (
    REGISTRY,
    Level,
    MetricGroup,
    ProcessingState,
    Resource,
    StorageMetrics,
)
from monitor.sampler import Probe, Reading, SystemProbe, memory_limit_bytes
from monitor.thresholds import LevelTracker, Prediction, PredictiveAlarm, Thresholds, TrendPredictor
from monitor.tracing import PhaseTracer, default_tracer

log = logging.getLogger("tmpwarden.monitor")

HISTORY_SIZE = 600
CALLBACK_DRAIN_SECONDS = 1.0
MAX_TREND_WINDOW = 10.0
TREND_POINTS = 20
"""Points of the time-to-full trend per window (samples in between only aggregate)."""
LONGEST_SLEEP = 0.25
"""The thread sleeps at most this long at a time, so stop() is never kept waiting long."""
CALLBACK_LEVELS = {
    Resource.TMP: (Level.WARNING, Level.PREDICTED_FULL, Level.CRITICAL),
    Resource.MEMORY: (Level.WARNING, Level.CRITICAL),
}


class _StopFlag:
    """Tells one sampling thread to end (a plain attribute: the cheapest check)."""

    stopped = False


class StorageMonitor:
    """Watches ``/tmp`` and memory from a daemon thread; see the module docstring.

    Settings not given as arguments come from ``TMPWARDEN_*`` variables, else defaults
    (see :class:`~monitor.config.MonitorConfig`). ``sink``, ``tracer``, ``probe`` and
    the clocks are injectable for tests and for other environments.
    """

    # Per-invocation state, set by _reset_invocation.
    _request_id: str | None
    _invocation_start: float
    _peaks: Peaks
    _events: list[LevelEvent]
    _phases: list[PhaseRecord]
    _open_phases: list[OpenPhase]
    _extra_metrics: dict[str, float]
    _state: ProcessingState

    def __init__(
        self,
        path: str | Path | None = None,
        sample_interval: float | None = None,
        *,
        flush_interval: float | None = None,
        tmp_warning: float | None = None,
        tmp_critical: float | None = None,
        memory_warning: float | None = None,
        memory_critical: float | None = None,
        hysteresis: float | None = None,
        predict_horizon: float | None = None,
        namespace: str | None = None,
        actions: bool | None = None,
        emf: bool | None = None,
        tracing: str | None = None,
        function_name: str | None = None,
        sink: LineSink | None = None,
        tracer: PhaseTracer | None = None,
        probe: Probe | None = None,
        memory_limit: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.config = MonitorConfig.resolve(
            {
                "path": str(path) if path is not None else None,
                "sample_interval": sample_interval,
                "flush_interval": flush_interval,
                "tmp_warning": tmp_warning,
                "tmp_critical": tmp_critical,
                "memory_warning": memory_warning,
                "memory_critical": memory_critical,
                "hysteresis": hysteresis,
                "predict_horizon": predict_horizon,
                "namespace": namespace,
                "actions": actions,
                "emf": emf,
                "tracing": tracing,
                "function_name": function_name,
            },
            environ,
        )
        cfg = self.config
        self._probe: Probe = probe or SystemProbe(cfg.path).read
        self.memory_limit = memory_limit or memory_limit_bytes(
            dict(environ) if environ is not None else None
        )
        self._clock = clock
        self._wall = wall_clock
        self._tmp_levels = LevelTracker(
            Thresholds(cfg.tmp_warning, cfg.tmp_critical, cfg.hysteresis)
        )
        self._memory_levels = LevelTracker(
            Thresholds(cfg.memory_warning, cfg.memory_critical, cfg.hysteresis)
        )
        window = min(max(cfg.predict_horizon / 3, 5 * cfg.sample_interval), MAX_TREND_WINDOW)
        self._trend = TrendPredictor(
            window,
            min_samples=5,
            min_span=window / 4,
            max_gap=max(10 * cfg.sample_interval, 2.0),
        )
        self._predictive = PredictiveAlarm(cfg.predict_horizon)
        self._trend_spacing = max(window / TREND_POINTS, cfg.sample_interval) * 0.999
        # Precomputed for the hot path's "nothing can fire" test.
        self._quiet = True
        self._tmp_quiet_below = self._tmp_levels.quiet_below
        self._memory_quiet_below = self._memory_levels.quiet_below
        self._horizon = 2 * cfg.predict_horizon
        self._callbacks: dict[tuple[Level, Resource], list[tuple[str, Callback]]] = {}
        self._runner = CallbackRunner(self._probe, wall_clock)
        self._cleanup: list[Path] = []
        self._history: deque[tuple[float, Reading]] = deque(maxlen=HISTORY_SIZE)
        self._last: tuple[float, Reading] | None = None
        self._next_trend = 0.0
        self._buffer = SampleBuffer(max(cfg.sample_interval, cfg.flush_interval / 100))
        self._emitter = (
            EmfEmitter(
                sink or StdoutSink(), namespace=cfg.namespace, function_name=cfg.function_name
            )
            if cfg.emf
            else None
        )
        self._tracer = tracer or default_tracer(cfg.tracing, environ)
        self._lock = threading.RLock()
        self._stop_flag = _StopFlag()
        self._cpu_before_stop = 0.0
        self._thread: threading.Thread | None = None
        self._prediction: Prediction | None = None
        self._sampler_errors = 0
        self.samples_taken = 0
        self._reset_invocation(None)
        if cfg.actions:
            self.add_callback(Level.CRITICAL, cleanup_paths(self.cleanup_paths), resource="tmp")
            self.add_callback(Level.WARNING, collect_garbage, resource="memory")

    # -- configuration ------------------------------------------------------------------

    def add_callback(
        self, level: Level | str, callback: Callback, resource: Resource | str = "tmp"
    ) -> None:
        """Run ``callback(event)`` once per crossing of ``level`` by ``resource``.

        Levels: ``warning``, ``critical``, ``predicted_full`` (``tmp`` only);
        resources: ``tmp``, ``memory``.
        """
        try:
            chosen_resource = Resource(resource)
            chosen_level = Level(level)
        except ValueError:
            raise ConfigurationError(
                f"no callbacks for level {level!r} of resource {resource!r}; levels are "
                "warning, critical, predicted_full (tmp only); resources are tmp, memory"
            ) from None
        if chosen_level not in CALLBACK_LEVELS[chosen_resource]:
            raise ConfigurationError(
                f"level {chosen_level.value!r} does not apply to {chosen_resource.value}"
            )
        name = getattr(callback, "__name__", repr(callback))
        with self._lock:
            self._callbacks.setdefault((chosen_level, chosen_resource), []).append((name, callback))

    def register_cleanup(self, path: str | Path) -> Path:
        """A path the critical-``/tmp`` action removes (file or directory tree)."""
        registered = Path(path)
        with self._lock:
            self._cleanup.append(registered)
        return registered

    def cleanup_paths(self) -> list[Path]:
        with self._lock:
            return list(self._cleanup)

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def thread_cpu_seconds(self) -> float:
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

    def start(self) -> Self:
        """Start the sampling thread (idempotent)."""
        with self._lock:
            if self.running:
                return self
            # Each thread has its own stop flag: a thread that outlives stop()'s join (a
            # slow statvfs) still ends, even if start() has made a new one meanwhile.
            self._stop_flag = _StopFlag()
            self._thread = threading.Thread(
                target=self._run, args=(self._stop_flag,), name="tmpwarden-monitor", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the sampling thread and flush what it buffered (idempotent)."""
        thread = self._thread
        if thread is None:
            return
        self._cpu_before_stop = self.thread_cpu_seconds
        self._stop_flag.stopped = True
        thread.join(timeout=LONGEST_SLEEP + 2 * self.config.sample_interval + 1.0)
        self._thread = None
        self.flush()

    def __enter__(self) -> Self:
        self.start()
        self.begin_invocation()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.end_invocation(exc)
        finally:
            self.stop()

    def begin_invocation(self, request_id: str | None = None) -> None:
        """Start a fresh invocation: peaks, events and phases reset; a baseline sample."""
        self.start()
        with self._lock:
            self._buffer.take()  # idle samples from between invocations are not reported
            self._trend.reset()
            self._reset_invocation(request_id)
        self.sample_now()

    def end_invocation(self, error: BaseException | None = None) -> InvocationSummary:
        """Close open phases, take a last sample, wait briefly for callbacks, flush EMF."""
        with self._lock:
            open_phases = list(self._open_phases)
        for opened in reversed(open_phases):
            self._finish_phase(opened, error)
        self.sample_now()
        finished = self._runner.drain(CALLBACK_DRAIN_SECONDS)
        with self._lock:
            summary = InvocationSummary(
                request_id=self._request_id,
                started=self._invocation_start,
                ended=self._wall(),
                peaks=self._peaks,
                events=list(self._events),
                phases=list(self._phases),
                callbacks=self._runner.take_records(),
                callbacks_unfinished=0 if finished else 1,
                extra_metrics=dict(self._extra_metrics),
            )
        self.flush()
        if self._emitter is not None:
            properties = {**self._common_properties(), **summary.properties()}
            self._emitter.emit_invocation(summary.metric_values(), properties, summary.ended)
            self._emitter.emit_phases(
                summary.phase_durations(), {"RequestId": summary.request_id}, summary.ended
            )
        with self._lock:
            self._request_id = None
        return summary

    # -- what the monitored code reports ---------------------------------------------------

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[OpenPhase]:
        """Mark a phase of work: a trace span, peaks and a duration of its own.

        ``name`` becomes the ``Phase`` dimension: a name CloudWatch would refuse (empty,
        non-ASCII, control characters, over 1024 characters) is cleaned here, with a
        warning, e.g. ``téléchargement`` becomes ``telechargement``.
        """
        name = clean_dimension_value(name, "phase name")
        span = self._tracer.begin(name)
        start = self.sample_now()
        opened = OpenPhase(name, self._wall(), start, Peaks.of(start), span)
        with self._lock:
            self._open_phases.append(opened)
            self._state = replace(self._state, current_phase=name)
        error: BaseException | None = None
        try:
            yield opened
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._finish_phase(opened, error)

    def _finish_phase(self, opened: OpenPhase, error: BaseException | None) -> None:
        with self._lock:
            if opened not in self._open_phases:
                return
        end = self.sample_now()
        with self._lock:
            self._open_phases.remove(opened)
            parent = self._open_phases[-1].name if self._open_phases else None
            self._state = replace(self._state, current_phase=parent)
            record = PhaseRecord(
                opened.name,
                opened.start,
                self._wall(),
                opened.peaks,
                f"{type(error).__name__}: {error}" if error is not None else None,
            )
            self._phases.append(record)
        span = opened.span
        span.annotate("phase", opened.name)
        span.annotate("peak_tmp_bytes", record.peaks.tmp_used)
        span.annotate("peak_rss_bytes", record.peaks.memory_used)
        span.add_metadata("storage_start", opened.start_metrics.as_dict())
        span.add_metadata("storage_end", end.as_dict())
        span.end(error)

    def update_state(self, **changes: Any) -> ProcessingState:
        """Update the processing state (files_processed=..., total_files=..., ...)."""
        with self._lock:
            self._state = replace(self._state, **changes)
            return self._state

    def put_metric(self, name: str, value: float) -> None:
        """Add to a per-invocation metric from the registry (e.g. ``TargetsSucceeded``).

        An unknown name or a value that is not a number is a ConfigurationError now; a
        NaN or infinite value is left out with a warning, a value beyond CloudWatch's
        +-2^360 is clamped (see :func:`~monitor.emf_rules.clean_metric_value`).
        """
        definition = REGISTRY.get(name) if isinstance(name, str) else None
        if definition is None or definition.group is not MetricGroup.INVOCATION:
            known = sorted(n for n, s in REGISTRY.items() if s.group is MetricGroup.INVOCATION)
            raise ConfigurationError(
                f"{name!r} is not a per-invocation metric; use one of {', '.join(known)}"
            )
        cleaned = clean_metric_value(name, value)
        if cleaned is None:
            return
        with self._lock:
            total = self._extra_metrics.get(name, 0) + cleaned
            self._extra_metrics[name] = max(-MAX_METRIC_VALUE, min(total, MAX_METRIC_VALUE))

    # -- what it shows ------------------------------------------------------------------

    @property
    def latest(self) -> StorageMetrics | None:
        """The newest sample."""
        last = self._last
        return self._metrics(*last) if last is not None else None

    @property
    def peaks(self) -> Peaks:
        """This invocation's peaks."""
        return self._peaks

    @property
    def state(self) -> ProcessingState:
        return self._state

    @property
    def history(self) -> list[StorageMetrics]:
        """Recent samples, oldest first (a bounded ring buffer)."""
        with self._lock:
            samples = list(self._history)
        return [self._metrics(when, reading) for when, reading in samples]

    @property
    def events(self) -> list[LevelEvent]:
        """This invocation's level crossings so far."""
        with self._lock:
            return list(self._events)

    @property
    def prediction(self) -> Prediction | None:
        return self._prediction

    def drain_callbacks(self, timeout: float = 5.0) -> bool:
        """Wait for queued callbacks to finish (for tests and orderly shutdown)."""
        return self._runner.drain(timeout)

    # -- sampling -----------------------------------------------------------------------

    def sample_now(self) -> StorageMetrics:
        """Take one sample now: update peaks, levels and prediction; fire callbacks."""
        self._sample()
        latest = self.latest
        assert latest is not None
        return latest

    def _metrics(self, timestamp: float, reading: Reading) -> StorageMetrics:
        return StorageMetrics(
            total_space=reading.total_space,
            available_space=reading.available_space,
            used_space=reading.used_space,
            threshold_warning=self.config.tmp_warning,
            threshold_critical=self.config.tmp_critical,
            timestamp=timestamp,
            memory_used=reading.memory_used,
            memory_limit=self.memory_limit,
        )

    def _sample(self) -> None:
        """The hot path: kept lean, because every wakeup of a thread is costly on
        Firecracker and this runs up to 100 times a second."""
        reading = self._probe()
        wall = self._wall()
        total, available, used, rss = reading
        tmp_fraction = used / total if total else 1.0
        memory_fraction = rss / self.memory_limit
        with self._lock:
            self.samples_taken += 1
            self._last = last = (wall, reading)
            self._history.append(last)
            peaks = self._peaks
            if used > peaks.tmp_used or rss > peaks.memory_used:
                self._peaks = peaks.merged(used, tmp_fraction, rss, memory_fraction)
            for opened in self._open_phases:
                opened.peaks = opened.peaks.merged(used, tmp_fraction, rss, memory_fraction)
            prediction = None
            now = self._clock()
            if now >= self._next_trend:
                # The trend spans seconds: about TREND_POINTS points per window are plenty.
                self._next_trend = now + self._trend_spacing
                prediction = self._prediction = self._trend.add(now, used, available)
            current = self._prediction
            seconds_to_full = current.seconds_to_full if current is not None else None
            self._buffer.add(wall, reading, seconds_to_full)
            if (
                self._quiet
                and tmp_fraction < self._tmp_quiet_below
                and memory_fraction < self._memory_quiet_below
                and (prediction is None or prediction.seconds_to_full > self._horizon)
            ):
                return  # nothing can fire: every level is armed and usage is below them
            fired = self._evaluate(tmp_fraction, memory_fraction, prediction)
            self._quiet = (
                self._tmp_levels.all_armed
                and self._memory_levels.all_armed
                and self._predictive.armed
            )
            if fired:
                metrics = self._metrics(wall, reading)
                for resource, level in fired:
                    self._fire(resource, level, metrics, seconds_to_full)

    def _evaluate(
        self, tmp_fraction: float, memory_fraction: float, prediction: Prediction | None
    ) -> list[tuple[Resource, Level]]:
        critical_before = self._tmp_levels.level is Level.CRITICAL
        tmp = self._tmp_levels.update(tmp_fraction)
        predicted = self._predictive.update(prediction, critical_active=critical_before)
        fired: list[tuple[Resource, Level]] = []
        if Level.WARNING in tmp:
            fired.append((Resource.TMP, Level.WARNING))
        if predicted:
            fired.append((Resource.TMP, Level.PREDICTED_FULL))
        if Level.CRITICAL in tmp:
            fired.append((Resource.TMP, Level.CRITICAL))
        fired.extend((Resource.MEMORY, lv) for lv in self._memory_levels.update(memory_fraction))
        return fired

    def _fire(
        self,
        resource: Resource,
        level: Level,
        metrics: StorageMetrics,
        seconds_to_full: float | None,
    ) -> None:
        self._events.append(
            LevelEvent(
                metrics.timestamp, level, resource, metrics.fraction(resource), seconds_to_full
            )
        )
        event = MonitorEvent(level, resource, metrics, seconds_to_full)
        for name, callback in self._callbacks.get((level, resource), []):
            self._runner.submit(callback, name, event)

    def level(self, resource: Resource | str = "tmp") -> Level:
        """The current level of ``resource`` (ok, warning or critical)."""
        tracker = self._tmp_levels if Resource(resource) is Resource.TMP else self._memory_levels
        return tracker.level

    def flush(self) -> int:
        """Write the buffered samples as EMF now; returns the lines written."""
        with self._lock:
            buckets = self._buffer.take()
            properties = self._common_properties()
        if self._emitter is None or not buckets:
            return 0
        return self._emitter.emit_samples(buckets, self.memory_limit, properties)

    def _common_properties(self) -> dict[str, object]:
        cfg = self.config
        return {
            "RequestId": self._request_id,
            "TmpPath": cfg.path,
            "TmpTotalBytes": self._last[1].total_space if self._last else None,
            "MemoryLimitBytes": self.memory_limit,
            "TmpWarningPercent": round(cfg.tmp_warning * 100, 2),
            "TmpCriticalPercent": round(cfg.tmp_critical * 100, 2),
            "MemoryWarningPercent": round(cfg.memory_warning * 100, 2),
            "MemoryCriticalPercent": round(cfg.memory_critical * 100, 2),
        }

    def _reset_invocation(self, request_id: str | None) -> None:
        self._request_id = request_id
        self._invocation_start = self._wall()
        self._peaks = Peaks()
        self._events = []
        self._phases = []
        self._open_phases = []
        self._extra_metrics = {}
        self._state = ProcessingState()

    def _run(self, stop: _StopFlag) -> None:
        # Plain sleeps and a flag: on Firecracker every wakeup costs tens of microseconds
        # of CPU, and a timed Event/Lock wait costs more than a sleep.
        interval = self.config.sample_interval
        clock = self._clock
        next_sample = clock() + interval
        next_flush = clock() + self.config.flush_interval
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
                if next_sample >= next_flush or len(self._buffer) >= MAX_VALUES_PER_METRIC:
                    self.flush()
                    next_flush = clock() + self.config.flush_interval
            except Exception:  # never let the thread die; count and log
                self._sampler_errors += 1
                if self._sampler_errors <= 3:
                    log.exception("tmpwarden monitor: sampling failed")
            next_sample += interval
            now = clock()
            if next_sample < now:  # fell behind (or the process was frozen): skip ahead
                next_sample = now + interval
