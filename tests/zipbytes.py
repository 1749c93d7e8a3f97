"""ZIPs written byte by byte, to hold what ``zipfile`` will not write: names in a legacy
code page without the UTF-8 flag, a chosen "version made by" system, any extra field.

Records follow APPNOTE 6.3.10 sections 4.3.7 (local header), 4.3.12 (central header)
and 4.3.16 (end of central directory); members are stored (method 0).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

MADE_BY_MSDOS = 0
MADE_BY_UNIX = 3
MADE_BY_NTFS = 11
UTF8_FLAG = 0x0800
UNICODE_PATH_EXTRA_ID = 0x7075


@dataclass(frozen=True)
class RawMember:
    """One stored member: its name exactly as bytes, and what the headers say of it."""

    name: bytes
    data: bytes = b""
    system: int = MADE_BY_UNIX
    flags: int = 0
    extra: bytes = b""
    unix_mode: int = 0o100644


def unicode_path_extra(header_name: bytes, unicode_name: str, *, version: int = 1) -> bytes:
    """The Info-ZIP Unicode Path extra field (0x7075, APPNOTE 4.6.9): version, CRC-32 of
    the header's name bytes, the name in UTF-8."""
    body = struct.pack("<BI", version, zlib.crc32(header_name)) + unicode_name.encode("utf-8")
    return struct.pack("<HH", UNICODE_PATH_EXTRA_ID, len(body)) + body


def write_raw_zip(path: Path, members: Sequence[RawMember]) -> Path:
    """Write ``members`` as a ZIP at ``path``, every byte as given."""
    out = bytearray()
    central = bytearray()
    for member in members:
        offset = len(out)
        crc = zlib.crc32(member.data)
        size = len(member.data)
        out += struct.pack(
            "<IHHHHHIIIHH",
            0x04034B50,
            20,
            member.flags,
            0,
            0,
            0x21,
            crc,
            size,
            size,
            len(member.name),
            len(member.extra),
        )
        out += member.name + member.extra + member.data
        external = (member.unix_mode << 16) if member.system == MADE_BY_UNIX else 0
        if member.name.endswith((b"/", b"\\")):
            external |= 0x10
        central += struct.pack(
            "<IHHHHHHIIIHHHHHII",
            0x02014B50,
            (member.system << 8) | 20,
            20,
            member.flags,
            0,
            0,
            0x21,
            crc,
            size,
            size,
            len(member.name),
            len(member.extra),
            0,
            0,
            0,
            external,
            offset,
        )
        central += member.name + member.extra
    directory_offset = len(out)
    out += central
    out += struct.pack(
        "<IHHHHIIH",
        0x06054B50,
        0,
        0,
        len(members),
        len(members),
        len(central),
        directory_offset,
        0,
    )
    path.write_bytes(bytes(out))
    return path
