"""One target: plan (inspect + estimate) -> choose a strategy -> run it, with retries and
cleanup between attempts.

``package`` is the plain entry point (the CLI's); ``package_target`` is what the Lambda
runs for each target of an event: it plans, falls back from ``extract`` to ``stream``
when storage runs short, retries transient failures with backoff and jitter, and never
starts an attempt without the time to finish it.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from handler.archive import StreamingExtractor
from handler.archive.formats import SNIFF_SIZE, detect_format
from handler.deadline import OutOfTimeError, bounded
from handler.errors import CommitUnverifiedError, InsufficientStorageError
from handler.events import SUCCEEDED, UNVERIFIED, StrategyChoice, Target, TargetResult, error_dict
from handler.locations.buffers import plan_memory, plan_upload, zip_bytes_for
from handler.locations.listing import TreeSource
from handler.locations.local import Destination, IfExists, Source, open_destination, open_source
from handler.logs import log_context
from handler.members import ArchiveFormat
from handler.memory import MemoryPlan, check_memory, explain, function_memory_limit
from handler.phases import MonitorPhases
from handler.retry import RetryPolicy, Step, Verdict
from handler.settings import HandlerSettings
from handler.storage import SpaceEstimate, StorageManager, Strategy
from handler.strategies import (
    PackageOptions,
    PackageResult,
    PhaseReporter,
    SourceProgress,
    run_extract,
    run_stream,
)
from handler.streams import read_head
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
    zip_bytes: int | None = None
    """The most bytes the ZIP takes, from the headers' sizes when the plan read them
    (:func:`handler.locations.buffers.zip_bytes_for`): an S3 upload's parts are sized from it."""


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
    plan_upload(dest, src.name, src.size())
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
    if isinstance(src, TreeSource) and choice is StrategyChoice.AUTO:
        return Decision(
            Strategy.STREAM,
            f"auto: the source is a {src.format.value}, read member by member; nothing to stage",
            src.file_count(),
        )
    budget = storage.budget(critical)
    needed: int | None = None
    total_files: int | None = None
    zip_bytes: int | None = None
    compressed_tar = (ArchiveFormat.TAR_GZ, ArchiveFormat.TAR_BZ2, ArchiveFormat.TAR_XZ)
    if (
        not isinstance(src, TreeSource)
        and src.size() > budget
        and _format_of(src) in compressed_tar
    ):
        needed = src.size()
    if needed is None:
        info = extractor.get_archive_info(src, include or None)  # what --include selects
        needed = storage.estimate_space_needed(info, Strategy.EXTRACT).scratch_bytes
        total_files = info.file_count
        zip_bytes = zip_bytes_for(info)
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
            estimate = SpaceEstimate(Strategy.EXTRACT, needed, 0)
            storage.ensure_space(estimate, headroom=critical, at_least=bool(at_least))
        return Decision(Strategy.EXTRACT, f"requested; {reason}", total_files, zip_bytes)
    if fits:
        return Decision(Strategy.EXTRACT, f"auto: fits; {reason}", total_files, zip_bytes)
    return Decision(Strategy.STREAM, f"auto: does not fit; {reason}", total_files, zip_bytes)


def package_target(
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
    """Run one target to a result under ``retry`` (by default the settings' policy);
    never raises for the target's own failures."""
    policy = retry or RetryPolicy.from_settings(settings)
    jitter = rng or random.Random()
    result = TargetResult(source=target.source, destination=target.destination)
    attempts = _Attempts(target, settings, s3, monitor, choice or settings.strategy, clock)
    if attempts.requested is not StrategyChoice.AUTO:
        result.strategy = attempts.requested.value
    started = clock()
    with (
        bounded(policy.deadline(remaining_seconds)),
        log_context(target=target.source, destination=target.destination),
    ):
        while True:
            with log_context(attempt=result.attempts + 1):
                try:
                    policy.check_time(remaining_seconds)
                    result.attempts += 1  # one refused for lack of time is not counted
                    outcome = attempts.run(result)
                except Exception as raised:
                    exc, verdict = attempts.judge(raised, policy, result)
                    if verdict.step is Step.RETRY:
                        policy.back_off(result.attempts, jitter, sleep)
                    if verdict.step is not Step.GIVE_UP:
                        continue
                    _failed(result, exc)
                    break
                _succeeded(result, outcome)
                break
        result.duration_s = clock() - started
        result.peak_tmp_bytes = attempts.phases.peak_tmp
        result.peak_rss_bytes = attempts.phases.peak_rss
        log.info("target finished", extra={"event": "target_finished", **result.as_dict()})
    return result


class _Attempts:
    """The state the attempts at one target share: the strategy (planned once, then
    kept unless the policy falls back) and the latest memory plan."""

    def __init__(
        self,
        target: Target,
        settings: HandlerSettings,
        s3: S3Client | None,
        monitor: StorageMonitor | None,
        requested: StrategyChoice,
        clock: Callable[[], float],
    ) -> None:
        self.target = target
        self.settings = settings
        self.s3 = s3
        self.requested = requested
        self.storage = StorageManager(settings.scratch_dir)
        self.phases = MonitorPhases(monitor, self.storage, clock)
        self.options = PackageOptions(
            include=target.include,
            compression=target.compression,
            level=target.level,
            name_encoding=target.name_encoding,
        )
        self.strategy: Strategy | None = None
        self.zip_bytes: int | None = None  # the planned ZIP's size, once the plan read it
        self.memory: MemoryPlan | None = None

    def run(self, result: TargetResult) -> PackageResult:
        """One attempt: open both ends, check memory, plan (the first time), run."""
        target = self.target
        src = open_source(target.source, s3=self.s3)
        dest = open_destination(target.destination, s3=self.s3, if_exists=target.if_exists)
        self.memory = plan_memory(
            target.source, target.destination, src.size(), content_bytes=self.zip_bytes
        )
        check_memory(self.memory, function_memory_limit())
        if self.strategy is None:
            self.strategy = self._plan(src)
        result.strategy = self.strategy.value
        self.memory = plan_memory(
            target.source,
            target.destination,
            src.size(),
            extract=self.strategy is Strategy.EXTRACT,
            content_bytes=self.zip_bytes,
        )
        plan_upload(dest, target.source, src.size(), self.zip_bytes)
        return _run(
            self.strategy, src, dest, self.options, self.settings, self.storage, self.phases
        )

    def _plan(self, src: Source) -> Strategy:
        with self.phases.phase("plan"):
            decision = plan(
                src,
                self.requested,
                self.storage,
                self.settings.tmp_critical,
                self.options.extractor(),
                self.options.include,
            )
        self.phases.planned(decision.total_files)
        self.zip_bytes = decision.zip_bytes
        log.info(
            "strategy chosen",
            extra={
                "event": "strategy_chosen",
                "strategy": decision.strategy.value,
                "reason": decision.reason,
            },
        )
        return decision.strategy

    def judge(
        self, raised: Exception, policy: RetryPolicy, result: TargetResult
    ) -> tuple[BaseException, Verdict]:
        """The failure as the user should see it (memory exhaustion explained) and what
        the policy says follows it; logged."""
        exc = explain(raised, self.memory) or raised
        verdict = policy.after_failure(
            exc,
            attempts=result.attempts,
            strategy=self.strategy,
            automatic=self.requested is StrategyChoice.AUTO,
            space_relieved=_space_relieved(self.storage, exc),
        )
        log.warning(
            "attempt failed",
            extra={
                "event": "attempt_failed",
                "strategy": result.strategy,
                "error_type": type(exc).__name__,
                "error_message": str(exc),
                "transient": verdict.transient,
                "fallback": verdict.fallback,
            },
        )
        if verdict.fallback:
            self.strategy = Strategy.STREAM
        return exc, verdict


def _failed(result: TargetResult, exc: BaseException) -> None:
    result.error = error_dict(exc)
    if isinstance(exc, CommitUnverifiedError):  # written: never retried
        result.status = UNVERIFIED


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


def _space_relieved(storage: StorageManager, exc: BaseException) -> bool:
    """After a disk-full, whether cleanup left enough space for another try."""
    if not isinstance(exc, InsufficientStorageError) or exc.needed is None:
        return False
    return storage.get_available_space() >= exc.needed
