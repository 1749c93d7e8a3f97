"""Safety checks every member passes before anything is read or written.

Names must be relative and stay inside the destination; links must point inside;
device files and FIFOs are refused; totals, member count and compression ratio are
capped (zip bombs), with defaults a user can raise through :class:`Limits`.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, replace

from handler.errors import ExtractionError, shown_name
from handler.members import Member, MemberKind
from monitor.units import GiB, MiB, format_size

ABSOLUTE_ADVICE = (
    "rebuild the archive with names relative to its top directory (tar -C DIR ., or zip -r "
    "from inside DIR)"
)
DOTDOT_ADVICE = "rebuild the archive with names that stay inside it (no '..' components)"
BACKSLASH_ADVICE = (
    "rename the member without '\\' (Windows reads it as a separator; only ZIPs that say "
    "they were made on MS-DOS or Windows use it as one)"
)
CONTROL_ADVICE = (
    "rename the member without control characters (U+0000-U+001F, U+007F-U+009F: tabs, "
    "newlines, escapes), which terminals and tools would act on"
)
EMPTY_ADVICE = "rebuild the archive without the nameless member"
SPECIAL_FILE_ADVICE = (
    "a ZIP holds only files, directories and links; rebuild the archive without it, "
    "or --include only the members you need"
)
DEVICE_ADVICE = (
    "device files belong to a system image, not a package, and a ZIP cannot hold them; "
    "rebuild the archive without it, or --include only the members you need"
)
FIFO_ADVICE = (
    "FIFOs and sockets have no contents to package and a ZIP cannot hold them; rebuild "
    "the archive without it, or --include only the members you need"
)
LINK_ADVICE = (
    "rebuild the archive with links whose targets are relative and stay inside it, "
    "without going through other links"
)
HARDLINK_ADVICE = "rebuild the archive so each hard link comes after the file it points to"
LONG_PATH_ADVICE = (
    "rebuild the archive with shorter paths (fewer or shorter directory levels); no Linux "
    "system can create this one"
)
LONG_COMPONENT_ADVICE = (
    "rename the member (or the directory it is in) so each part of its path is at most "
    "255 bytes; no common file system can create this one"
)
LONG_TARGET_ADVICE = "rebuild the archive with link targets of at most 4,096 bytes"
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


def safe_name(source: str, raw_name: str, *, is_dir: bool = False, given: str = "") -> str:
    """The member's name as a clean relative POSIX path, or :class:`ExtractionError`.

    ``raw_name`` uses ``/`` as separator; ``given`` is the name as the archive writes it,
    for messages (default ``raw_name``). ``./a/b`` becomes ``a/b``; absolute names, drive
    letters, backslashes, control characters (NUL included) and ``..`` components are
    refused, each with its own advice.
    """
    shown = given or raw_name

    def refuse(reason: str, advice: str) -> ExtractionError:
        return ExtractionError(source, shown, reason, advice)

    if "\x00" in raw_name:
        raise refuse("the name contains a NUL byte", CONTROL_ADVICE)
    if control_characters(raw_name):
        raise refuse("the name contains control characters", CONTROL_ADVICE)
    if "\\" in raw_name:
        raise refuse("the name contains a backslash (a Windows path separator)", BACKSLASH_ADVICE)
    if raw_name.startswith("/"):
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


def check_link_target(source: str, member_name: str, target: str) -> str:
    """Resolve a symbolic link's target inside the archive root, or refuse it."""

    def refuse(reason: str, advice: str = LINK_ADVICE) -> ExtractionError:
        return ExtractionError(source, member_name, reason, advice)

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

    Names are kept as a tree of path components (a trie: one node per distinct directory
    or member, keyed by its parent's node and its own component's number), so memory
    grows with the number of distinct components (about 100 bytes each), never with the
    square of a name's depth, and a name's parents are found by walking it once.
    """

    def __init__(self, source: str, limits: Limits) -> None:
        self._source = source
        self._limits = limits
        self._components: dict[str, int] = {}
        """Each distinct component (``model``, ``config.json``) -> its number."""
        self._nodes: dict[int, int] = {}
        """``parent node << 32 | component number`` -> node; node 0 is the archive's root."""
        self._kinds: list[MemberKind | None] = [MemberKind.DIRECTORY]
        """Per node: the kind of the member (or implied directory) there, None if none."""
        self._traversed: set[int] = set()
        """Nodes that the targets of admitted symbolic links walk through."""
        self._hardlinks: dict[int, str] = {}
        """Hard link node -> the file it ends at (a hard link to a hard link is resolved)."""
        self._count = 0
        self._declared_total = 0

    def _key(self, node: int, part: str) -> int | None:
        """The key of ``part`` under ``node``; None when no name has that component."""
        component = self._components.get(part)
        return None if component is None else node << 32 | component

    def _find(self, parts: list[str], node: int | None = 0) -> int | None:
        """The node at ``parts`` below ``node``; None when nothing was recorded there."""
        for part in parts:
            key = self._key(node, part) if node is not None else None
            node = self._nodes.get(key) if key is not None else None
        return node

    def _child(self, node: int, part: str) -> int:
        """The node at ``part`` below ``node``, made (with no kind) if there is none."""
        component = self._components.setdefault(part, len(self._components))
        key = node << 32 | component
        found = self._nodes.get(key)
        if found is None:
            found = self._nodes[key] = len(self._kinds)
            self._kinds.append(None)
        return found

    def admit(self, member: Member) -> Member:
        """Return ``member`` when it is safe to unpack next, else raise ExtractionError.
        A hard link to a hard link comes back pointing at the file the chain ends at."""
        name = member.name
        self.count(name)
        parts = name.split("/") if name else []
        reached: int | None = 0
        for depth, part in enumerate(parts[:-1], start=1):
            reached = self._find([part], reached)
            if reached is None:
                break  # nothing recorded there, so nothing below it either
            kind = self._kinds[reached]
            parent = "/".join(parts[:depth])
            if kind is MemberKind.SYMLINK:
                raise ExtractionError(
                    self._source,
                    name,
                    f"the path goes through the symbolic link {shown_name(parent)}",
                    LINK_ADVICE,
                )
            if kind is not None and kind is not MemberKind.DIRECTORY:
                raise ExtractionError(
                    self._source,
                    name,
                    f"its parent {shown_name(parent)} is a file, not a directory",
                    "rebuild the archive without the conflicting names",
                )
        own = self._find(parts[-1:], reached) if parts else 0
        previous = self._kinds[own] if own is not None else None
        if previous is not None:
            if previous is MemberKind.DIRECTORY and member.kind is MemberKind.DIRECTORY:
                return member
            reason = (
                "the name appears twice in the archive"
                if previous is member.kind
                else f"it is a {member.kind.value} but an earlier member uses the name as a "
                f"{previous.value}"
            )
            raise ExtractionError(
                self._source, name, reason, "rebuild the archive so each name appears once"
            )
        if member.kind is MemberKind.SYMLINK:
            self._check_symlink(name, parts, own, member.link_target or "")
        file = ""
        if member.kind is MemberKind.HARDLINK:
            file = self._hardlink_file(name, member.link_target or "")
            if file != member.link_target:
                member = replace(member, link_target=file)
        if member.kind is MemberKind.FILE:
            self._declared_total += member.size
            self.check_total(self._declared_total, name)
        node = 0
        for part in parts:  # implied directories count as names
            node = self._child(node, part)
            if self._kinds[node] is None:
                self._kinds[node] = MemberKind.DIRECTORY
        self._kinds[node] = member.kind
        if file:
            self._hardlinks[node] = file
        return member

    def _hardlink_file(self, name: str, target: str) -> str:
        """The file a hard link's ``target`` (an earlier file or hard link) ends at.

        A chain (``c -> b -> a``) is one inode, so every link in it is stored as a link to
        the file ``a``. A hard link to a symbolic link (GNU tar writes one for a
        hard-linked symlink) stays refused: a ZIP link to a link is a link through a link,
        which :data:`LINK_ADVICE` rules out."""
        node = self._find(target.split("/")) if target else None
        kind = self._kinds[node] if node is not None else None
        if node is not None and kind is MemberKind.HARDLINK:
            return self._hardlinks[node]
        if kind is not MemberKind.FILE:
            raise ExtractionError(
                self._source,
                name,
                f"the hard link points to {shown_name(target)}, which is not an earlier file "
                "member",
                HARDLINK_ADVICE,
            )
        return target

    def count(self, name: str) -> None:
        """Count one more member (``name``, for the message), refusing it past the limit."""
        self._count += 1
        if self._count > self._limits.max_members:
            raise ExtractionError(
                self._source,
                name,
                f"the archive has more than {self._limits.max_members:,} members",
                "raise the member limit (--max-members) if this archive is trusted",
            )

    def _check_symlink(self, name: str, parts: list[str], own: int | None, target: str) -> None:
        """Refuse a link whose target leaves the root, or walks through another link (in
        either order: a later link may not sit on an earlier link's path)."""
        check_link_target(self._source, name, target)
        if own is not None and own in self._traversed:
            raise ExtractionError(
                self._source,
                name,
                "an earlier symbolic link's target goes through this link",
                LINK_ADVICE,
            )
        walked = parts[:-1]
        nodes = [0]
        for part in walked:
            nodes.append(self._child(nodes[-1], part))
        for component in target.split("/"):
            if component in ("", "."):
                continue
            if component == "..":
                if walked:
                    walked.pop()
                    nodes.pop()
                continue
            walked.append(component)
            nodes.append(self._child(nodes[-1], component))
            if self._kinds[nodes[-1]] is MemberKind.SYMLINK:
                raise ExtractionError(
                    self._source,
                    name,
                    "the link's target goes through the symbolic link "
                    f"{shown_name('/'.join(walked))}",
                    LINK_ADVICE,
                )
            self._traversed.add(nodes[-1])

    def check_total(self, total: int, member: str | None) -> None:
        """Refuse once the uncompressed total passes the size limit."""
        if total > self._limits.max_total_size:
            raise ExtractionError(
                self._source,
                member,
                f"the archive unpacks to more than {format_size(self._limits.max_total_size)}",
                "raise the size limit (--max-total-size) if this archive is trusted",
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
