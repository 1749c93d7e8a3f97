"""A member's name, decided once from the archive's own bytes, by the rules real unzippers apply.

The reading libraries decode names before we see them (``zipfile`` reads every name
without the UTF-8 flag as CP437; ``tarfile`` uses the locale), so the name is first
turned back into the archive's bytes, then decided here:

ZIP (APPNOTE 6.3.10 section 4.4.4 bit 11, section 4.6.9 and Appendix D; Info-ZIP unzip
6.0 ``process.c``/``unix/unix.c``; libarchive ``archive_read_support_format_zip.c``):

1. the Info-ZIP Unicode Path extra field (0x7075), version 1, when its NameCRC32 equals
   the CRC-32 of the header's name bytes (a mismatch means a later tool renamed the
   member without updating the field, and the field is ignored, as Info-ZIP does);
2. UTF-8 when general purpose bit 11 (the "language encoding flag") is set;
3. UTF-8 when the bytes are valid UTF-8 (Info-ZIP ``zip`` on Linux writes the locale's
   bytes, UTF-8 today, without the flag; libarchive and 7-Zip read them so);
4. the user's ``--name-encoding`` (event field ``name_encoding``), when given;
5. CP437, the original IBM PC character set (APPNOTE Appendix D), for archives made by
   MS-DOS, OS/2 or Windows ("version made by" 0, 6, 11 or 14);
6. otherwise refused: bytes that are not UTF-8 from a Unix (or other) system are in the
   creator's legacy locale, which nothing in the archive records; CP437 would be a guess
   that turns ``café`` into ``caf├⌐``, so the user is asked for the encoding instead.

In names from MS-DOS, OS/2 or Windows archives ``\\`` is a path separator (as Info-ZIP
unzip and libarchive read it) and becomes ``/`` before the safety checks, so
``..\\evil.txt`` is refused like ``../evil.txt``.

TAR: pax headers carry UTF-8 (POSIX.1-2008 ``pax``, unless ``hdrcharset=BINARY``);
ustar and GNU headers carry raw bytes. Valid UTF-8 is taken as it is; other bytes are
transcoded from ``--name-encoding`` when given, else refused. Link targets follow the
same rules as names.

Directories and S3 prefixes (:mod:`handler.archive.tree_members`): a file's name is its
bytes in the file system (``os.fsencode``), decided as a tar name is: UTF-8 as it is,
else ``--name-encoding`` when given, else refused. An S3 key is always UTF-8 (S3 stores
keys as UTF-8), so ``--name-encoding`` never changes a prefix's names.

Two names that differ only by Unicode normalization (``é`` as U+00E9 or as ``e`` with
U+0301) are refused: byte for byte they are different members, but macOS file systems
and most people see one name.
"""

from __future__ import annotations

import codecs
import struct
import unicodedata
import zipfile
import zlib
from typing import NamedTuple

from handler.archive.safety import MAX_PATH_BYTES
from handler.errors import ExtractionError, InputError, shown_name
from handler.members import TreeFormat
from monitor.errors import shown_repr

UNICODE_PATH_EXTRA_ID = 0x7075
"""Info-ZIP Unicode Path extra field (APPNOTE 4.6.9)."""
UNICODE_PATH_VERSION = 1
FLAG_UTF8 = 0x0800
"""General purpose bit 11: name and comment are UTF-8 (APPNOTE 4.4.4)."""
LEGACY_ZIP_CODEC = "cp437"
"""What names without the flag are in, by APPNOTE Appendix D (and what ``zipfile`` assumes)."""
DOS_SYSTEMS = frozenset({0, 6, 11, 14})
""""Version made by" hosts whose names use ``\\`` and an OEM code page: MS-DOS/OS2 FAT (0),
OS/2 HPFS (6), Windows NTFS (11), VFAT (14) (APPNOTE 4.4.2.2)."""
EXTRA_HEADER = struct.Struct("<HH")

ENCODING_ADVICE = (
    "if you know the encoding the archive was made in, pass --name-encoding ENC (the event "
    "field name_encoding), e.g. latin-1, cp1252 or cp932; or rebuild the archive with UTF-8 "
    "names"
)
DIRECTORY_ENCODING_ADVICE = (
    "if you know the encoding the names were written in, pass --name-encoding ENC (the "
    "event field name_encoding), e.g. latin-1, cp1252 or cp932; or rename the files to "
    "UTF-8 names (convmv -r -f ENC -t utf-8 --notest DIR)"
)
NORMALIZATION_ADVICE = "rename one of the two members so the names differ visibly"
TREE_NORMALIZATION_ADVICE = {
    TreeFormat.DIRECTORY: "rename one of the two files so the names differ visibly",
    TreeFormat.S3_PREFIX: (
        "copy one of the two objects to a key whose name differs visibly, or package a "
        "prefix that holds one"
    ),
}


class Name(NamedTuple):
    """A decided name: ``path`` with ``/`` separators (not yet checked for safety) and
    ``given``, the same text as the archive writes it (for error messages)."""

    path: str
    given: str


def check_name_encoding(encoding: str | None) -> str | None:
    """``encoding`` when Python has a text codec of that name (or None), else InputError."""
    if encoding is None:
        return None
    try:
        info = codecs.lookup(encoding)
    except (LookupError, ValueError):
        info = None
    if info is None or not getattr(info, "_is_text_encoding", True):
        raise InputError(
            f"{shown_repr(encoding)} is not a text encoding Python knows; give a codec name "
            "such as latin-1, cp1252, cp437, shift_jis or gbk"
        )
    return encoding


def zip_name_bytes(info: zipfile.ZipInfo) -> bytes:
    """The name's bytes as the central directory holds them.

    ``zipfile`` decodes names with the flag as UTF-8 and the rest as CP437 (a codec that
    maps each of the 256 byte values to its own character), keeps the whole decoded name
    in ``orig_filename`` (``filename`` is cut at a NUL byte) and changes nothing else on
    POSIX; so encoding back gives the original bytes.
    """
    codec = "utf-8" if info.flag_bits & FLAG_UTF8 else LEGACY_ZIP_CODEC
    return info.orig_filename.encode(codec)


def unicode_path(extra: bytes, name: bytes) -> str | None:
    """The Unicode Path extra field's name when the field is present and valid for
    ``name`` (version 1, CRC-32 of ``name`` matching, UTF-8 text), else None."""
    offset = 0
    while offset + EXTRA_HEADER.size <= len(extra):
        field_id, size = EXTRA_HEADER.unpack_from(extra, offset)
        body = extra[offset + EXTRA_HEADER.size : offset + EXTRA_HEADER.size + size]
        offset += EXTRA_HEADER.size + size
        if field_id != UNICODE_PATH_EXTRA_ID or len(body) < 5 or len(body) < size:
            continue
        version, crc = struct.unpack_from("<BI", body)
        if version != UNICODE_PATH_VERSION or crc != zlib.crc32(name):
            continue
        try:
            return body[5:].decode("utf-8")
        except UnicodeDecodeError:
            continue
    return None


def _utf8(raw: bytes) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


class MemberNames:
    """Decides the names of one archive's members; remembers the normalized form of each
    non-ASCII path so two names that differ only by normalization are refused."""

    def __init__(
        self, source: str, name_encoding: str | None = None, kind: TreeFormat | None = None
    ) -> None:
        """``kind``: the tree source's format, or None for an archive (for the advice)."""
        self._source = source
        self._encoding = check_name_encoding(name_encoding)
        self._advice = ENCODING_ADVICE if kind is None else DIRECTORY_ENCODING_ADVICE
        self._twins = NORMALIZATION_ADVICE if kind is None else TREE_NORMALIZATION_ADVICE[kind]
        self._forms: dict[tuple[int, str], tuple[int, str]] = {}
        """(parent node, NFC form of a component) -> (node, the component as first spelled),
        for the components of non-ASCII paths; node 0 is the root."""

    def zip_name(self, info: zipfile.ZipInfo) -> Name:
        """The name of a ZIP member, by the rules in this module's docstring."""
        raw = zip_name_bytes(info)
        text = unicode_path(info.extra, raw)
        if text is None:
            dos = info.create_system in DOS_SYSTEMS
            text = info.orig_filename if info.flag_bits & FLAG_UTF8 else None
            text = text or self._decode(raw, LEGACY_ZIP_CODEC if dos else None)
        if info.create_system in DOS_SYSTEMS:
            return self._unique(Name(text.replace("\\", "/"), text))
        return self._unique(Name(text, text))

    def flagged_but_not_utf8(self, exc: UnicodeDecodeError) -> ExtractionError:
        """The refusal of a ZIP member whose name has the UTF-8 flag but is not UTF-8
        (``zipfile`` stops reading the central directory there; libarchive skips it)."""
        shown = bytes(exc.object).decode("utf-8", "surrogateescape")
        return ExtractionError(
            self._source,
            shown,
            f"its name is marked UTF-8 (general purpose bit 11) but byte {exc.start} is "
            "not valid UTF-8",
            "the archive was written wrongly; rebuild it with a tool that writes UTF-8 names "
            "(zip 3.0, 7-Zip, Python's zipfile)",
        )

    def zip_link_target(self, info: zipfile.ZipInfo, target: bytes) -> str:
        """A ZIP symbolic link's target (the member's data), decided like its name."""
        dos = LEGACY_ZIP_CODEC if info.create_system in DOS_SYSTEMS else None
        return self._decode(target, dos, what="link target", member=info.orig_filename)

    def tar_name(self, text: str) -> Name:
        """A tar member's name from ``tarfile``'s text, read with ``encoding="utf-8",
        errors="surrogateescape"`` (so the archive's bytes come back unchanged)."""
        name = self._decode(text.encode("utf-8", "surrogateescape"), None)
        return self._unique(Name(name, name))

    def tar_link_target(self, text: str, member: str) -> str:
        """A tar link's target, from ``tarfile``'s text as in :meth:`tar_name`."""
        raw = text.encode("utf-8", "surrogateescape")
        return self._decode(raw, None, what="link target", member=member)

    def tree_name(self, raw: bytes) -> Name:
        """A tree source's member name from its bytes (``os.fsencode`` of a file's name
        relative to the directory, or an S3 key's UTF-8 after the prefix)."""
        name = self._decode(raw, None)
        return self._unique(Name(name, name))

    def tree_link_target(self, raw: bytes, member: str) -> str:
        """A directory's symbolic link target from its bytes, decided like a name."""
        return self._decode(raw, None, what="link target", member=member)

    def _decode(
        self, raw: bytes, fallback: str | None, *, what: str = "name", member: str | None = None
    ) -> str:
        text = _utf8(raw)
        if text is not None:
            return text
        codec = self._encoding or fallback
        shown = raw.decode("utf-8", "surrogateescape")
        if codec is None:
            raise ExtractionError(
                self._source,
                member if member is not None else shown,
                f"its {what} is not valid UTF-8"
                + (f" ({shown_name(shown)})" if member is not None else ""),
                self._advice,
            )
        try:
            return raw.decode(codec)
        except UnicodeDecodeError as exc:
            raise ExtractionError(
                self._source,
                member if member is not None else shown,
                f"its {what} is not valid UTF-8, nor valid {codec} ({exc.reason} at byte "
                f"{exc.start})",
                "pass the --name-encoding (name_encoding) the archive was made in",
            ) from None

    def _unique(self, name: Name) -> Name:
        """Refuse a path whose NFC form (or a parent's) was first seen spelled otherwise.

        The paths seen are kept as a tree of components (NFC never joins across ``/``), so
        memory and time grow with a name's length, not with the square of its depth."""
        if name.path.isascii() or len(name.path) > MAX_PATH_BYTES:
            return name  # the second: safe_name refuses it as too long
        parts = name.path.split("/")
        node = 0
        for depth, part in enumerate(parts, start=1):
            form = part if part.isascii() else unicodedata.normalize("NFC", part)
            key = (node, form)
            seen = self._forms.get(key)
            if seen is None:
                seen = self._forms[key] = (len(self._forms) + 1, part)
            elif seen[1] != part:
                prefix = "/".join(parts[:depth])
                earlier = "/".join([*parts[: depth - 1], seen[1]])
                raise ExtractionError(
                    self._source,
                    name.given,
                    f"{prefix!a} differs from the earlier {earlier!a} only by "
                    "Unicode normalization (the same letters, encoded differently; shown "
                    "with code points escaped)",
                    self._twins,
                )
            node = seen[0]
        return name
