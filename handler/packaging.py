"""One target: plan (inspect + estimate) -> choose a strategy -> run it, with retries and
cleanup between attempts.

``package`` is the plain entry point (the CLI's); ``package_target`` is what the Lambda
runs for each target of an event: it plans, falls back from ``extract`` to ``stream``
when storage runs short, retries transient failures with backoff and jitter, and never
starts an attempt without the time to finish it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from handler.deadline import Deadline, OutOfTimeError, bounded, longest_wait
from handler.errors import CommitUnverifiedError, InsufficientStorageError
from handler.events import SUCCEEDED, UNVERIFIED, StrategyChoice, Target, TargetResult, error_dict
from handler.extract import StreamingExtractor
from handler.formats import SNIFF_SIZE, detect_format
from handler.locations import Destination, IfExists, Source, open_destination, open_source
from handler.logs import log_context
from handler.members import ArchiveFormat
from handler.memory import MemoryPlan, check_memory, explain, function_memory_limit, plan_memory
from handler.retry import RetryPolicy, is_transient
from handler.settings import HandlerSettings
from handler.storage import StorageManager, Strategy
from handler.strategies import (
    PackageOptions,
    PackageResult,
    PhaseReporter,
    SourceProgress,
    run_extract,
    run_stream,
)
from handler.streams import read_head
from monitor import records
from monitor.units import format_size

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from monitor.sidecar import StorageMonitor

log = logging.getLogger("tmpwarden.handler")

__all__ = [
    "Decision",
    "OutOfTimeError",
    "PackageOptions",
    "PackageResult",
    "package",
    "package_target",
    "plan",
]


@dataclass(frozen=True, slots=True)
class Decision:
    """The strategy chosen for a target, and why (logged, for the post-incident reader)."""

    strategy: Strategy
    reason: str
    total_files: int | None = None
    """Files the target will package, when the plan read the archive's headers."""


def package(
    source: Source | str | os.PathLike[str],
    destination: Destination | str | os.PathLike[str],
    options: PackageOptions | None = None,
    *,
    progress: SourceProgress | None = None,
    s3: S3Client | None = None,
    clock: Callable[[], float] = time.monotonic,
    if_exists: IfExists = "overwrite",
) -> PackageResult:
    """Stream the archive at ``source`` into a ZIP at ``destination`` (paths or s3:// URLs).

    The destination is complete and verified when this returns, and absent when it raises
    (except CommitUnverifiedError: written, but what is at the key could not be verified).
    ``if_exists="fail"`` refuses to replace an existing destination (DestinationExistsError).
    """
    src = source if not isinstance(source, str | os.PathLike) else open_source(source, s3=s3)
    dest = (
        destination
        if not isinstance(destination, str | os.PathLike)
        else open_destination(destination, s3=s3, if_exists=if_exists)
    )
    try:
        return run_stream(src, dest, options or PackageOptions(), progress=progress, clock=clock)
    except (MemoryError, RuntimeError) as exc:
        exhausted = explain(exc, plan_memory(src.name, dest.name, src.size()))
        if exhausted is None:
            raise
        raise exhausted from exc


def _format_of(src: Source) -> ArchiveFormat:
    with src.open_stream() as stream:
        return detect_format(read_head(stream, SNIFF_SIZE), src.name)


def plan(
    src: Source,
    choice: StrategyChoice,
    storage: StorageManager,
    critical: float,
    extractor: StreamingExtractor,
    include: Sequence[str] = (),
) -> Decision:
    """Choose ``extract`` only if it fits under the critical threshold of /tmp, else ``stream``.

    An explicit ``extract`` that cannot fit fails here, before anything is written. A
    compressed tar whose archive alone exceeds the budget needs no header pass: its
    contents are larger still.
    """
    if choice is StrategyChoice.STREAM:
        return Decision(Strategy.STREAM, "requested")
    budget = storage.budget(critical)
    needed: int | None = None
    total_files: int | None = None
    compressed_tar = (ArchiveFormat.TAR_GZ, ArchiveFormat.TAR_BZ2, ArchiveFormat.TAR_XZ)
    if src.size() > budget and _format_of(src) in compressed_tar:
        needed = src.size()
    if needed is None:
        info = extractor.get_archive_info(src, include or None)  # what --include selects
        needed = storage.estimate_space_needed(info, Strategy.EXTRACT).scratch_bytes
        total_files = info.file_count
        at_least = ""
    else:
        at_least = "at least "
    fits = needed <= budget
    reason = (
        f"extracting needs {at_least}{format_size(needed)} of /tmp; "
        f"{format_size(budget)} is left below the {critical:.0%} critical threshold"
    )
    if choice is StrategyChoice.EXTRACT:
        if not fits:
            raise InsufficientStorageError(
                storage.path,
                needed,
                budget,
                f"the extract strategy needs {at_least}that much below the {critical:.0%} "
                "critical threshold; use the stream strategy, which needs no /tmp, or give "
                "the function more ephemeral storage",
            )
        return Decision(Strategy.EXTRACT, f"requested; {reason}", total_files)
    if fits:
        return Decision(Strategy.EXTRACT, f"auto: fits; {reason}", total_files)
    return Decision(Strategy.STREAM, f"auto: does not fit; {reason}", total_files)


class _MonitorPhases:
    """Phases through the monitor, remembering the peaks of every phase of this target,
    and the monitor's ProcessingState kept current: the phase, files done of the plan's
    total, ``/tmp`` in use (bytes, measured at most every DISK_USAGE_EVERY seconds and
    at the end of every phase), whether the cleanup phase ran, and the seconds left at
    the files-per-second measured since the plan."""

    DISK_USAGE_EVERY = 0.1

    def __init__(
        self,
        monitor: StorageMonitor | None,
        storage: StorageManager | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._monitor = monitor
        self._storage = storage
        self._clock = clock
        self.peak_tmp = 0
        self.peak_rss = 0
        self.files_done = 0
        self.total_files: int | None = None
        self._started = clock()
        self._measured = -math.inf

    def planned(self, total_files: int | None) -> None:
        """The plan's file count; throughput is measured from now."""
        self.total_files = total_files
        self._started = self._clock()
        if self._monitor is not None and total_files is not None:
            self._monitor.update_state(total_files=total_files)

    def file_done(self) -> None:
        """One more file packaged (or extracted): the monitor's ProcessingState says so."""
        self.files_done += 1
        if self._monitor is None:
            return
        now = self._clock()
        changes: dict[str, Any] = {"files_processed": self.files_done}
        elapsed = now - self._started
        if self.total_files is not None and elapsed > 0:
            left = max(self.total_files - self.files_done, 0)
            changes["estimated_remaining"] = left * elapsed / self.files_done
        if now - self._measured >= self.DISK_USAGE_EVERY:
            changes.update(self._disk_usage(now))
        self._monitor.update_state(**changes)

    def _disk_usage(self, now: float) -> dict[str, Any]:
        if self._storage is None:
            return {}
        self._measured = now
        try:
            return {"disk_usage": self._storage.usage().used}
        except OSError:  # the scratch directory is gone: keep the last measure
            return {}

    def phase(self, name: str) -> Any:
        if self._monitor is None:
            return contextlib.nullcontext()
        monitor = self._monitor

        @contextlib.contextmanager
        def tracked() -> Any:
            with log_context(**{records.PHASE: name}), monitor.phase(name) as opened:
                try:
                    yield opened
                finally:
                    self.peak_tmp = max(self.peak_tmp, opened.peaks.tmp_used)
                    self.peak_rss = max(self.peak_rss, opened.peaks.memory_used)
            changes = self._disk_usage(self._clock())
            if name == "cleanup":
                changes["cleanup_performed"] = True
            monitor.update_state(**changes)

        return tracked()


def package_target(  # noqa: PLR0915 - one loop of attempts reads best whole
    target: Target,
    settings: HandlerSettings,
    *,
    s3: S3Client | None = None,
    monitor: StorageMonitor | None = None,
    choice: StrategyChoice | None = None,
    remaining_seconds: Callable[[], float] | None = None,
    retry: RetryPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> TargetResult:
    """Run one target to a result; never raises for the target's own failures."""
    policy = retry or RetryPolicy(max_attempts=settings.max_attempts)
    jitter = rng or random.Random()
    result = TargetResult(source=target.source, destination=target.destination)
    storage = StorageManager(settings.scratch_dir)
    phases = _MonitorPhases(monitor, storage, clock)
    options = PackageOptions(
        include=target.include,
        compression=target.compression,
        level=target.level,
        name_encoding=target.name_encoding,
    )
    started = clock()
    strategy: Strategy | None = None
    memory: MemoryPlan | None = None
    requested = choice or settings.strategy
    if requested is not StrategyChoice.AUTO:
        result.strategy = requested.value
    with (
        bounded(_deadline(remaining_seconds, settings)),
        log_context(target=target.source, destination=target.destination),
    ):
        while True:
            with log_context(attempt=result.attempts + 1):
                try:
                    _check_time(remaining_seconds, settings.time_margin)
                    result.attempts += 1  # one refused for lack of time is not counted
                    src = open_source(target.source, s3=s3)
                    dest = open_destination(target.destination, s3=s3, if_exists=target.if_exists)
                    memory = plan_memory(target.source, target.destination, src.size())
                    check_memory(memory, function_memory_limit())
                    if strategy is None:
                        with phases.phase("plan"):
                            decision = plan(
                                src,
                                requested,
                                storage,
                                settings.tmp_critical,
                                options.extractor(),
                                options.include,
                            )
                        strategy = decision.strategy
                        phases.planned(decision.total_files)
                        log.info(
                            "strategy chosen",
                            extra={
                                "event": "strategy_chosen",
                                "strategy": strategy.value,
                                "reason": decision.reason,
                            },
                        )
                    result.strategy = strategy.value
                    memory = plan_memory(
                        target.source,
                        target.destination,
                        src.size(),
                        extract=strategy is Strategy.EXTRACT,
                    )
                    outcome = _run(strategy, src, dest, options, settings, storage, phases)
                except Exception as raised:
                    exc = explain(raised, memory) or raised
                    fallback = (
                        strategy is Strategy.EXTRACT
                        and isinstance(exc, InsufficientStorageError)
                        and requested is StrategyChoice.AUTO
                    )
                    relieved = _space_relieved(storage, exc)
                    retry_it = is_transient(exc, space_relieved=relieved)
                    log.warning(
                        "attempt failed",
                        extra={
                            "event": "attempt_failed",
                            "strategy": result.strategy,
                            "error_type": type(exc).__name__,
                            "error_message": str(exc),
                            "transient": retry_it,
                            "fallback": fallback,
                        },
                    )
                    if fallback:
                        strategy = Strategy.STREAM
                        continue
                    if not retry_it or result.attempts >= policy.max_attempts:
                        result.error = error_dict(exc)
                        if isinstance(exc, CommitUnverifiedError):  # written: never retried
                            result.status = UNVERIFIED
                        break
                    sleep(
                        _within(policy.delay(result.attempts, jitter), remaining_seconds, settings)
                    )
                    continue
                _succeeded(result, outcome)
                break
        result.duration_s = clock() - started
        result.peak_tmp_bytes = phases.peak_tmp
        result.peak_rss_bytes = phases.peak_rss
        log.info("target finished", extra={"event": "target_finished", **result.as_dict()})
    return result


def _succeeded(result: TargetResult, outcome: PackageResult) -> None:
    result.status = SUCCEEDED
    result.files = outcome.files
    result.bytes_in = outcome.bytes_in
    result.bytes_out = outcome.bytes_out


def _run(
    strategy: Strategy,
    src: Source,
    dest: Destination,
    options: PackageOptions,
    settings: HandlerSettings,
    storage: StorageManager,
    phases: PhaseReporter,
) -> PackageResult:
    if strategy is Strategy.EXTRACT:
        return run_extract(
            src,
            dest,
            options,
            scratch_root=settings.scratch_dir,
            storage=storage,
            critical=settings.tmp_critical,
            phases=phases,
        )
    return run_stream(src, dest, options, phases=phases)


def _deadline(
    remaining_seconds: Callable[[], float] | None, settings: HandlerSettings
) -> Deadline | None:
    """The deadline every S3 request of the target keeps (none without a clock or margin)."""
    if remaining_seconds is None or settings.time_margin <= 0:
        return None
    return Deadline(remaining_seconds, settings.time_margin, longest_wait(settings.stall_timeout))


def _within(
    delay: float, remaining_seconds: Callable[[], float] | None, settings: HandlerSettings
) -> float:
    """``delay``, cut so that a backoff never sleeps past the time margin."""
    if remaining_seconds is None or settings.time_margin <= 0:
        return delay
    return max(0.0, min(delay, remaining_seconds() - settings.time_margin))


def _check_time(remaining_seconds: Callable[[], float] | None, margin: float) -> None:
    if remaining_seconds is None:
        return
    left = remaining_seconds()
    if left < margin:
        raise OutOfTimeError(
            f"only {left:.0f} s of the invocation are left, under the {margin:.0f} s safety "
            "margin; run this target again in a new invocation (or raise the Timeout)"
        )


def _space_relieved(storage: StorageManager, exc: BaseException) -> bool:
    """After a disk-full, whether cleanup left enough space for another try."""
    if not isinstance(exc, InsufficientStorageError) or exc.needed is None:
        return False
    return storage.get_available_space() >= exc.needed
