"""Threads that overlap a ZIP's work on a local file: deflate on one, writes on another.

On the stream path from a local tar.gz the gzip inflate already runs on ISA-L's reader
thread (:class:`handler.inflate.InflatingReader`) and is the slowest stage (single-threaded
ISA-L inflate is the floor the bench measures). This module keeps that thread from
waiting on the rest:

* :class:`DeflateThread`: a :data:`~handler.codec.CompressorFactory` whose compressors
  hand chunks of :data:`INLINE_BELOW` bytes or more to one deflate thread (ISA-L and zlib
  release the GIL while they compress), at most :data:`DEFLATE_QUEUE_BYTES` at a time;
  smaller inputs (small members, all in one call) are compressed inline, where a
  thread's hand-over would cost more than it saves;
* :class:`OutputThread`: a sink (and :class:`~handler.zipwriter.zipsink.Patcher`) that
  queues the ZIP's bytes, at most :data:`WRITE_QUEUE_BYTES`, for a writer thread; the
  writer starts the kernel's write-back every :data:`WRITEBACK_BYTES`
  (``sync_file_range(SYNC_FILE_RANGE_WRITE)``, as RocksDB's ``bytes_per_sync`` does), so
  the ``fsync`` before the destination's commit waits for the last few MiB, not for
  the whole file.

:func:`local_pipeline` starts both for a sink that seeks (a local file) and always
stops and joins them, on success and on failure. An error on either thread is raised
again, as the same exception (so the same typed error), on the thread that writes the
ZIP, at its next call.

Measured on the bench's 1 GiB artifact (2 cores, 2026-11-30): the commit's ``fsync``
took 0.40 s before the write-back and 0.01 s after; the ZIP's own thread spends 0.7
CPU-s instead of 2.4 (what is left is tarfile's copies of the member data). The CRC
stays with the zipper on the ZIP's thread: ISA-L's ``crc32`` costs 0.013 CPU-s per GiB.
"""

from __future__ import annotations

import contextlib
import ctypes
import queue
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator
from typing import BinaryIO, Final

from handler.codec import Compressor, CompressorFactory, fastest_deflate
from handler.zipwriter.zipsink import Patcher, Sink, can_seek, patcher_for
from monitor.units import KiB, MiB

WRITE_QUEUE_BYTES: Final = 1 * MiB
"""Most bytes queued for the writer thread or in its hands (one item always fits): the
ZIP's thread runs at most about one 1 MiB block ahead of the writes."""
COALESCE_BYTES: Final = 64 * KiB
"""Writes smaller than this (local headers, central directory records) are gathered
into one queued item of about this size."""
WRITEBACK_BYTES: Final = 32 * MiB
"""Bytes written between two requests to start the kernel's write-back."""
DEFLATE_QUEUE_BYTES: Final = 1 * MiB
"""Most input bytes queued for the deflate thread or being compressed (one chunk always
fits): the ZIP's thread reads the next 1 MiB chunk while the last one is compressed."""
INLINE_BELOW: Final = 256 * KiB
"""A compressor with nothing queued compresses an input smaller than this inline."""
SYNC_FILE_RANGE_WRITE: Final = 2
"""<linux/fs.h>: start write-back of the range's dirty pages, do not wait for it."""
WRITER_THREAD: Final = "tmpwarden-writer"
DEFLATE_THREAD: Final = "tmpwarden-deflate"

_STOP: Final = object()


class _Channel:
    """A FIFO from one producer thread to one consumer thread, bounded in bytes: ``put``
    waits while the items queued or still being handled (taken, not yet ``done``) hold
    more than ``limit`` bytes; one item always fits."""

    def __init__(self, limit: int) -> None:
        self._items: deque[tuple[object, int]] = deque()
        self._bytes = 0
        self._limit = limit
        self._ready = threading.Condition()

    def put(self, item: object, size: int) -> None:
        with self._ready:
            while self._bytes and self._bytes + size > self._limit:
                self._ready.wait()
            self._items.append((item, size))
            self._bytes += size
            self._ready.notify()

    def get(self) -> tuple[object, int]:
        """The next item and its size; call :meth:`done` with the size once handled."""
        with self._ready:
            while not self._items:
                self._ready.wait()
            return self._items.popleft()

    def done(self, size: int) -> None:
        with self._ready:
            self._bytes -= size
            self._ready.notify()


def _load_sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """libc's ``sync_file_range`` (Linux only; None elsewhere or when it is missing)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_sync_file_range = _load_sync_file_range()


def _load_malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim`` (None elsewhere)."""
    try:
        function = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_size_t]
    function.restype = ctypes.c_int
    return function


_malloc_trim = _load_malloc_trim()


def release_free_memory() -> None:
    """Give the memory the finished threads freed back to the system (glibc keeps it in
    each thread's arena; measured: without this, the RSS of a warm process swings by up
    to 16 MiB from one packaging to the next, with it the same after every call)."""
    if _malloc_trim is not None:
        _malloc_trim(0)


class _Writeback:
    """Starts the kernel's write-back of each ``every`` bytes written to a file, without
    waiting for it; does nothing for a sink without a file descriptor or without
    ``sync_file_range``. A failure here is not an error: the commit's ``fsync`` reports
    what did not reach the disk."""

    def __init__(self, sink: Sink, start: int, every: int) -> None:
        fileno = getattr(sink, "fileno", None)
        flush = getattr(sink, "flush", None)
        self._fd: int | None = None
        if _sync_file_range is not None and callable(fileno) and callable(flush) and every > 0:
            with contextlib.suppress(OSError, ValueError):
                self._fd = int(fileno())
        self._flush = flush
        self._every = every
        self._synced = start
        self._written = start

    def wrote(self, size: int) -> None:
        self._written += size
        if self._fd is None or self._written - self._synced < self._every:
            return
        assert _sync_file_range is not None and callable(self._flush)
        self._flush()  # the file's own buffer into the page cache first
        length = self._written - self._synced
        _sync_file_range(self._fd, self._synced, length, SYNC_FILE_RANGE_WRITE)
        self._synced = self._written


class OutputThread:
    """A sink that writes on its own thread: ``write`` queues the bytes (small ones are
    gathered first) and returns; ``hold``/``patch`` are queued in order with the writes,
    so the header is patched after its member's data, as on the sink itself.

    ``sink`` must be patchable (``patcher_for(sink)`` is not None). ``tell`` counts the
    bytes given to :meth:`write`. Call :meth:`close` (drain, join, raise the writer's
    error) or :meth:`cancel` (drop what is queued, join) exactly as the work ends.
    """

    def __init__(
        self,
        sink: Sink,
        patcher: Patcher,
        *,
        limit: int = WRITE_QUEUE_BYTES,
        writeback: int = WRITEBACK_BYTES,
    ) -> None:
        self._sink = sink
        self._patcher = patcher
        tell = getattr(sink, "tell", None)
        self._position = int(tell()) if callable(tell) else 0
        self._writeback = _Writeback(sink, self._position, writeback)
        self._pending = bytearray()
        self._channel = _Channel(limit)
        self._error: BaseException | None = None
        self._cancelled = False
        self._thread = threading.Thread(target=self._run, name=WRITER_THREAD, daemon=True)
        self._thread.start()

    # -- the ZIP writer's side --------------------------------------------------------

    def write(self, data: bytes, /) -> int:
        self._raise_error()
        size = len(data)
        if size < COALESCE_BYTES:
            self._pending += data
            if len(self._pending) >= COALESCE_BYTES:
                self._send_pending()
        else:
            self._send_pending()
            self._channel.put(("write", data if isinstance(data, bytes) else bytes(data)), size)
        self._position += size
        return size

    def tell(self) -> int:
        return self._position

    def hold(self, offset: int, length: int, /) -> None:
        self._raise_error()
        self._send_pending()
        self._channel.put(("hold", offset, length), 0)

    def patch(self, offset: int, data: bytes, /) -> None:
        self._raise_error()
        self._send_pending()
        self._channel.put(("patch", offset, bytes(data)), len(data))

    def close(self) -> None:
        """Write what is queued, stop and join the thread; raise the writer's error."""
        if self._thread.is_alive():
            self._send_pending()
            self._channel.put(_STOP, 0)
            self._thread.join()
        self._raise_error()

    def cancel(self) -> None:
        """Drop what is queued, stop and join the thread (the work failed)."""
        self._cancelled = True
        self._pending.clear()
        if self._thread.is_alive():
            self._channel.put(_STOP, 0)
            self._thread.join()

    # -- the writer thread ------------------------------------------------------------

    def _send_pending(self) -> None:
        if self._pending:
            data = bytes(self._pending)
            self._pending.clear()
            self._channel.put(("write", data), len(data))

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        while True:
            item, size = self._channel.get()
            if item is _STOP:
                return
            try:
                if self._error is None and not self._cancelled:  # else only drop it
                    self._apply(item)
            except BaseException as exc:  # raised again on the ZIP's thread
                self._error = exc
            finally:
                del item  # not kept alive while the next one is awaited
                self._channel.done(size)

    def _apply(self, item: object) -> None:
        assert isinstance(item, tuple)
        match item:
            case ("write", bytes() as data):
                self._sink.write(data)
                self._writeback.wrote(len(data))
            case ("patch", int() as offset, bytes() as data):
                self._patcher.patch(offset, data)
            case ("hold", int() as offset, int() as length):
                self._patcher.hold(offset, length)


class _ThreadedCompressor:
    """A :class:`~handler.codec.Compressor` whose work runs on a :class:`DeflateThread`;
    ``compress`` returns what is ready (possibly nothing), ``flush`` waits for the rest."""

    def __init__(self, worker: DeflateThread, inner: Compressor) -> None:
        self._worker = worker
        self._inner = inner
        self._results: queue.SimpleQueue[bytes | BaseException] = queue.SimpleQueue()
        self._queued = 0

    def compress(self, data: bytes, /) -> bytes:
        if not self._queued and len(data) < INLINE_BELOW:
            return self._inner.compress(data)
        self._queued += 1
        self._worker.submit(self, data if isinstance(data, bytes) else bytes(data))
        return self._collect(wait=False)

    def flush(self) -> bytes:
        if not self._queued:
            return self._inner.flush()
        self._queued += 1
        self._worker.submit(self, None)
        return self._collect(wait=True)

    def run(self, data: bytes | None) -> None:
        """On the deflate thread: compress ``data`` (None: flush) and post the result."""
        try:
            result = self._inner.flush() if data is None else self._inner.compress(data)
        except BaseException as exc:  # raised again on the caller's thread
            self._results.put(exc)
        else:
            self._results.put(result)

    def _collect(self, *, wait: bool) -> bytes:
        """The results ready (all of them when ``wait``), in order, as one bytes."""
        blocks: list[bytes] = []
        while self._queued:
            try:
                result = self._results.get(block=wait)
            except queue.Empty:
                break
            self._queued -= 1
            if isinstance(result, BaseException):
                raise result
            if result:
                blocks.append(result)
        return blocks[0] if len(blocks) == 1 else b"".join(blocks)


class DeflateThread:
    """One thread that runs the compressors :meth:`factory` makes (one member's at a
    time, as the zipper uses them; each compressor's chunks in order).

    ``inner`` makes the real compressors (ISA-L, else zlib). Call :meth:`close` at the
    end, success or failure: it lets the queued chunk finish and joins the thread.
    """

    def __init__(
        self, inner: CompressorFactory = fastest_deflate, limit: int = DEFLATE_QUEUE_BYTES
    ) -> None:
        self._inner = inner
        self._jobs = _Channel(limit)
        self._thread = threading.Thread(target=self._run, name=DEFLATE_THREAD, daemon=True)
        self._thread.start()

    def factory(self, level: int) -> Compressor:
        """A compressor for ``level`` (as :data:`~handler.codec.CompressorFactory`)."""
        return _ThreadedCompressor(self, self._inner(level))

    def submit(self, compressor: _ThreadedCompressor, data: bytes | None) -> None:
        self._jobs.put((compressor, data), len(data) if data else 0)

    def close(self) -> None:
        if self._thread.is_alive():
            self._jobs.put(_STOP, 0)
            self._thread.join()

    def _run(self) -> None:
        while True:
            job, size = self._jobs.get()
            if job is _STOP:
                return
            assert isinstance(job, tuple)
            compressor, data = job
            try:
                compressor.run(data)
            finally:
                del job, compressor, data  # not kept alive while the next one is awaited
                self._jobs.done(size)


@contextlib.contextmanager
def local_pipeline(
    sink: BinaryIO, factory: CompressorFactory = fastest_deflate
) -> Iterator[tuple[Sink, CompressorFactory]]:
    """The sink and compressor factory to give the zipper for ``sink``: threaded when
    ``sink`` is a file (it seeks), else ``sink`` and ``factory`` unchanged. Leaving the
    block drains the writer (its error, if any, is raised here) and joins both threads;
    leaving it with an exception drops what is queued and joins them."""
    patcher = patcher_for(sink) if can_seek(sink) else None
    if patcher is None:
        yield sink, factory
        return
    deflate = DeflateThread(factory)
    try:
        output = OutputThread(sink, patcher)
    except BaseException:
        deflate.close()
        raise
    try:
        yield output, deflate.factory
    except BaseException:
        deflate.close()
        output.cancel()
        raise
    try:
        deflate.close()
    finally:
        output.close()
