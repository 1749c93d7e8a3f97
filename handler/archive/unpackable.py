"""Members tmpwarden cannot unpack, and the rule for every member ``--include`` leaves out.

Device files, FIFOs, sockets and unknown tar member types have no place in a ZIP, and
an encrypted ZIP entry, or one compressed by a method Python cannot read, cannot be
read. Such a member is refused when it is selected (no ``--include``, or a pattern
matches it).

Any member the patterns leave out (file, directory, symbolic or hard link, special) is
passed over, as ``tar -x PATTERN`` and ``unzip ARCHIVE PATTERN`` pass over members they
do not extract, and only the checks that concern the archive as a whole apply to it:

* its name's path safety (:func:`handler.archive.safety.safe_name`: no absolute path, drive
  letter, backslash, NUL, ``..`` or over-long name): a hostile name is refused wherever
  it is;
* its name's decoding and normalization (:mod:`handler.archive.names`);
* the member-count limit.

Its type, encryption, compression method and link target are not checked, and it does
not claim its name (it is never written, so it conflicts with nothing, and no selected
link can go through it). A selected member is checked fully against every selected
member before it (:class:`handler.archive.safety.MemberGuard`), so a chain of selected links
that escapes is still refused, and a selected hard link needs its target selected.
"""

from __future__ import annotations

import stat
import tarfile
import zipfile

from handler.archive.advice import DEVICE_ADVICE, FIFO_ADVICE, SPECIAL_FILE_ADVICE

ZIP_READABLE_METHODS = frozenset(
    {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
)
Refusal = tuple[str, str]
"""(reason, advice) for an :class:`~handler.errors.ExtractionError`."""


def tar_refusal(info: tarfile.TarInfo) -> Refusal | None:
    """Why a tar member cannot be unpacked, or None when it can (file, directory, link)."""
    if info.isreg() or info.isdir() or info.issym() or info.islnk():
        return None
    if info.ischr() or info.isblk():
        return "it is a device file", DEVICE_ADVICE
    if info.isfifo():
        return "it is a FIFO (named pipe)", FIFO_ADVICE
    return f"it has the unsupported tar member type {info.type!r}", SPECIAL_FILE_ADVICE


def zip_refusal(info: zipfile.ZipInfo) -> Refusal | None:
    """Why a ZIP entry cannot be unpacked, or None when it can."""
    unix_mode = info.external_attr >> 16
    if info.flag_bits & 0x1:
        return "it is encrypted", "repack the archive without a password"
    if info.compress_type not in ZIP_READABLE_METHODS:
        return (
            f"it uses ZIP compression method {info.compress_type}, which cannot be read",
            "repack the archive with deflate or store",
        )
    if stat.S_ISCHR(unix_mode) or stat.S_ISBLK(unix_mode):
        return "it is a device file", DEVICE_ADVICE
    if stat.S_ISFIFO(unix_mode) or stat.S_ISSOCK(unix_mode):
        return "it is a FIFO or a socket", FIFO_ADVICE
    return None
