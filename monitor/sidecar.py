"""StorageMonitor: a facade over the parts that watch ``/tmp`` and memory inside a Lambda.

The parts, each with one job:

* :class:`~monitor.sampling.SamplingThread` wakes every sample interval (the thread);
* :class:`~monitor.thresholds.LevelWatch` turns a sample into level crossings and the
  time-to-full prediction (pure);
* :class:`~monitor.invocation.InvocationRecorder` keeps the invocation's peaks,
  crossings, phases, metrics and :class:`~monitor.metrics.ProcessingState`;
* :class:`~monitor.callbacks.CallbackRegistry` and
  :class:`~monitor.callbacks.CallbackRunner` run callbacks on their own thread;
* :class:`~monitor.emf.EmfEmitter` and :class:`~monitor.emf.SampleBuffer` write EMF;
* a :class:`~monitor.tracing.PhaseTracer` traces phases.

The facade wires them from one :class:`~monitor.config.MonitorConfig` and holds the one
lock they share. Any Lambda can use it; nothing here knows about packaging.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from monitor import records as r
from monitor.callbacks import (
    Callback,
    CallbackRegistry,
    CallbackRunner,
    MonitorEvent,
    cleanup_paths,
    collect_garbage,
)
from monitor.config import MonitorConfig
from monitor.emf import (
    MAX_VALUES_PER_METRIC,
    EmfEmitter,
    LineSink,
    SampleBuffer,
    StdoutSink,
    context_properties,
    last_word_window,
)
from monitor.emf_rules import clean_dimension_value, clean_metric_value
from monitor.errors import ConfigurationError
from monitor.headroom import IntervalPlanner
from monitor.invocation import (
    STATE_FIELDS,
    InvocationRecord,
    InvocationRecorder,
    LevelCrossing,
    OpenPhase,
    Peaks,
)
from monitor.metrics import REGISTRY, Level, MetricGroup, ProcessingState, Resource, StorageMetrics
from monitor.sampler import Probe, Reading, SystemProbe, memory_limit_bytes
from monitor.sampling import SamplingThread
from monitor.shared_state import SharedStateWriter
from monitor.thresholds import LevelSettings, LevelWatch, Prediction, Thresholds
from monitor.tracing import PhaseTracer, default_tracer

HISTORY_SIZE = 600
CALLBACK_DRAIN_SECONDS = 1.0


class StorageMonitor:
    """Watches ``/tmp`` and memory from a daemon thread; see the module docstring.

    ``config`` holds every setting (``None``: :meth:`MonitorConfig.resolve` over
    ``environ``, that is ``TMPWARDEN_*`` variables, else defaults). The rest are the
    parts that are not settings, injectable for tests and other environments: ``sink``
    (where EMF lines go; standard output), ``tracer`` (phase spans; from the config's
    ``tracing``), ``probe`` (a :class:`~monitor.sampler.Reading` of ``/tmp`` and memory;
    statvfs of ``config.path`` and the process's RSS), ``memory_limit`` (bytes; the
    function's configured memory), ``clock`` (monotonic seconds), ``wall_clock`` (epoch
    seconds) and ``environ`` (where the Lambda variables are read; ``os.environ``).
    """

    def __init__(
        self,
        config: MonitorConfig | None = None,
        *,
        sink: LineSink | None = None,
        tracer: PhaseTracer | None = None,
        probe: Probe | None = None,
        memory_limit: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        if config is not None and not isinstance(config, MonitorConfig):
            raise ConfigurationError(
                f"StorageMonitor takes a MonitorConfig, not {type(config).__name__}; "
                "write StorageMonitor(MonitorConfig.resolve(path=..., sample_interval=...))"
            )
        self.config = cfg = config if config is not None else MonitorConfig.resolve(None, environ)
        self._probe: Probe = probe or SystemProbe(cfg.path).read
        self.memory_limit = memory_limit or memory_limit_bytes(
            dict(environ) if environ is not None else None
        )
        self._clock = clock
        self._wall = wall_clock
        self._planner = IntervalPlanner.of(cfg, self.memory_limit)  # None: fixed interval
        self._levels = LevelWatch(
            LevelSettings(
                tmp=Thresholds(cfg.tmp_warning, cfg.tmp_critical, cfg.hysteresis),
                memory=Thresholds(cfg.memory_warning, cfg.memory_critical, cfg.hysteresis),
                predict_horizon=cfg.predict_horizon,
                sample_interval=cfg.sample_interval,
                max_sample_interval=self._planner.maximum if self._planner else 0.0,
            )
        )
        self._callbacks = CallbackRegistry()
        self._runner = CallbackRunner(self._probe, wall_clock)
        self._history: deque[tuple[float, Reading]] = deque(maxlen=HISTORY_SIZE)
        self._last: tuple[float, Reading] | None = None
        self._buffer = SampleBuffer(max(cfg.sample_interval, cfg.flush_interval / 100))
        self._emitter = (
            EmfEmitter(
                sink or StdoutSink(), namespace=cfg.namespace, function_name=cfg.function_name
            )
            if cfg.emf
            else None
        )
        self._tracer = tracer or default_tracer(cfg.tracing, environ)
        self._thread = SamplingThread(
            self._sample,
            self.flush,
            lambda: len(self._buffer) >= MAX_VALUES_PER_METRIC,
            interval=cfg.sample_interval,
            flush_interval=cfg.flush_interval,
            clock=clock,
            next_interval=self._planner.next_interval if self._planner else None,
        )
        self._lock = threading.RLock()
        self.samples_taken = 0
        self._invocation_base = (0.0, 0)  # the thread's CPU seconds, samples taken
        self._share = SharedStateWriter.from_environ(cfg.path, environ)  # the extension reads it
        self._recorder = InvocationRecorder(None, wall_clock(), self._share)
        if cfg.actions:
            self.add_callback(Level.CRITICAL, cleanup_paths(self.cleanup_paths), resource="tmp")
            self.add_callback(Level.WARNING, collect_garbage, resource="memory")

    # -- configuration ------------------------------------------------------------------

    def add_callback(
        self, level: Level | str, callback: Callback, resource: Resource | str = "tmp"
    ) -> None:
        """Run ``callback(event)`` once per crossing of ``level`` by ``resource``.

        Levels: ``warning``, ``critical``, ``predicted_full`` (``tmp`` only);
        resources: ``tmp``, ``memory``. Anything else is a ConfigurationError.
        """
        with self._lock:
            self._callbacks.add(level, callback, resource)

    def register_cleanup(self, path: str | Path) -> Path:
        """A path the critical-``/tmp`` action removes (file or directory tree)."""
        registered = Path(path)
        with self._lock:
            self._callbacks.cleanup.append(registered)
        return registered

    def cleanup_paths(self) -> list[Path]:
        with self._lock:
            return list(self._callbacks.cleanup)

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def thread_cpu_seconds(self) -> float:
        """CPU time the sampling thread has used (read from outside it: costs it nothing)."""
        return self._thread.cpu_seconds

    @property
    def running(self) -> bool:
        return self._thread.running

    def start(self) -> Self:
        """Start the sampling thread (idempotent)."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the sampling thread and flush what it buffered (idempotent)."""
        if self._thread.stop():
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
            self._levels.reset_trend()
            self._recorder = InvocationRecorder(request_id, self._wall(), self._share)
            self._invocation_base = (self._thread.cpu_seconds, self.samples_taken)
        self.sample_now()

    def end_invocation(self, error: BaseException | None = None) -> InvocationRecord:
        """Close open phases, take a last sample, wait briefly for callbacks, flush EMF."""
        with self._lock:
            open_phases = list(self._recorder.open_phases)
        for opened in reversed(open_phases):
            self._finish_phase(opened, error)
        self.sample_now()
        finished = self._runner.drain(CALLBACK_DRAIN_SECONDS)
        with self._lock:
            cpu_before, samples_before = self._invocation_base
            record = self._recorder.record(
                self._wall(),
                self._runner.take_records(),
                0 if finished else 1,
                monitor_cpu_seconds=max(0.0, self._thread.cpu_seconds - cpu_before),
                samples_taken=self.samples_taken - samples_before,
            )
        self.flush()
        if self._emitter is not None:
            properties = {**self._context_properties(), **record.properties()}
            self._emitter.emit_invocation(record.metric_values(), properties, record.ended)
            self._emitter.emit_phases(
                record.phase_durations(), {r.REQUEST_ID: record.request_id}, record.ended
            )
        with self._lock:
            self._recorder.request_id = None
        return record

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
            self._recorder.open(opened)
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
            if not self._recorder.is_open(opened):
                return
        end = self.sample_now()
        with self._lock:
            finished = self._recorder.close(opened, self._wall(), error)
        span = opened.span
        span.annotate("phase", opened.name)
        span.annotate("peak_tmp_bytes", finished.peaks.tmp_used)
        span.annotate("peak_rss_bytes", finished.peaks.memory_used)
        span.add_metadata("storage_start", opened.start_metrics.as_dict())
        span.add_metadata("storage_end", end.as_dict())
        span.end(error)

    def update_state(self, **changes: Any) -> ProcessingState:
        """Update the processing state (``files_processed=...``, ``total_files=...``,
        ``disk_usage=`` bytes, ``cleanup_performed=``, ``estimated_remaining=`` seconds);
        a name that is not a :class:`ProcessingState` field is a ConfigurationError."""
        unknown = set(changes) - STATE_FIELDS
        if unknown:
            raise ConfigurationError(
                f"{', '.join(sorted(unknown))} is not a processing state field; use "
                f"{', '.join(sorted(STATE_FIELDS))}"
            )
        with self._lock:
            return self._recorder.update_state(changes)

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
            self._recorder.add_metric(name, cleaned)

    # -- what it shows ------------------------------------------------------------------

    @property
    def latest(self) -> StorageMetrics | None:
        """The newest sample."""
        last = self._last
        return self._metrics(*last) if last is not None else None

    @property
    def peaks(self) -> Peaks:
        """This invocation's peaks."""
        return self._recorder.peaks

    @property
    def state(self) -> ProcessingState:
        return self._recorder.state

    @property
    def history(self) -> list[StorageMetrics]:
        """Recent samples, oldest first (a bounded ring buffer)."""
        with self._lock:
            samples = list(self._history)
        return [self._metrics(when, reading) for when, reading in samples]

    @property
    def events(self) -> list[LevelCrossing]:
        """This invocation's level crossings so far."""
        with self._lock:
            return list(self._recorder.events)

    @property
    def prediction(self) -> Prediction | None:
        return self._levels.prediction

    def level(self, resource: Resource | str = "tmp") -> Level:
        """The current level of ``resource`` (ok, warning or critical)."""
        return self._levels.level(Resource(resource))

    def next_sample_interval(self) -> float:
        """Seconds the sampling thread waits after the last sample (see
        :class:`~monitor.headroom.IntervalPlanner`; fixed sampling: the sample interval)."""
        return self._planner.next_interval() if self._planner else self.config.sample_interval

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
        Firecracker and this runs up to 100 times a second. A level change is written at
        once (a ``level_change`` record with the samples before it), not at the next
        flush: an out-of-memory kill takes the unflushed samples with it."""
        reading = self._probe()
        wall = self._wall()
        total, available, used, rss = reading
        tmp_fraction = used / total if total else 1.0
        memory_fraction = rss / self.memory_limit
        with self._lock:
            self.samples_taken += 1
            self._last = last = (wall, reading)
            self._history.append(last)
            self._recorder.observe(used, tmp_fraction, rss, memory_fraction)
            levels = self._levels
            now = self._clock()
            if self._planner is not None:
                self._planner.observe(now, used, total, rss)
            fired = levels.observe(now, used, available, tmp_fraction, memory_fraction)
            current = levels.prediction
            seconds_to_full = current.seconds_to_full if current is not None else None
            self._buffer.add(wall, reading, seconds_to_full)
            if fired:
                metrics = self._metrics(wall, reading)
                crossings = [self._fire(*crossed, metrics, seconds_to_full) for crossed in fired]
                if self._emitter is not None:
                    word = {**self._context_properties(), r.PHASE: self.state.current_phase}
                    window = last_word_window(self.config)
                    for crossing in crossings:
                        properties = {**word, **crossing.level_change_properties()}
                        self._emitter.emit_level_change(properties, self._history, window)

    def _fire(
        self,
        resource: Resource,
        level: Level,
        metrics: StorageMetrics,
        seconds_to_full: float | None,
    ) -> LevelCrossing:
        crossing = LevelCrossing(
            metrics.timestamp, level, resource, metrics.fraction(resource), seconds_to_full
        )
        self._recorder.crossed(crossing)
        event = MonitorEvent(level, resource, metrics, seconds_to_full)
        for name, callback in self._callbacks.for_crossing(level, resource):
            self._runner.submit(callback, name, event)
        return crossing

    def flush(self) -> int:
        """Write the buffered samples as EMF now; returns the lines written."""
        with self._lock:
            buckets = self._buffer.take()
            properties = self._context_properties()
        if self._emitter is None or not buckets:
            return 0
        return self._emitter.emit_samples(buckets, self.memory_limit, properties)

    def _context_properties(self) -> dict[str, object]:
        """The request and the limits, stated on every sample and invocation record."""
        total = self._last[1].total_space if self._last else None
        return context_properties(self.config, self._recorder.request_id, total, self.memory_limit)
