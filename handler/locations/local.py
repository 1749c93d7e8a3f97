"""Sources (archives to read) and destinations (ZIPs to write), by location.

A destination is either complete and verified, or absent: a local ZIP is written
under a temporary name beside its final path, verified, then renamed into place.
A symbolic link to a regular file is written through; a destination that is anything else
but a regular file is refused (:mod:`handler.locations.publish`).
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Literal, Protocol

from handler.errors import (
    CompressionError,
    DestinationError,
    DestinationExistsError,
    InputError,
    InsufficientStorageError,
    SourceNotFoundError,
)
from handler.locations.directory import LocalDirectorySource
from handler.locations.leftovers import LockedPartial, remove_stale_partials
from handler.locations.publish import (
    NO_HARD_LINKS,
    exists_message,
    rename_noreplace,
    write_target,
)
from handler.storage import available_bytes
from handler.validation import shown_repr
from handler.zipwriter.centraldir import (
    CentralDirectoryError,
    parse_central_record,
    read_central_records,
)
from handler.zipwriter.records import ZipEntry
from monitor.units import MiB

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

WRITE_BUFFER = 1 * MiB
READ_BUFFER = 1 * MiB
IfExists = Literal["overwrite", "fail"]
"""What to do when the destination already exists: replace it, or refuse."""
IF_EXISTS: tuple[IfExists, ...] = ("overwrite", "fail")


class Source(Protocol):
    """An archive to read: sequentially from the start, or at random (for ZIP)."""

    @property
    def name(self) -> str: ...

    def size(self) -> int: ...

    def open_stream(self) -> BinaryIO: ...

    def open_random_access(self) -> BinaryIO: ...


class DestinationWriter(Protocol):
    """One attempt at writing a destination: write to ``sink``, then commit or abort."""

    @property
    def sink(self) -> BinaryIO: ...

    def commit(self, entries: Sequence[ZipEntry]) -> None: ...

    def abort(self) -> None: ...


class Destination(Protocol):
    """Where a ZIP goes."""

    @property
    def name(self) -> str: ...

    def check_writable(self) -> None: ...

    def begin(self) -> DestinationWriter: ...


class LocalSource:
    """An archive on a local filesystem."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._check_readable()

    @property
    def name(self) -> str:
        return str(self.path)

    def _check_readable(self) -> None:
        if not self.path.exists():
            raise SourceNotFoundError(f"{self.path}: no such file; check the source path")
        if self.path.is_dir():
            raise InputError(f"{self.path}: is a directory; the source must be an archive file")
        if not os.access(self.path, os.R_OK):
            raise SourceNotFoundError(
                f"{self.path}: permission denied; make the file readable by this user"
            )

    def size(self) -> int:
        return self.path.stat().st_size

    def open_stream(self) -> BinaryIO:
        return self.path.open("rb", buffering=READ_BUFFER)

    def open_random_access(self) -> BinaryIO:
        return self.path.open("rb", buffering=READ_BUFFER)


class LocalDestination:
    """A ZIP file on a local filesystem, written atomically; ``if_exists="fail"`` never
    replaces an existing file (the partial file is hard-linked into place, which fails
    when the name exists)."""

    def __init__(self, path: str | os.PathLike[str], if_exists: IfExists = "overwrite") -> None:
        self.path = Path(path)
        self.if_exists = if_exists

    @property
    def name(self) -> str:
        return str(self.path)

    def check_writable(self) -> None:
        """Fail before any work when the destination cannot be written: DestinationError
        naming what is there when it is not a regular file (or a link to one), or when its
        directory is missing or not writable; DestinationExistsError for ``fail``."""
        parent = write_target(self.path).parent
        if not parent.is_dir():
            raise DestinationError(
                f"{self.path}: the directory {parent} does not exist; create it first"
            )
        if not os.access(parent, os.W_OK | os.X_OK):
            raise DestinationError(
                f"{self.path}: cannot write in {parent} (permission denied); "
                "choose a writable directory"
            )
        if self.if_exists == "fail" and os.path.lexists(self.path):
            raise DestinationExistsError(exists_message(self.path))

    def begin(self) -> LocalDestinationWriter:
        self.check_writable()
        return LocalDestinationWriter(self.path, self.if_exists)


class _DiskFullTranslator(io.BufferedWriter):
    """A buffered file whose disk-full errors name the destination and the space left."""

    def __init__(self, raw: io.FileIO, final_path: Path) -> None:
        super().__init__(raw, buffer_size=WRITE_BUFFER)
        self._final_path = final_path

    def write(self, data: bytes) -> int:  # type: ignore[override]
        try:
            return super().write(data)
        except OSError as exc:
            raise _translate_write_error(exc, self._final_path) from exc

    def flush(self) -> None:
        try:
            super().flush()
        except OSError as exc:
            raise _translate_write_error(exc, self._final_path) from exc

    def seek(self, offset: int, whence: int = 0) -> int:
        try:  # seeking flushes the buffer: a full disk can surface here too
            return super().seek(offset, whence)
        except OSError as exc:
            raise _translate_write_error(exc, self._final_path) from exc


def _translate_write_error(exc: OSError, final_path: Path) -> OSError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        try:
            available = available_bytes(final_path.parent)
        except OSError:
            available = 0
        return InsufficientStorageError(
            final_path,
            None,
            available,
            "the destination's filesystem is full; free space there or write the ZIP "
            "elsewhere (nothing was left behind)",
        )
    return DestinationError(f"{final_path}: write failed: {exc.strerror or exc}")


class LocalDestinationWriter:
    """Writes ``<dir>/.<name>.<token>.tmpwarden-partial`` beside the file it replaces
    (:func:`write_target`: the link's target for a symbolic link), locked while it lives,
    then renames it into place; first removes the partials of killed runs to the same
    destination (see :mod:`handler.locations.leftovers`). ``final_path`` is the path as given."""

    def __init__(self, final_path: Path, if_exists: IfExists = "overwrite") -> None:
        self.shown_path = final_path
        self.final_path = write_target(final_path)
        self.if_exists = if_exists
        remove_stale_partials(self.final_path)
        try:
            self._partial = LockedPartial(self.final_path)
        except OSError as exc:
            raise _translate_write_error(exc, self.final_path) from exc
        self.partial_path = self._partial.path
        raw = io.FileIO(self._partial.open_for_writing(), "wb", closefd=True)
        self._file = _DiskFullTranslator(raw, self.final_path)

    @property
    def sink(self) -> BinaryIO:
        return self._file

    def commit(self, entries: Sequence[ZipEntry]) -> None:
        """Flush, sync, verify the ZIP's directory against ``entries``, rename into place."""
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            verify_zip_file(self.partial_path, entries, shown_as=str(self.shown_path))
            try:
                self._publish()
                _fsync_directory(self.final_path.parent)
            except DestinationError:
                raise
            except OSError as exc:
                raise _translate_write_error(exc, self.final_path) from exc
        except BaseException:
            self.abort()
            raise
        self._partial.release()

    def _publish(self) -> None:
        """Put the verified partial at the final path: replacing what is there (checked
        again, so a device or FIFO put there since :meth:`__init__` is never replaced), or,
        for ``fail``, never replacing anything."""
        if write_target(self.shown_path) != self.final_path:
            raise DestinationError(
                f"{self.shown_path}: changed while the ZIP was written (it now leads to "
                f"{write_target(self.shown_path)}); nothing was written; run again"
            )
        if self.if_exists == "overwrite":
            self.partial_path.replace(self.final_path)
            return
        try:
            os.link(self.partial_path, self.final_path)  # atomic; never replaces
        except FileExistsError:
            raise DestinationExistsError(exists_message(self.shown_path)) from None
        except OSError as exc:
            if exc.errno not in NO_HARD_LINKS:
                raise
            rename_noreplace(self.partial_path, self.final_path, shown=self.shown_path)
            return
        self.partial_path.unlink()

    def abort(self) -> None:
        """Remove the partial file; safe to call more than once."""
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(FileNotFoundError):
            self.partial_path.unlink()
        self._partial.release()


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def verify_zip_file(path: Path, entries: Sequence[ZipEntry], *, shown_as: str) -> None:
    """Read a written ZIP's central directory back from the file, record by record
    (:mod:`handler.zipwriter.centraldir`), and compare each with what was written, in order: name
    bytes, flags, method, CRC, sizes and local header offset; then the count. Memory stays
    at one record whatever the member count."""
    expected = iter(entries)
    listed = 0
    try:
        with path.open("rb", buffering=READ_BUFFER) as handle:
            for record in read_central_records(handle):
                listed += 1
                entry = next(expected, None)
                if entry is not None and _fields(parse_central_record(record)) != _fields(entry):
                    raise CompressionError(
                        f"{shown_as}: member {entry.name!r} reads back differently from what "
                        "was written"
                    )
    except (CentralDirectoryError, UnicodeDecodeError, OSError) as exc:
        raise CompressionError(f"{shown_as}: the written ZIP does not read back ({exc})") from exc
    if listed != len(entries):
        raise CompressionError(
            f"{shown_as}: the written ZIP lists {listed} members, expected {len(entries)}"
        )


def _fields(entry: ZipEntry) -> tuple[bytes, int, int, int, int, int, int]:
    return (
        entry.encoded_name,
        entry.flags,
        entry.method,
        entry.crc32,
        entry.uncompressed_size,
        entry.compressed_size,
        entry.offset,
    )


def check_location(location: str, *, zip_destination: bool = False) -> str:
    """The location, stripped, when it is an ``s3://bucket/key`` URL or a path; else
    InputError saying what is wrong with it."""
    text = location.strip()
    if not text:
        raise InputError("must be a non-empty string (s3://bucket/key or a path)")
    if text.startswith("s3://"):
        bucket, _, key = text.removeprefix("s3://").partition("/")
        if not bucket or not key or (zip_destination and key.endswith("/")):
            what = "an object: s3://bucket/key (not a bucket or prefix)"
            if not zip_destination:  # a source may be a prefix (handler.locations.prefix)
                what = "an object or a prefix: s3://bucket/key or s3://bucket/prefix/"
            raise InputError(f"{shown_repr(text)} must name {what}")
    elif "://" in text:
        raise InputError(f"{shown_repr(text)}: only s3:// URLs and local paths are supported")
    if zip_destination and text.endswith("/"):
        raise InputError(f"{shown_repr(text)} must name the ZIP to write, not a directory")
    return text


def is_s3(location: str) -> bool:
    """Whether ``location`` is an ``s3://`` URL."""
    return location.startswith("s3://")


def open_source(location: str | os.PathLike[str], *, s3: S3Client | None = None) -> Source:
    """The source named by ``location``: ``s3://bucket/key`` or a local path (one archive),
    or ``s3://bucket/prefix/`` or a directory (a tree source, read member by member:
    :mod:`handler.locations.prefix`, :mod:`handler.locations.directory`)."""
    text = check_location(str(location))
    if is_s3(text):
        from handler.locations.s3 import S3Source, make_client  # noqa: PLC0415 - boto3 only for S3

        if text.endswith("/"):
            from handler.locations.prefix import S3PrefixSource  # noqa: PLC0415

            return S3PrefixSource(s3 or make_client(), text)
        client = s3 or make_client()
        try:
            return S3Source(client, text)
        except SourceNotFoundError as exc:
            from handler.locations.prefix import missing_object_error  # noqa: PLC0415

            raise missing_object_error(client, text, exc) from exc
    if text.endswith("/") or Path(location).is_dir():
        return LocalDirectorySource(location)
    return LocalSource(location)


def open_destination(
    location: str | os.PathLike[str],
    *,
    s3: S3Client | None = None,
    if_exists: IfExists = "overwrite",
) -> Destination:
    """The destination named by ``location``: ``s3://bucket/key`` or a local path;
    ``if_exists="fail"`` refuses to replace what is there (DestinationExistsError)."""
    text = check_location(str(location), zip_destination=True)
    if is_s3(text):
        from handler.locations.multipart import S3Destination  # noqa: PLC0415 - boto3 only for S3
        from handler.locations.s3 import make_client  # noqa: PLC0415

        return S3Destination(s3 or make_client(), text, if_exists)
    return LocalDestination(location, if_exists)
