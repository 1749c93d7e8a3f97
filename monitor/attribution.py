"""Which request grew ``/tmp``, where a process can tell.

On a Lambda Managed Instance several requests, each in its own process, write to one
``/tmp`` (see :mod:`monitor.environment`), and the monitor's ``/tmp`` figures (statvfs)
see only their sum. A process can know what *it* holds on that filesystem:

* the files under its request's scratch paths: the paths registered with
  :meth:`~monitor.sidecar.StorageMonitor.register_cleanup` (the handler's known
  scratch, which the critical-``/tmp`` action removes), walked without following links;
* the files it has open there, read from ``/proc/self/fd``: also those already unlinked,
  which still take space and which no directory walk finds.

Their allocated size (``st_blocks * 512``, stat(2): whole pages on tmpfs, so a 1-byte file
counts 4 KiB, as statvfs counts it), each inode once, at the start and at the end of a
request gives the request's growth of ``/tmp``: the ``TmpAttributedBytes`` metric
(:data:`~monitor.metrics.TMP_ATTRIBUTED_BYTES`, scope ``request``; negative when the
request freed more than it wrote). Measured also at each ``/tmp`` level crossing (a
callback, on the monitor's callback thread), the largest growth is
``PeakTmpAttributedBytes``: what the request held when the shared ``/tmp`` crossed a level,
even if it cleaned its scratch before it ended (at a critical crossing the default
cleanup action runs first). The ``@monitored`` decorator records both on a Managed
Instance (:class:`RequestAttribution`); on Lambda the environment's growth is the
request's already.

What cannot be attributed (it is in the environment's ``TmpUsedBytes``, in no request's
``TmpAttributedBytes``; the difference over the requests of the same moments is the
unattributed part):

* files written outside the registered paths and closed (a library's cache in ``/tmp``,
  a child process's output);
* space another process frees or fills during the request: never subtracted from this
  one or added to it;
* a registered path that several processes share counts in full for each of them:
  register per-request (or per-process) directories;
* what a request holds between its start and end only: a file written and removed
  within the request leaves no growth (the peaks are the environment's figures).

The walk costs a ``stat`` per file under the paths: it runs at the start and the end of
an invocation, never on the sampling thread.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from monitor.callbacks import CALLBACK_LEVELS, MonitorEvent
from monitor.metrics import Resource

PROC_FD = "/proc/self/fd"
STAT_BLOCK_BYTES = 512
"""The unit of ``st_blocks`` (stat(2)), whatever the filesystem's block size."""


def held_bytes(
    paths: Iterable[str | Path], filesystem: str | Path, proc_fd: str | Path = PROC_FD
) -> int:
    """Bytes allocated on ``filesystem``'s device to the regular files under ``paths``
    and to the files this process holds open there (``proc_fd``), each inode once.

    A path that does not exist, or a file that vanishes while it is read, counts 0;
    ``filesystem`` that cannot be read is an OSError (the monitor checked it at start).
    """
    device = Path(filesystem).stat().st_dev
    seen: set[int] = set()
    total = 0
    for path in paths:
        for info in _tree(Path(path)):
            if info.st_dev == device and info.st_ino not in seen:
                seen.add(info.st_ino)
                total += info.st_blocks * STAT_BLOCK_BYTES
    for info in _open_files(Path(proc_fd)):
        if info.st_dev == device and info.st_ino not in seen:
            seen.add(info.st_ino)
            total += info.st_blocks * STAT_BLOCK_BYTES
    return total


def _tree(root: Path) -> Iterator[os.stat_result]:
    """The stat of each regular file at or under ``root``, not following links."""
    try:
        info = root.lstat()
    except OSError:
        return
    if stat.S_ISREG(info.st_mode):
        yield info
        return
    if not stat.S_ISDIR(info.st_mode):
        return
    pending = [root]
    while pending:
        try:
            with os.scandir(pending.pop()) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            pending.append(Path(entry.path))
                        elif entry.is_file(follow_symlinks=False):
                            yield entry.stat(follow_symlinks=False)
                    except OSError:  # removed meanwhile by the request or a cleanup
                        continue
        except OSError:
            continue


def _open_files(proc_fd: Path) -> Iterator[os.stat_result]:
    """The stat of each regular file open in this process (through the fd's link, which
    reaches an unlinked file too)."""
    try:
        links = list(proc_fd.iterdir())
    except OSError:
        return
    for link in links:
        try:
            info = link.stat()
        except OSError:  # closed meanwhile, or not a file
            continue
        if stat.S_ISREG(info.st_mode):
            yield info


class TmpAttribution:
    """One request's growth of ``/tmp``: :meth:`begin` at its start, :meth:`growth` at
    its end (bytes; see the module docstring).

    ``paths`` is called at each measure (paths registered during the request count);
    ``proc_fd`` is injectable for tests.
    """

    def __init__(
        self,
        filesystem: str | Path,
        paths: Callable[[], Iterable[str | Path]],
        *,
        proc_fd: str | Path = PROC_FD,
    ) -> None:
        self.filesystem = filesystem
        self._paths = paths
        self._proc_fd = proc_fd
        self._start = 0

    def held(self) -> int:
        """Bytes this process's request holds on the filesystem now."""
        return held_bytes(self._paths(), self.filesystem, self._proc_fd)

    def begin(self) -> int:
        """Measure the start; returns the bytes held then."""
        self._start = self.held()
        return self._start

    def growth(self) -> int:
        """Bytes held now minus at :meth:`begin` (negative when the request freed)."""
        return self.held() - self._start


class RequestAttribution:
    """A :class:`TmpAttribution` over one request at a time, also measured at each
    ``/tmp`` level crossing while the request runs.

    :meth:`attach` registers the crossing measure with ``add_callback`` (a monitor's
    :meth:`~monitor.sidecar.StorageMonitor.add_callback`) once; then :meth:`begin` at
    each request's start and :meth:`end` at its end give (growth, peak growth) in bytes.
    Thread-safe: the crossings are measured on the callback thread.
    """

    def __init__(self, attribution: TmpAttribution) -> None:
        self.attribution = attribution
        self._lock = threading.Lock()
        self._active = False
        self._peak = 0

    def attach(self, add_callback: Callable[..., None]) -> RequestAttribution:
        for level in CALLBACK_LEVELS[Resource.TMP]:
            add_callback(level, self.attribute_tmp_to_request, resource=Resource.TMP)
        return self

    def begin(self) -> None:
        with self._lock:
            self.attribution.begin()
            self._active, self._peak = True, 0

    def attribute_tmp_to_request(self, event: MonitorEvent) -> None:
        """The crossing's measure (a callback: its name is what the records list)."""
        with self._lock:
            if self._active:
                self._peak = max(self._peak, self.attribution.growth())

    def end(self) -> tuple[int, int]:
        """(growth now, the largest growth measured since :meth:`begin`), bytes."""
        with self._lock:
            self._active = False
            growth = self.attribution.growth()
            return growth, max(self._peak, growth)
