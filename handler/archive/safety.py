"""Safety checks every member passes before anything is read or written.

Names must be relative and stay inside the destination; links must point inside;
device files and FIFOs are refused; totals, member count and compression ratio are
capped (zip bombs), with defaults a user can raise through :class:`Limits`.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, replace
from typing import cast

from handler.archive.advice import (
    ABSOLUTE_ADVICE,
    BACKSLASH_ADVICE,
    CONFLICT_ADVICE,
    CONTROL_ADVICE,
    DOTDOT_ADVICE,
    DUPLICATE_ADVICE,
    EMPTY_ADVICE,
    HARDLINK_ADVICE,
    LINK_ADVICE,
    LONG_COMPONENT_ADVICE,
    LONG_PATH_ADVICE,
    LONG_TARGET_ADVICE,
    fit_advice,
    source_noun,
    trusted_advice,
)
from handler.errors import ExtractionError, shown_name
from handler.members import Member, MemberKind, TreeFormat
from monitor.units import GiB, MiB, format_size

MAX_PATH_BYTES = 4096
"""A whole name's limit in UTF-8 bytes: Linux PATH_MAX (``<linux/limits.h>``), well
under ZIP's 65,535-byte name field (APPNOTE 4.4.10)."""
MAX_COMPONENT_BYTES = 255
"""One path component's limit in UTF-8 bytes: NAME_MAX of Linux, ext4, XFS, NTFS, APFS."""
MAX_SYMLINK_TARGET = MAX_PATH_BYTES
"""A symbolic link's target limit in bytes, for every format (Linux PATH_MAX)."""
CONTROL_CHARACTERS = frozenset(map(chr, [*range(0x20), *range(0x7F, 0xA0)]))
"""C0 controls, DEL and C1 controls (Unicode general category Cc)."""


def control_characters(text: str) -> bool:
    """Whether ``text`` holds a C0 or C1 control character or DEL."""
    return not CONTROL_CHARACTERS.isdisjoint(text)


@dataclass(frozen=True, slots=True)
class Limits:
    """Caps that stop hostile or runaway archives; raise them for unusually large inputs."""

    max_total_size: int = 200 * GiB
    max_members: int = 200_000
    max_ratio: float = 200.0
    ratio_floor: int = 64 * MiB
    """The ratio is only checked once this many uncompressed bytes have been seen."""


def safe_name(
    source: str,
    raw_name: str,
    *,
    is_dir: bool = False,
    given: str = "",
    kind: TreeFormat | None = None,
) -> str:
    """The member's name as a clean relative POSIX path, or :class:`ExtractionError`.

    ``raw_name`` uses ``/`` as separator; ``given`` is the name as the archive writes it,
    for messages (default ``raw_name``). ``./a/b`` becomes ``a/b``; absolute names, drive
    letters, backslashes, control characters (NUL included) and ``..`` components are
    refused, each with its own advice (worded for the source's ``kind``: an archive when
    None, else a directory or an S3 prefix, :func:`handler.archive.advice.fit_advice`).
    """
    shown = given or raw_name

    def refuse(reason: str, advice: str) -> ExtractionError:
        return ExtractionError(source, shown, reason, fit_advice(advice, kind))

    if "\x00" in raw_name:
        raise refuse("the name contains a NUL byte", CONTROL_ADVICE)
    if control_characters(raw_name):
        raise refuse("the name contains control characters", CONTROL_ADVICE)
    if "\\" in raw_name:
        raise refuse("the name contains a backslash (a Windows path separator)", BACKSLASH_ADVICE)
    if raw_name.startswith("/"):
        if kind is TreeFormat.S3_PREFIX:  # s3://b/m/ holding m//x
            reason = "the name is an absolute path (its key has '//' where the prefix ends)"
            raise refuse(reason, ABSOLUTE_ADVICE)
        raise refuse("the name is an absolute path", ABSOLUTE_ADVICE)
    if len(raw_name) >= 2 and raw_name[1] == ":" and raw_name[0].isalpha():
        raise refuse("the name starts with a drive letter", ABSOLUTE_ADVICE)
    parts = [p for p in raw_name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise refuse("the name contains '..' and could escape the destination", DOTDOT_ADVICE)
    name = "/".join(parts)
    if not name and not is_dir:
        raise refuse("the name is empty", EMPTY_ADVICE)
    size = utf8_size(name)
    if size > MAX_PATH_BYTES:
        raise refuse(
            f"the name is {size:,} bytes long, over the {MAX_PATH_BYTES:,} bytes a path may "
            "have on Linux (PATH_MAX)",
            LONG_PATH_ADVICE,
        )
    longest = max(map(utf8_size, parts), default=0)
    if longest > MAX_COMPONENT_BYTES:
        raise refuse(
            f"a part of the name is {longest:,} bytes long, over the {MAX_COMPONENT_BYTES} "
            "bytes a file or directory name may have (NAME_MAX)",
            LONG_COMPONENT_ADVICE,
        )
    return name


def utf8_size(text: str) -> int:
    """``text``'s length in UTF-8 bytes (a lone surrogate counts as its 3 bytes)."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def check_link_target(
    source: str, member_name: str, target: str, kind: TreeFormat | None = None
) -> str:
    """Resolve a symbolic link's target inside the archive root, or refuse it."""

    def refuse(reason: str, advice: str = LINK_ADVICE) -> ExtractionError:
        return ExtractionError(source, member_name, reason, fit_advice(advice, kind))

    if not target:
        raise refuse("the link has an empty target")
    size = utf8_size(target)
    if size > MAX_SYMLINK_TARGET:
        raise refuse(
            f"it is a symbolic link with a {size:,}-byte target, over the "
            f"{MAX_SYMLINK_TARGET:,} bytes Linux allows (PATH_MAX)",
            LONG_TARGET_ADVICE,
        )
    if target.startswith("/"):
        raise refuse(f"the link points to the absolute path {shown_name(target)}")
    if control_characters(target):
        raise refuse(f"the link target {shown_name(target)} contains control characters")
    if "\\" in target:
        raise refuse("the link target contains a backslash (a Windows path separator)")
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(member_name), target))
    if resolved == ".." or resolved.startswith("../"):
        raise refuse(f"the link points to {shown_name(target)}, outside the destination")
    return resolved


class MemberGuard:
    """Checks one archive's members as they arrive: names, kinds, links, duplicates, limits.

    Names are kept as a tree of path components (a trie): each directory has a number,
    and a component is found under its directory by the key ``"{number:x}/{component}"``,
    whose value is a directory's number, or the kind of a file or link. Memory grows with
    the distinct components (about 120 bytes each: a realistic member costs what its
    name did before), never with the square of a name's depth, and a name's parents are
    found by walking it once.
    """

    def __init__(self, source: str, limits: Limits, kind: TreeFormat | None = None) -> None:
        """``kind``: the tree source's format, or None for an archive (for the wording)."""
        self._source = source
        self._limits = limits
        self._kind = kind
        self._nodes: dict[str, int | MemberKind] = {}
        """``"{parent:x}/{component}"`` -> a directory's number (the root is 0), or the
        kind of the file or link there."""
        self._walked: set[int] = set()
        """Numbers of paths only the targets of admitted symbolic links walk through
        (no member is there yet): a later link may not sit on one."""
        self._hardlinks: dict[str, str] = {}
        """Hard link -> the file it ends at (a hard link to a hard link is resolved)."""
        self._next = 1
        self._count = 0
        self._declared_total = 0

    def _directory(self, node: int, part: str, *, walked: bool = False) -> int:
        """The number of directory ``part`` under ``node``, made if there is none (as a
        walked-through path when ``walked``, else as an implied directory)."""
        key = f"{node:x}/{part}"
        found = self._nodes.get(key)
        if isinstance(found, int):
            if not walked:
                self._walked.discard(found)
            return found
        found = self._nodes[key] = self._next
        self._next += 1
        if walked:
            self._walked.add(found)
        return found

    def _lookup(self, parts: list[str]) -> tuple[int | MemberKind | None, str]:
        """What is at ``parts`` (a directory's number, a kind, or None) and, when a file
        or link sits on the way there, its path (else "")."""
        node = 0
        for depth, part in enumerate(parts, start=1):
            found = self._nodes.get(f"{node:x}/{part}")
            if found is None or depth == len(parts):
                return found, ""
            if isinstance(found, MemberKind):
                return found, "/".join(parts[:depth])
            node = found
        return 0, ""

    def admit(self, member: Member) -> Member:
        """Return ``member`` when it is safe to unpack next, else raise ExtractionError.
        A hard link to a hard link comes back pointing at the file the chain ends at."""
        name = member.name
        self.count(name)
        parts = name.split("/") if name else []
        found, blocker = self._lookup(parts)
        if blocker:
            if found is MemberKind.SYMLINK:
                raise ExtractionError(
                    self._source,
                    name,
                    f"the path goes through the symbolic link {shown_name(blocker)}",
                    fit_advice(LINK_ADVICE, self._kind),
                )
            raise ExtractionError(
                self._source,
                name,
                f"its parent {shown_name(blocker)} is a file, not a directory",
                fit_advice(CONFLICT_ADVICE, self._kind),
            )
        walked_here = isinstance(found, int) and found in self._walked
        previous = (
            found
            if isinstance(found, MemberKind)
            else (MemberKind.DIRECTORY if found is not None and not walked_here else None)
        )
        if previous is not None:
            if previous is MemberKind.DIRECTORY and member.kind is MemberKind.DIRECTORY:
                return member
            reason = (
                f"the name appears twice in the {source_noun(self._kind)}"
                if previous is member.kind
                else f"it is a {member.kind.value} but an earlier member uses the name as a "
                f"{previous.value}"
            )
            raise ExtractionError(
                self._source, name, reason, fit_advice(DUPLICATE_ADVICE, self._kind)
            )
        if member.kind is MemberKind.SYMLINK:
            if walked_here:
                raise ExtractionError(
                    self._source,
                    name,
                    "an earlier symbolic link's target goes through this link",
                    fit_advice(LINK_ADVICE, self._kind),
                )
            self._check_symlink(name, parts, member.link_target or "")
        if member.kind is MemberKind.HARDLINK:
            file = self._hardlink_file(name, member.link_target or "")
            self._hardlinks[name] = file
            if file != member.link_target:
                member = replace(member, link_target=file)
        if member.kind is MemberKind.FILE:
            self._declared_total += member.size
            self.check_total(self._declared_total, name)
        node = 0
        for part in parts[:-1]:  # implied directories count as names
            node = self._directory(node, part)
        if member.kind is MemberKind.DIRECTORY:
            if parts:
                self._directory(node, parts[-1])
        else:
            self._nodes[f"{node:x}/{parts[-1]}"] = member.kind
        return member

    def _hardlink_file(self, name: str, target: str) -> str:
        """The file a hard link's ``target`` (an earlier file or hard link) ends at.

        A chain (``c -> b -> a``) is one inode, so every link in it is stored as a link to
        the file ``a``. A hard link to a symbolic link (GNU tar writes one for a
        hard-linked symlink) stays refused: a ZIP link to a link is a link through a link,
        which :data:`LINK_ADVICE` rules out."""
        kind, blocker = self._lookup(target.split("/")) if target else (None, "")
        if kind is MemberKind.HARDLINK and not blocker:
            return self._hardlinks[target]
        if kind is not MemberKind.FILE or blocker:
            raise ExtractionError(
                self._source,
                name,
                f"the hard link points to {shown_name(target)}, which is not an earlier file "
                "member",
                fit_advice(HARDLINK_ADVICE, self._kind),
            )
        return target

    def holds_file(self, name: str) -> bool:
        """Whether a file (or a hard link to one) was admitted at ``name``."""
        found, blocker = self._lookup(name.split("/")) if name else (None, "")
        return not blocker and found in (MemberKind.FILE, MemberKind.HARDLINK)

    def count(self, name: str) -> None:
        """Count one more member (``name``, for the message), refusing it past the limit."""
        self._count += 1
        if self._count > self._limits.max_members:
            raise ExtractionError(
                self._source,
                name,
                f"the {source_noun(self._kind)} has more than {self._limits.max_members:,} members",
                trusted_advice("--max-members", self._kind),
            )

    def _check_symlink(self, name: str, parts: list[str], target: str) -> None:
        """Refuse a link whose target leaves the root, or walks through another link (in
        either order: a later link may not sit on an earlier link's path)."""
        check_link_target(self._source, name, target, self._kind)
        walked = parts[:-1]
        nodes: list[int | None] = [0]
        for part in walked:
            nodes.append(self._directory(cast(int, nodes[-1]), part, walked=True))
        for component in target.split("/"):
            if component in ("", "."):
                continue
            if component == "..":
                if walked:
                    walked.pop()
                    nodes.pop()
                continue
            walked.append(component)
            node = nodes[-1]
            found = self._nodes.get(f"{node:x}/{component}") if node is not None else None
            if found is MemberKind.SYMLINK:
                raise ExtractionError(
                    self._source,
                    name,
                    "the link's target goes through the symbolic link "
                    f"{shown_name('/'.join(walked))}",
                    fit_advice(LINK_ADVICE, self._kind),
                )
            if node is None or isinstance(found, MemberKind):
                nodes.append(None)  # a file: no member can sit below it
            else:
                nodes.append(self._directory(node, component, walked=True))

    def check_total(self, total: int, member: str | None) -> None:
        """Refuse once the uncompressed total passes the size limit."""
        if total > self._limits.max_total_size:
            raise ExtractionError(
                self._source,
                member,
                f"the {source_noun(self._kind)} unpacks to more than "
                f"{format_size(self._limits.max_total_size)}",
                trusted_advice("--max-total-size", self._kind),
            )

    def check_ratio(self, uncompressed: int, compressed: int, member: str | None) -> None:
        """Refuse a compression ratio beyond the limit (a zip bomb), past the floor."""
        if uncompressed < self._limits.ratio_floor:
            return
        ratio = uncompressed / max(compressed, 1)
        if ratio > self._limits.max_ratio:
            raise ExtractionError(
                self._source,
                member,
                f"the compression ratio reached {ratio:,.0f}:1, over the limit of "
                f"{self._limits.max_ratio:,.0f}:1 (a zip bomb?)",
                "raise the ratio limit (--max-ratio) if this archive is trusted",
            )
