"""Cut a byte stream into numbered multipart-upload parts, holding back the part that
holds a range its writer will still patch.

A ZIP member's local header carries its CRC and sizes, known only after the data. A
sink that cannot seek can still fill them in if the part holding the header has not
been sent: :class:`PartCutter` keeps that one part (the *held* part) in memory until
:meth:`PartCutter.patch` writes the final bytes, while the parts after it are sent
meanwhile. S3 accepts parts in any order and assembles them by part number
(UploadPart, CompleteMultipartUpload in the S3 API reference), so the numbers stay
consecutive in stream order whatever the upload order. No I/O here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Part:
    """One part of a multipart upload: its 1-based number and its bytes."""

    number: int
    data: bytes


@dataclass(slots=True)
class _HeldPart:
    number: int
    start: int
    data: bytearray


class PartCutter:
    """Cuts what is written into parts of ``part_size(number)`` bytes, in stream order.

    ``hold(offset, length)`` marks a range that will be patched: no part ends inside it
    (the part that holds it grows by at most ``length`` bytes), and the part that holds
    it is kept back until ``patch`` has written it. One range is held at a time, so the
    memory is at most one held part plus the buffer being filled. Offsets count bytes
    from the stream's start.
    """

    def __init__(self, part_size: Callable[[int], int]) -> None:
        self._part_size = part_size
        self._buffer = bytearray()
        self._buffer_start = 0
        self._next_number = 1
        self._hold: tuple[int, int] | None = None
        self._held: _HeldPart | None = None

    @property
    def position(self) -> int:
        """Bytes written so far."""
        return self._buffer_start + len(self._buffer)

    @property
    def retained(self) -> int:
        """Bytes kept in memory: the held part and the buffer being filled. After each
        call it is under ``2 * (part size + held length)``."""
        return len(self._buffer) + (len(self._held.data) if self._held is not None else 0)

    @property
    def holding(self) -> bool:
        """Whether a range is held (marked, not yet patched)."""
        return self._hold is not None

    def write(self, data: bytes) -> list[Part]:
        """Append ``data``; returns the parts that are complete and may be sent now."""
        self._buffer += data
        ready: list[Part] = []
        while (end := self._next_cut()) is not None:
            number, start = self._next_number, self._buffer_start
            held = self._hold is not None and start <= self._hold[0] < start + end
            with memoryview(self._buffer) as view:
                if held:
                    self._held = _HeldPart(number, start, bytearray(view[:end]))
                else:
                    ready.append(Part(number, bytes(view[:end])))
            del self._buffer[:end]
            self._next_number += 1
            self._buffer_start += end
        return ready

    def hold(self, offset: int, length: int) -> None:
        """Keep ``length`` bytes from ``offset`` patchable until :meth:`patch`.

        Raises ``ValueError`` when a range is already held or ``offset`` is in a part
        already cut.
        """
        if self._hold is not None:
            raise ValueError(f"a range at offset {self._hold[0]} is already held")
        if offset < self._buffer_start or length < 0:
            raise ValueError(f"offset {offset} is in a part already cut; it cannot be held")
        self._hold = (offset, length)

    def patch(self, offset: int, data: bytes) -> list[Part]:
        """Overwrite the held range with ``data`` (same offset and length) and release
        it; returns the held part when it is now ready to send.

        Raises ``ValueError`` when ``offset`` and ``len(data)`` are not the held range or
        the range is not written yet.
        """
        if self._hold != (offset, len(data)):
            raise ValueError(f"{len(data)} bytes at offset {offset} are not the held range")
        if offset + len(data) > self.position:
            raise ValueError(f"the held range at offset {offset} is not written yet")
        self._hold = None
        held, self._held = self._held, None
        if held is None:
            start = offset - self._buffer_start
            self._buffer[start : start + len(data)] = data
            return []
        start = offset - held.start
        held.data[start : start + len(data)] = data
        return [Part(held.number, bytes(held.data))]

    def close(self) -> list[Part]:
        """The last part: what is buffered, or an empty part 1 when nothing was written
        (a multipart upload needs at least one part).

        Raises ``ValueError`` when a range is still held (its patch never came).
        """
        if self._hold is not None:
            raise ValueError(f"the range held at offset {self._hold[0]} was never patched")
        if not self._buffer and self._next_number > 1:
            return []
        last = Part(self._next_number, bytes(self._buffer))
        self._next_number += 1
        self._buffer_start += len(self._buffer)
        self._buffer.clear()
        return [last]

    def _next_cut(self) -> int | None:
        """Where the next part ends in the buffer, or None when it is not full yet."""
        end = self._part_size(self._next_number)
        if self._hold is not None:
            hold_start = self._hold[0] - self._buffer_start
            hold_end = hold_start + self._hold[1]
            if hold_start < end < hold_end:
                end = hold_end
        return end if len(self._buffer) >= end else None
