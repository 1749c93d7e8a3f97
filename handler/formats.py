"""Detect an archive's format from its first bytes, never from its file name."""

from __future__ import annotations

from handler.errors import UnsupportedArchiveError
from handler.members import ArchiveFormat

SNIFF_SIZE = 512
TAR_BLOCK = 512
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


def detect_format(head: bytes, source: str) -> ArchiveFormat:
    """The format of an archive that starts with ``head`` (at least 512 bytes when available)."""
    if not head:
        raise UnsupportedArchiveError(
            f"{source}: the file is empty; expected a {SUPPORTED} archive"
        )
    for magic, fmt in _MAGIC:
        if head.startswith(magic):
            return fmt
    if is_tar_header(head) or head[: 2 * TAR_BLOCK] == bytes(2 * TAR_BLOCK):
        return ArchiveFormat.TAR  # a tar header, or the end marker of an empty tar
    for magic, what in _KNOWN_OTHERS:
        if head.startswith(magic):
            raise UnsupportedArchiveError(f"{source}: the file is {what}; repack it as {SUPPORTED}")
    raise UnsupportedArchiveError(
        f"{source}: not a supported archive (the first bytes match none of {SUPPORTED}); "
        "check that the path names the archive itself"
    )
