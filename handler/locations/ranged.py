"""Reading an S3 object through ranged GETs: one range that resumes, many in parallel.

:class:`RangeFetcher` reads one byte range with a GetObject ``Range`` request pinned to
the object's ETag (``IfMatch``: a replaced object answers 412 PreconditionFailed, never
mixed bytes). A dropped connection, an early end of body (fewer bytes than the range
asked for) or a stalled read (no byte within the client's read timeout, the stall
timeout of :mod:`handler.deadline`) resumes with a new ``Range`` GET from the byte it
reached, at most :data:`MAX_RESUMES` times per range; then SourceReadError names the
offset. Every request is checked against the invocation's deadline (the client's
``before-send`` hook) and every body read by :func:`handler.deadline.check`.

:class:`ParallelRangeStream` is a sequential stream for the decompressor made of such
ranges fetched by ``connections`` threads at once and handed out in order. The ranges
fetched or being fetched and not yet consumed hold at most ``read_ahead`` bytes (each
range is one buffer of its size, filled in place); each connection also holds the one
piece (:data:`READ_PIECE`) it is copying in.

The default of 4 connections follows AWS's guidance of one concurrent request per
85-90 MB/s wanted ("Performance design patterns for Amazon S3", Amazon S3 User Guide;
issue 10): 4 x 85 MB/s covers the 75 MB/s of a function's usual network (600 Mbps)
with room for each range's first-byte latency, and nearly the 375 MB/s of the 3 Gbps
of a 10 GB function. ``TMPWARDEN_SOURCE_CONNECTIONS`` sets it (1 to 64) and
``TMPWARDEN_READ_AHEAD_MIB`` the read-ahead (default connections x 8 MiB).
"""

from __future__ import annotations

import collections
import math
import os
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from handler.deadline import check as check_deadline
from handler.errors import ConfigurationError, SourceReadError, TmpwardenError
from handler.streams import ReadOnlyStream
from monitor.units import KiB, MiB

__all__ = [
    "MAX_RESUMES",
    "RANGE_SIZE",
    "GetRange",
    "ParallelRangeStream",
    "RangeFetcher",
    "ReadPlan",
]

RANGE_SIZE = 8 * MiB
"""Bytes per ranged GET: AWS's guidance for byte-range fetches is 8 or 16 MB
("Performance guidelines for Amazon S3"); also the upload's part size."""
READ_PIECE = 256 * KiB
"""Bytes per read of a body: a read cut by a reset or a stall loses what it had taken in
(http.client), so a resume asks again for at most this much."""
FIRST_RANGE = READ_PIECE
"""Bytes of a stream's first range, fetched alone before the read-ahead starts: a reader
that wants only the head (the format's magic bytes, a ZIP's local header) does not set
every connection fetching a whole range it will drop; the rest waits for it about one
first-byte latency. One piece, so the pieces after it keep their offsets."""
MAX_RESUMES = 5
"""Resumes per range after a dropped connection, an early end or a stall."""
CONNECTIONS_ENV = "TMPWARDEN_SOURCE_CONNECTIONS"
READ_AHEAD_ENV = "TMPWARDEN_READ_AHEAD_MIB"
DEFAULT_CONNECTIONS = 4
MAX_CONNECTIONS = 64


GetRange = Callable[[int, int], Any]
"""(first byte, last byte) -> the body of a GetObject of that range, pinned to the ETag;
its failure already a TmpwardenError (``handler.locations.s3.call``)."""


class _Cancelled(Exception):
    """The stream was closed while a range was being fetched."""


@dataclass(frozen=True, slots=True)
class ReadPlan:
    """How a source is read: ``connections`` ranged GETs at once, ``read_ahead`` bytes
    fetched ahead at most, ``range_size`` bytes per GET (never more than the read-ahead)."""

    connections: int = DEFAULT_CONNECTIONS
    read_ahead: int = DEFAULT_CONNECTIONS * RANGE_SIZE
    range_size: int = RANGE_SIZE

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ReadPlan:
        """From ``TMPWARDEN_SOURCE_CONNECTIONS`` and ``TMPWARDEN_READ_AHEAD_MIB``;
        ConfigurationError names a bad value."""
        env = os.environ if environ is None else environ
        text = env.get(CONNECTIONS_ENV, "").strip() or str(DEFAULT_CONNECTIONS)
        try:
            connections = int(text)
        except ValueError:
            raise ConfigurationError(
                f"{CONNECTIONS_ENV}={text!r} must be a whole number of connections, e.g. 4"
            ) from None
        if not 1 <= connections <= MAX_CONNECTIONS:
            raise ConfigurationError(
                f"{CONNECTIONS_ENV}={connections} must be from 1 to {MAX_CONNECTIONS} "
                "(about one per 85 MB/s of the throughput wanted)"
            )
        default = connections * RANGE_SIZE // MiB
        text = env.get(READ_AHEAD_ENV, "").strip() or str(default)
        try:
            read_ahead_mib = float(text)
        except ValueError:
            raise ConfigurationError(
                f"{READ_AHEAD_ENV}={text!r} must be a number of MiB, e.g. {default}"
            ) from None
        if not 1 <= read_ahead_mib <= 4096:
            raise ConfigurationError(f"{READ_AHEAD_ENV}={read_ahead_mib:g} must be 1 to 4096 MiB")
        read_ahead = int(read_ahead_mib * MiB)
        return cls(connections, read_ahead, min(RANGE_SIZE, read_ahead))

    @property
    def window(self) -> int:
        """Ranges held at once (fetched or in flight, the one being consumed included)."""
        return max(1, self.read_ahead // self.range_size)

    def bytes_held(self, size: int) -> int:
        """The most a stream of a ``size``-byte object holds: its ranges (at most the
        read-ahead) and each connection's chunk being copied in (for the memory plan)."""
        ranges = min(self.window, math.ceil(size / self.range_size))
        return ranges * self.range_size + min(self.connections, max(ranges, 1)) * READ_PIECE


class RangeFetcher:
    """Fetches byte ranges of one object version (``etag``), resuming each where it broke."""

    def __init__(self, name: str, size: int, get_range: GetRange) -> None:
        self._name = name
        self._size = size
        self._get_range = get_range
        self._lock = threading.Lock()
        self.requests = 0
        self.resumes = 0

    def fetch(self, start: int, length: int, cancelled: threading.Event | None = None) -> bytearray:
        """Bytes ``[start, start + length)`` (clipped to the object's size), in one buffer
        of that size; empty once ``cancelled`` is set.

        Raises RemoteServiceError (PreconditionFailed) when the object was replaced,
        SourceReadError naming the offset after :data:`MAX_RESUMES` resumes,
        OutOfTimeError past the deadline."""
        part = _Range(start, bytearray(max(0, min(start + length, self._size) - start)))
        resumes = 0
        while part.filled < len(part.buffer):
            try:
                self._read_into(part, cancelled)
                if part.filled < len(part.buffer):
                    raise _EarlyEnd(f"the body ended {len(part.buffer) - part.filled} bytes early")
            except _Cancelled:
                return bytearray()
            except (TmpwardenError, MemoryError):
                raise
            except Exception as exc:  # a dropped connection, an early end, a stall
                if resumes >= MAX_RESUMES:
                    raise SourceReadError(
                        f"{self._name}: reading stopped at byte {part.start + part.filled} of "
                        f"{self._size} after {resumes} resumes ({type(exc).__name__}: {exc}); "
                        "try again"
                    ) from exc
                resumes += 1
                with self._lock:
                    self.resumes += 1
        return part.buffer

    def _read_into(self, part: _Range, cancelled: threading.Event | None) -> None:
        """One GET from the byte ``part`` reached to its end, into its buffer."""
        if cancelled is not None and cancelled.is_set():
            raise _Cancelled
        view = memoryview(part.buffer)
        body = self._get_range(part.start + part.filled, part.start + len(view) - 1)
        with self._lock:
            self.requests += 1
        try:
            while part.filled < len(view):
                check_deadline(self._name)  # each read waits at most the stall timeout
                if cancelled is not None and cancelled.is_set():
                    raise _Cancelled
                chunk = body.read(min(READ_PIECE, len(view) - part.filled))
                if not chunk:
                    return
                view[part.filled : part.filled + len(chunk)] = chunk
                part.filled += len(chunk)
        finally:
            view.release()
            body.close()


@dataclass(slots=True)
class _Range:
    """A range being fetched: its first byte, its buffer, the bytes filled so far."""

    start: int
    buffer: bytearray
    filled: int = 0


class _EarlyEnd(Exception):
    """A body that ended before its range did."""


class ParallelRangeStream(ReadOnlyStream):
    """An object read front to back through ranges fetched ``plan.connections`` at once.

    Its first range (:data:`FIRST_RANGE`) is fetched alone, the read-ahead once it is
    read; ``start`` > 0 begins the stream there (the ranges after the first end on whole
    ``plan.range_size`` from it). Holds at most ``plan.read_ahead`` bytes of ranges
    (``peak_held`` records the most it held); ``close()`` stops the fetches and ends the
    threads."""

    def __init__(self, fetcher: RangeFetcher, size: int, plan: ReadPlan, start: int = 0) -> None:
        """``start``: the byte of the object the stream begins at (0: its first)."""
        self._fetcher = fetcher
        self._size = size
        self._plan = plan
        self._window = min(plan.window, max(1, math.ceil((size - start) / plan.range_size)))
        self._pool: ThreadPoolExecutor | None = None
        self._pending: collections.deque[tuple[Future[bytearray], int]] = collections.deque()
        self._start = self._next = start
        self._started = False
        self._current = memoryview(b"")
        self._offset = 0
        self._cancelled = threading.Event()
        self.peak_held = 0

    def _submit(self, length: int) -> None:
        if self._pool is None:
            workers = min(self._plan.connections, self._window)
            self._pool = ThreadPoolExecutor(workers, thread_name_prefix="tmpwarden-range")
        start = self._next
        self._next = min(start + length, self._size)
        future = self._pool.submit(self._fetcher.fetch, start, self._next - start, self._cancelled)
        self._pending.append((future, self._next - start))

    def read(self, size: int = -1) -> bytes:
        if self.closed:
            raise ValueError("read of a closed stream")
        if self._offset >= len(self._current) and not self._advance():
            return b""
        if size < 0:
            size = len(self._current) - self._offset
        data = bytes(self._current[self._offset : self._offset + size])
        self._offset += len(data)
        return data

    def read_range(self) -> memoryview:
        """The rest of the current range, or else the next range whole, without a copy
        (empty at the end); the view is valid until the next read."""
        if self.closed:
            raise ValueError("read of a closed stream")
        if self._offset >= len(self._current) and not self._advance():
            return memoryview(b"")
        view = self._current[self._offset :]
        self._offset = len(self._current)
        return view

    def _advance(self) -> bool:
        """Make the next range current (waiting for it) and keep the window full; False
        at the end of the object."""
        self._current = memoryview(b"")  # let go of the range before the next one
        if not self._started:  # the head alone first: see FIRST_RANGE
            self._started = True
            self._submit(min(FIRST_RANGE, self._plan.range_size))
        else:
            while self._next < self._size and len(self._pending) < self._window:
                done = (self._next - self._start) % self._plan.range_size
                self._submit(self._plan.range_size - done)  # the next range's end aligned
        if not self._pending:
            return False
        held = sum(length for _, length in self._pending)  # fetched or in flight
        self.peak_held = max(self.peak_held, held)
        self._current = memoryview(self._pending.popleft()[0].result())
        self._offset = 0
        return bool(self._current)

    def close(self) -> None:
        if not self.closed:
            self._cancelled.set()
            for future, _ in self._pending:
                future.cancel()
            if self._pool is not None:
                self._pool.shutdown(wait=True)
            self._pending.clear()
            self._current = memoryview(b"")
        super().close()
