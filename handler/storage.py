"""StorageManager (space on a filesystem, estimates per strategy) and CleanupContext."""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from handler.errors import CleanupFailedError, InsufficientStorageError
from handler.members import ArchiveInfo, MemberKind
from handler.zipwriter.records import CENTRAL_HEADER, LOCAL_HEADER, ZIP64_END, ZIP64_LOCATOR
from monitor.sampler import disk_space
from monitor.units import KiB

log = logging.getLogger("tmpwarden.handler")

BLOCK_SIZE = 4 * KiB
"""Files occupy whole blocks: tmpfs and ext4 round every file up to 4 KiB."""
ZIP_MEMBER_OVERHEAD = LOCAL_HEADER.size + CENTRAL_HEADER.size + 2 * 28 + 24
"""Headers, ZIP64 extra fields and data descriptor per member (the name comes on top)."""
ZIP_END_OVERHEAD = ZIP64_END.size + ZIP64_LOCATOR.size + 22
DEFLATE_WORST_CASE = 1.001
"""Deflate's worst-case growth on incompressible data, rounded up."""

StatvfsProbe = Callable[[str], os.statvfs_result]


class Strategy(enum.StrEnum):
    """How a target is packaged, by what it needs on the scratch filesystem (``/tmp``)."""

    STREAM = "stream"
    """Archive to ZIP member by member: nothing on ``/tmp``."""
    EXTRACT = "extract"
    """Extract every member to ``/tmp``, then zip them: the files' size on ``/tmp``."""
    NAIVE = "naive"
    """Download, extract all, zip all on ``/tmp``: archive + files + ZIP."""


@dataclass(frozen=True, slots=True)
class DiskUsage:
    """A filesystem's space as this process sees it, in bytes (the monitor's definition,
    :class:`monitor.sampler.DiskSpace`): ``used`` blocks in use, ``available`` what this
    process can still write, ``total = used + available`` (root's reserve left out)."""

    path: str
    total: int
    used: int
    available: int

    @property
    def fraction_used(self) -> float:
        """``used / total``: 1.0 exactly when this process can write nothing more."""
        return self.used / self.total if self.total else 1.0


@dataclass(frozen=True, slots=True)
class SpaceEstimate:
    """Space one strategy needs: on the scratch filesystem, and for the output ZIP."""

    strategy: Strategy
    scratch_bytes: int
    output_bytes: int


def available_bytes(directory: str | Path) -> int:
    """Bytes an unprivileged process can still write on ``directory``'s filesystem."""
    return disk_space(os.statvfs(directory)).available


def _round_up(size: int, block: int = BLOCK_SIZE) -> int:
    return -(-size // block) * block


class StorageManager:
    """Space on the scratch filesystem (``/tmp`` by default) and what each strategy needs."""

    def __init__(self, path: str | Path | None = None, *, probe: StatvfsProbe = os.statvfs) -> None:
        self.path = Path(path) if path is not None else Path(tempfile.gettempdir())
        self._probe = probe

    def usage(self) -> DiskUsage:
        """Total, used and available bytes of the filesystem holding :attr:`path`, as
        this process sees it (see :class:`DiskUsage`)."""
        space = disk_space(self._probe(str(self.path)))
        return DiskUsage(str(self.path), space.total, space.used, space.available)

    def get_available_space(self) -> int:
        """Bytes an unprivileged process can still write."""
        return self.usage().available

    def monitor_usage(self, threshold: float) -> DiskUsage:
        """The current usage; raises InsufficientStorageError once the used fraction
        reaches ``threshold`` (0-1), so long work can stop before the disk is full."""
        usage = self.usage()
        if usage.fraction_used >= threshold:
            raise InsufficientStorageError(
                self.path,
                None,
                usage.available,
                f"usage reached {usage.fraction_used:.0%}, at or over the threshold of "
                f"{threshold:.0%}; free space or use the stream strategy",
            )
        return usage

    def cleanup_directory(self, directory: str | Path, *, remove_root: bool = False) -> int:
        """Delete everything under ``directory`` (and it too if ``remove_root``);
        returns the bytes freed. Raises CleanupFailedError listing what remains."""
        root = Path(directory)
        if not root.exists():
            return 0
        before = _tree_size(root)
        failures: list[str] = []
        targets = [root] if remove_root else list(root.iterdir())
        for target in targets:
            _remove(target, failures)
        if remove_root:
            remaining = [root] if root.exists() or root.is_symlink() else []
        else:
            remaining = list(root.iterdir())
        if remaining:
            raise CleanupFailedError(remaining, failures)
        return before - (_tree_size(root) if root.exists() else 0)

    def estimate_space_needed(self, info: ArchiveInfo, strategy: Strategy | str) -> SpaceEstimate:
        """Bytes ``strategy`` needs on the scratch filesystem and for the output ZIP.

        Files are rounded up to whole blocks; the ZIP bound assumes nothing compresses.
        """
        chosen = Strategy(strategy)
        files = [m for m in info.members if m.kind is MemberKind.FILE]
        on_disk = sum(_round_up(m.size) for m in files) + BLOCK_SIZE * info.directory_count
        output = ZIP_END_OVERHEAD + sum(
            int(m.size * DEFLATE_WORST_CASE) + ZIP_MEMBER_OVERHEAD + 2 * len(m.name.encode())
            for m in info.members
        )
        scratch = {
            Strategy.STREAM: 0,
            Strategy.EXTRACT: on_disk,
            Strategy.NAIVE: _round_up(info.archive_size) + on_disk + _round_up(output),
        }[chosen]
        return SpaceEstimate(chosen, scratch, output)

    def budget(self, fraction: float = 1.0) -> int:
        """Bytes that may still be written before usage reaches ``fraction`` of the total."""
        usage = self.usage()
        return max(min(usage.available, int(usage.total * fraction) - usage.used), 0)

    def ensure_space(
        self, estimate: SpaceEstimate, *, headroom: float = 1.0, at_least: bool = False
    ) -> None:
        """Raise InsufficientStorageError before the work starts if it cannot fit
        within ``headroom`` (a fraction of the total) of the scratch filesystem
        (``at_least``: the estimate is a lower bound). The plan's check for an explicit
        ``extract``."""
        allowed = self.budget(headroom)
        if estimate.scratch_bytes > allowed:
            bound = "at least " if at_least else ""
            raise InsufficientStorageError(
                self.path,
                estimate.scratch_bytes,
                allowed,
                f"the {estimate.strategy.value} strategy needs {bound}that much within "
                f"{headroom:.0%} of the scratch filesystem; use the stream strategy, which "
                "needs no scratch space, or give the function more ephemeral storage",
            )


def _tree_size(root: Path) -> int:
    if root.is_symlink() or root.is_file():
        return root.lstat().st_blocks * 512
    total = 0
    for directory, _, names in os.walk(root):
        for name in names:
            with contextlib.suppress(OSError):
                total += (Path(directory) / name).lstat().st_blocks * 512
    return total


def _remove(target: Path, failures: list[str]) -> None:
    def record(_func: object, path: str, exc: BaseException) -> None:
        failures.append(f"{path}: {exc}")

    try:
        if target.is_dir() and not target.is_symlink():
            if sys.version_info >= (3, 12):
                shutil.rmtree(target, onexc=record)
            else:
                shutil.rmtree(target, onerror=lambda f, p, info: record(f, p, info[1]))
        else:
            target.unlink(missing_ok=True)
    except OSError as exc:
        failures.append(f"{target}: {exc}")


class CleanupContext:
    """Removes registered paths when the block ends, whether it succeeds or raises.

    >>> with CleanupContext() as cleanup:
    ...     scratch = cleanup.register_cleanup(Path(tempfile.mkdtemp()))
    """

    def __init__(self) -> None:
        self._paths: list[Path] = []
        self.bytes_freed = 0

    def register_cleanup(self, path: str | Path) -> Path:
        """Remove ``path`` (file or directory tree) at the end; returns it as a Path."""
        registered = Path(path)
        self._paths.append(registered)
        return registered

    @property
    def registered(self) -> list[Path]:
        return list(self._paths)

    def force_cleanup(self) -> int:
        """Remove every registered path now (newest first); returns bytes freed.

        Raises CleanupFailedError listing what remains when something cannot go.
        """
        failures: list[str] = []
        freed = 0
        for path in reversed(self._paths):
            if not (path.exists() or path.is_symlink()):
                continue
            size = _tree_size(path)
            _remove(path, failures)
            if not (path.exists() or path.is_symlink()):
                freed += size
        remaining = [p for p in self._paths if p.exists() or p.is_symlink()]
        self._paths = remaining
        self.bytes_freed += freed
        if remaining:
            raise CleanupFailedError(remaining, failures)
        return freed

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.force_cleanup()
        except CleanupFailedError as cleanup_error:
            if exc is None:
                raise
            # Keep the body's error (it says what went wrong first) and say what remains.
            log.error("cleanup after a failure left paths behind: %s", cleanup_error)
            exc.add_note(str(cleanup_error))
