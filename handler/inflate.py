"""gzip inflated on a thread of its own and handed to the reader in whole blocks.

On the local path from a tar.gz, inflating is the slowest stage: single-threaded ISA-L
inflate is the floor the bench measures (:mod:`benchmarks.local_floor`). The thread
here keeps inflating while the reader's thread parses tar headers, computes CRCs and
hands data to the deflate and writer threads; it must not wait for them, so:

* it runs up to :data:`INFLATE_AHEAD` blocks ahead of the reader (python-isal's own
  threaded reader, ``isal.igzip_threaded``, holds 2, and its reader polls the queue
  every 10 ms). On the bench's 1 GiB artifact, 12 interleaved pairs on 2 shared cores
  (2026-11-30), 8 blocks ahead took the local run from a median 1.119x to 1.104x the
  floor;
* a block goes to the reader as it is: a read that asks for at least the rest of the
  block gets that bytes object without a copy (isal's reader copies each block once
  more through an ``io.BytesIO``);
* it reads the compressed source :data:`RAW_BUFFER` bytes at a time, so the thread
  takes Python's GIL (the source is a Python stream) 512 times per GiB, not 2,048 at
  python-isal's default of 512 KiB. The raw buffer and the blocks ahead add up to the
  10 MiB python-isal's threaded reader held (8 MiB of input, 2 blocks), which
  :data:`handler.memory.BASELINE_BYTES` was measured with.

Without ISA-L the standard library's :class:`gzip.GzipFile` inflates inline.
"""

from __future__ import annotations

import gzip
import io
import threading
from collections import deque
from typing import BinaryIO, Final, cast

from handler.streams import Readable, ReadOnlyStream
from monitor.units import MiB

try:  # pragma: no cover - which branch runs depends on the platform
    from isal import igzip as _isal_igzip

    HAVE_ISAL = True
except ImportError:  # pragma: no cover
    HAVE_ISAL = False

INFLATE_AHEAD: Final = 8
"""Most blocks inflated and not yet taken by the reader."""
RAW_BUFFER: Final = 2 * MiB
"""Compressed bytes read from the source at once."""
INFLATE_THREAD: Final = "tmpwarden-inflate"


class _Blocks:
    """Blocks from the inflate thread to the reader, at most ``limit`` queued, then the
    end: ``b""``, or the error the thread met. Holds no reference to either end, so
    neither is kept alive by the other (a cycle through ISA-L's reader, a C type
    without garbage-collection support, would never be freed)."""

    def __init__(self, limit: int) -> None:
        self._items: deque[bytes] = deque()
        self._limit = limit
        self._ready = threading.Condition()
        self._ended = False
        self._stopped = False
        self._error: BaseException | None = None

    def put(self, block: bytes) -> bool:
        """Queue ``block``, waiting while ``limit`` are queued; False once stopped."""
        with self._ready:
            while len(self._items) >= self._limit and not self._stopped:
                self._ready.wait()
            if self._stopped:
                return False
            self._items.append(block)
            self._ready.notify()
            return True

    def end(self, error: BaseException | None) -> None:
        with self._ready:
            self._ended, self._error = True, error
            self._ready.notify()

    def take(self) -> bytes:
        """The next block; ``b""`` at the end; the thread's error, raised as it was."""
        with self._ready:
            while not self._items and not self._ended:
                self._ready.wait()
            if self._items:
                block = self._items.popleft()
                self._ready.notify()
                return block
            if self._error is not None:
                raise self._error
            return b""

    def stop(self) -> None:
        """Drop what is queued and let the thread end at its next block."""
        with self._ready:
            self._stopped = self._ended = True
            self._items.clear()
            self._ready.notify_all()


def _inflate(decoder: Readable, blocks: _Blocks, block_size: int) -> None:
    """The inflate thread: ``block_size`` bytes at a time into ``blocks``, then the end."""
    try:
        while data := decoder.read(block_size):
            if not blocks.put(data):
                return
    except BaseException as exc:  # raised again on the reader's thread
        # The error's traceback holds this frame: let go of the 2 MiB input buffer and
        # the last block now, not when the cycle collector next runs.
        del decoder
        data = b""
        blocks.end(exc)
    else:
        blocks.end(None)


def _decoder(raw: BinaryIO | io.RawIOBase, raw_buffer: int) -> Readable:
    """ISA-L's gzip reader over ``raw``, reading ``raw_buffer`` bytes at a time: the
    reader python-isal's ``IGzipFile`` and threaded reader are built on; a python-isal
    without it gets its public ``IGzipFile`` (512 KiB reads)."""
    reader_type = getattr(_isal_igzip, "_IGzipReader", None)
    if reader_type is None:
        return cast(Readable, _isal_igzip.IGzipFile(fileobj=raw, mode="rb"))  # type: ignore[no-untyped-call]
    return cast(Readable, reader_type(raw, raw_buffer))


class InflatingReader(ReadOnlyStream):
    """Reads the gzip stream ``raw`` (all its members, as ``gzip`` does) inflated on a
    thread of its own, :data:`INFLATE_AHEAD` blocks of ``block_size`` bytes at most
    ahead of the reader.

    ``read(size)`` returns at most ``size`` bytes, and at most the rest of the current
    block: it may be short of ``size`` before the end (as a raw stream's may), and
    ``b""`` only at the end. An error of the source or of the data (ISA-L's
    ``IsalError``, ``EOFError`` for a truncated stream, ``gzip.BadGzipFile``) is raised
    by the read that reaches it, as the same exception. :meth:`close` stops and joins
    the thread; ``raw`` stays open (its owner closes it).
    """

    def __init__(
        self,
        raw: BinaryIO | io.RawIOBase,
        *,
        block_size: int,
        ahead: int = INFLATE_AHEAD,
        raw_buffer: int = RAW_BUFFER,
    ) -> None:
        if min(block_size, ahead, raw_buffer) < 1:
            raise ValueError(
                f"block_size ({block_size}), ahead ({ahead}) and raw_buffer ({raw_buffer}) "
                "must each be at least 1"
            )
        self._blocks = _Blocks(ahead)
        self._block = b""
        self._offset = 0
        self._thread: threading.Thread | None = threading.Thread(
            target=_inflate,
            args=(_decoder(raw, raw_buffer), self._blocks, block_size),
            name=INFLATE_THREAD,
            daemon=True,
        )
        self._thread.start()

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            return self.readall()
        if size == 0:
            return b""
        if self._offset >= len(self._block):
            self._next_block()
        block, start = self._block, self._offset
        end = min(len(block), start + size)
        self._offset = end
        if start == 0 and end == len(block):
            self._block = b""  # handed over whole: no copy, and not held here
            return block
        return block[start:end]

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        if not len(buffer):
            return 0
        if self._offset >= len(self._block):
            self._next_block()
        start = self._offset
        count = min(len(buffer), len(self._block) - start)
        buffer[:count] = self._block[start : start + count]
        self._offset = start + count
        return count

    def _next_block(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file")
        self._block, self._offset = self._blocks.take(), 0

    def close(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._blocks.stop()
            thread.join()
        self._block = b""
        super().close()


def open_gzip_reader(raw: BinaryIO, *, block_size: int) -> BinaryIO:
    """Decompress a gzip stream: on its own thread (:class:`InflatingReader`) with ISA-L,
    else inline with the standard library. The caller must close the returned stream."""
    if HAVE_ISAL:
        return cast(BinaryIO, InflatingReader(raw, block_size=block_size))
    return cast(BinaryIO, gzip.GzipFile(fileobj=raw, mode="rb"))
