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
ranges fetched by ``connections`` threads at once and handed out in order, each as its
bytes arrive (a read waits only for the bytes it asks for, not for the whole range). The
ranges fetched or being fetched and not yet consumed hold at most ``read_ahead`` bytes
(each range is one buffer of its size, filled in place); each connection also holds the
one piece (:data:`READ_PIECE`) it is copying in. The read-ahead opens up as the stream is
read (:data:`RAMP_START`): the connections share the network, so ranges started together
all arrive late, and the first bytes would wait for the whole read-ahead.

The default of 4 connections follows AWS's guidance of one concurrent request per
85-90 MB/s wanted ("Performance design patterns for Amazon S3", Amazon S3 User Guide;
issue 10): 4 x 85 MB/s covers the 75 MB/s of a function's usual network (600 Mbps)
with room for each range's first-byte latency, and nearly the 375 MB/s of the 3 Gbps
of a 10 GB function. ``TMPWARDEN_SOURCE_CONNECTIONS`` sets it (1 to 64) and
``TMPWARDEN_READ_AHEAD_MIB`` the read-ahead (default connections x 8 MiB).
"""

from __future__ import annotations

import collections
import functools
import math
import os
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, cast

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
RAMP_START = 1 * MiB
"""Where a stream's second range ends. Each range after it ends at twice the last one's
end (counted from the stream's start) until it would be ``range_size`` long; from there
ranges end on whole ``range_size``. The ranges fetched or in flight hold at most as many
bytes as the stream has handed on (two at least besides the one being read, so that a
request's first-byte latency hides behind another's transfer), up to ``read_ahead``.
Four 8 MiB ranges started together at 75 MB/s gave the first 16 MiB after 0.54 s, twice
the 0.22 s the network needs; the packaging pipeline, and the upload after it, waited for
them (issue 10's ``lambda-600mbps`` test bed, 2026-11-30)."""
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
        read-ahead) and the chunk each connection it uses is copying in (the ramp's shorter
        ranges count: see :data:`RAMP_START`) (for the memory plan)."""
        ranges = min(self.window, math.ceil(size / self.range_size))
        fetching = min(self.connections, _ranges_at_most(self, size, self.window))
        return ranges * self.range_size + fetching * READ_PIECE


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
        self.fetch_into(part, cancelled)
        return part.buffer if part.complete else bytearray()

    def fetch_into(self, part: _Range, cancelled: threading.Event | None = None) -> None:
        """Fill ``part`` from the byte it reached to its end (``part.advance`` runs after
        each piece); returns early, not complete, once ``cancelled`` is set. Raises as
        :meth:`fetch` does."""
        resumes = 0
        while part.filled < len(part.buffer):
            try:
                self._read_into(part, cancelled)
                if part.filled < len(part.buffer):
                    raise _EarlyEnd(f"the body ended {len(part.buffer) - part.filled} bytes early")
            except _Cancelled:
                return
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
                part.advance(len(chunk))
        finally:
            view.release()
            body.close()


@dataclass(slots=True)
class _Range:
    """A range being fetched: its first byte, its buffer, the bytes filled so far, and
    the condition its reader waits on (None: nobody reads it before it is whole)."""

    start: int
    buffer: bytearray
    filled: int = 0
    arrived: threading.Condition | None = None

    @property
    def complete(self) -> bool:
        return self.filled == len(self.buffer)

    def advance(self, count: int) -> None:
        """``count`` more bytes were filled in: wake the reader waiting for them."""
        if self.arrived is None:
            self.filled += count
            return
        with self.arrived:
            self.filled += count
            self.arrived.notify_all()


def _notify(arrived: threading.Condition, _future: Future[None]) -> None:
    """A range's fetch ended (done, failed or cancelled): wake its reader."""
    with arrived:
        arrived.notify_all()


def _range_end(done: int, range_size: int) -> int:
    """Where the range after ``done`` bytes of a stream ends (counted from its start): the
    ramp's next end (see :data:`RAMP_START`), else the next whole ``range_size``."""
    if done >= range_size:
        return done + range_size - done % range_size
    end = RAMP_START
    while end <= done:
        end *= 2
    return min(end, range_size)


def _ranges_at_most(plan: ReadPlan, length: int, most: int) -> int:
    """How many ranges a stream of ``length`` bytes is read in (the head and the ramp's
    shorter ranges counted), at most ``most``; at least 1."""
    count, done = 1, min(FIRST_RANGE, plan.range_size, max(length, 0))
    while done < length and count < most:
        count, done = count + 1, min(_range_end(done, plan.range_size), length)
    return count


class _EarlyEnd(Exception):
    """A body that ended before its range did."""


class ParallelRangeStream(ReadOnlyStream):
    """An object read front to back through ranges fetched ``plan.connections`` at once.

    Its first range (:data:`FIRST_RANGE`) is fetched alone, the read-ahead once it is
    read; ``start`` > 0 begins the stream there. The ranges after the first grow to
    ``plan.range_size`` and the read-ahead opens up as the stream is read
    (:data:`RAMP_START`). A read returns the bytes it asks for as soon as they have
    arrived (fewer at the end of a range). Holds at most ``plan.read_ahead`` bytes of
    ranges (``peak_held`` records the most it held); ``close()`` stops the fetches and
    ends the threads."""

    def __init__(self, fetcher: RangeFetcher, size: int, plan: ReadPlan, start: int = 0) -> None:
        """``start``: the byte of the object the stream begins at (0: its first)."""
        self._fetcher = fetcher
        self._size = size
        self._plan = plan
        self._window = _ranges_at_most(plan, size - start, plan.window)
        self._pool: ThreadPoolExecutor | None = None
        self._pending: collections.deque[tuple[Future[None], _Range]] = collections.deque()
        self._start = self._next = start
        self._started = False
        self._current: tuple[Future[None], _Range] | None = None
        self._offset = 0
        self._handed = 0  # bytes of ranges made current so far
        self._arrived = threading.Condition()
        self._cancelled = threading.Event()
        self.peak_held = 0

    def _submit(self, length: int) -> None:
        if self._pool is None:
            workers = min(self._plan.connections, self._window)
            self._pool = ThreadPoolExecutor(workers, thread_name_prefix="tmpwarden-range")
        start = self._next
        self._next = min(start + length, self._size)
        part = _Range(start, bytearray(self._next - start), arrived=self._arrived)
        future = self._pool.submit(self._fetcher.fetch_into, part, self._cancelled)
        # the callback holds the condition, not the stream: a stream dropped unclosed is
        # freed (and closed) at once, not kept with its buffers and threads until a gc
        future.add_done_callback(functools.partial(_notify, self._arrived))
        self._pending.append((future, part))

    def _next_length(self) -> int:
        """The length of the range after ``_next``: to the ramp's next end (see
        :data:`RAMP_START`), else to the next whole ``range_size`` from the start."""
        done = self._next - self._start
        return _range_end(done, self._plan.range_size) - done

    def _fill_window(self) -> None:
        """Start ranges while the window has room: at most ``_window`` ranges held (the
        current one included) and, past two besides the current one, no more bytes than
        the stream has handed on (see :data:`RAMP_START`)."""
        while self._next < self._size:
            held = len(self._pending) + (self._current is not None)
            if held >= self._window:
                return
            length = min(self._next_length(), self._size - self._next)
            ahead = sum(len(part.buffer) for _, part in self._pending) + length
            if len(self._pending) >= 2 and ahead > self._handed:
                return
            self._submit(length)

    def _take(self, need: int, most: int) -> memoryview:
        """At most ``most`` bytes of the stream from the offset, once ``need`` of them (or
        the rest of the current range) have arrived; empty at the end of the object.
        Raises the range's error."""
        if self.closed:
            raise ValueError("read of a closed stream")
        if (self._current is None or self._offset >= len(self._current[1].buffer)) and (
            not self._advance()
        ):
            return memoryview(b"")
        future, part = cast(tuple[Future[None], _Range], self._current)
        need = min(need, len(part.buffer) - self._offset)
        if part.filled - self._offset < need:
            with self._arrived:
                while part.filled - self._offset < need and not future.done():
                    self._arrived.wait()
            if part.filled - self._offset < need:
                try:
                    future.result()  # raises the range's error
                finally:
                    # the error's traceback holds this frame: without its future (which
                    # holds the error) and range, no cycle keeps the buffer after close()
                    del future, part
                raise ValueError("read of a closed stream")  # cancelled: only by close()
        end = min(part.filled, self._offset + most)
        view = memoryview(part.buffer)[self._offset : end]
        self._offset = end
        return view

    def read(self, size: int = -1) -> bytes:
        size = self._size if size < 0 else size
        with self._take(size, size) as view:
            return bytes(view)

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        with self._take(len(buffer), len(buffer)) as view:
            buffer[: len(view)] = view
            return len(view)

    def read_range(self) -> memoryview:
        """What has arrived of the current range past the offset (waiting for one piece,
        :data:`READ_PIECE`, or the range's rest), else of the next range, without a copy;
        empty at the end. The view is valid until the next read."""
        return self._take(READ_PIECE, self._plan.range_size)

    def _advance(self) -> bool:
        """Make the next range current and keep the window open; False at the end of the
        object."""
        self._current = None  # let go of the range before the next one
        head = not self._started
        if head:  # the head alone first: see FIRST_RANGE
            self._started = True
            self._submit(min(FIRST_RANGE, self._plan.range_size, self._size - self._next))
        else:
            self._fill_window()
        if not self._pending:
            return False
        held = sum(len(part.buffer) for _, part in self._pending)  # fetched or in flight
        self.peak_held = max(self.peak_held, held)
        self._current = self._pending.popleft()
        self._offset = 0
        self._handed += len(self._current[1].buffer)
        if not head:
            self._fill_window()  # what was just handed on may open the window further
        return bool(self._current[1].buffer)

    def close(self) -> None:
        if not self.closed:
            self._cancelled.set()
            for future, _ in self._pending:
                future.cancel()
            if self._pool is not None:
                self._pool.shutdown(wait=True)
            self._pending.clear()
            self._current = None
        super().close()
