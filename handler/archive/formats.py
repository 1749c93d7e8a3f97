"""Detect an archive's format from its first bytes, never from its file name."""

from __future__ import annotations

from handler.errors import UnsupportedArchiveError
from handler.members import ArchiveFormat

TAR_BLOCK = 512
SNIFF_SIZE = TAR_BLOCK
"""Bytes read to detect a format: the longest prefix any rule here looks at (a tar
header, or the zero block that ends a tar: see :func:`is_empty_tar`)."""
SUPPORTED = "tar, tar.gz, tar.bz2, tar.xz or zip"

_MAGIC: tuple[tuple[bytes, ArchiveFormat], ...] = (
    (b"\x1f\x8b", ArchiveFormat.TAR_GZ),
    (b"BZh", ArchiveFormat.TAR_BZ2),
    (b"\xfd7zXZ\x00", ArchiveFormat.TAR_XZ),
    (b"PK\x03\x04", ArchiveFormat.ZIP),
    (b"PK\x05\x06", ArchiveFormat.ZIP),  # an empty ZIP
    (b"PK\x07\x08", ArchiveFormat.ZIP),  # a ZIP written for spanning, as one part
)
_KNOWN_OTHERS: tuple[tuple[bytes, str], ...] = (
    (b"\x28\xb5\x2f\xfd", "zstd-compressed"),
    (b"\x04\x22\x4d\x18", "lz4-compressed"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!", "a RAR archive"),
)


def is_tar_header(block: bytes) -> bool:
    """Whether ``block`` is a tar header: its stored checksum matches its bytes."""
    if len(block) < TAR_BLOCK or block[:TAR_BLOCK] == bytes(TAR_BLOCK):
        return False
    stored = block[148:156].replace(b"\x00", b" ").strip()
    try:
        checksum = int(stored, 8)
    except ValueError:
        return False
    header = block[:148] + b" " * 8 + block[156:TAR_BLOCK]
    return checksum in (sum(header), sum(b - 256 if b > 127 else b for b in header))


def is_empty_tar(head: bytes) -> bool:
    """Whether a tar stream (plain, or after decompression) starting with ``head`` is an
    empty archive: its first whole 512-byte block is zeros, the end-of-archive marker.

    The one rule for every tar format, as GNU tar and bsdtar apply it: a lone zero block
    (512 bytes), the two of POSIX (1,024) and a whole 10,240-byte record list as empty; a
    stream shorter than one block "does not look like a tar archive" (GNU tar 1.34).
    """
    return len(head) >= TAR_BLOCK and head[:TAR_BLOCK] == bytes(TAR_BLOCK)


def is_tar_start(head: bytes) -> bool:
    """Whether a stream starting with ``head`` (:data:`SNIFF_SIZE` bytes) is a tar archive:
    a tar header, or an empty archive."""
    return is_tar_header(head) or is_empty_tar(head)


def detect_format(head: bytes, source: str) -> ArchiveFormat:
    """The format of an archive that starts with ``head`` (its first :data:`SNIFF_SIZE`
    bytes, fewer only when the archive is shorter)."""
    if not head:
        raise UnsupportedArchiveError(
            f"{source}: the file is empty; expected a {SUPPORTED} archive"
        )
    for magic, fmt in _MAGIC:
        if head.startswith(magic):
            return fmt
    if is_tar_start(head):
        return ArchiveFormat.TAR
    for magic, what in _KNOWN_OTHERS:
        if head.startswith(magic):
            raise UnsupportedArchiveError(f"{source}: the file is {what}; repack it as {SUPPORTED}")
    raise UnsupportedArchiveError(
        f"{source}: not a supported archive (the first bytes match none of {SUPPORTED}); "
        "check that the path names the archive itself"
    )
