"""Safety checks every member passes before anything is read or written.

Names must be relative and stay inside the destination; links must point inside;
device files and FIFOs are refused; totals, member count and compression ratio are
capped (zip bombs), with defaults a user can raise through :class:`Limits`.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

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
    return name


def check_link_target(source: str, member_name: str, target: str) -> str:
    """Resolve a symbolic link's target inside the archive root, or refuse it."""

    def refuse(reason: str, advice: str = LINK_ADVICE) -> ExtractionError:
        return ExtractionError(source, member_name, reason, advice)

    if not target:
        raise refuse("the link has an empty target")
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
    """Checks one archive's members as they arrive: names, kinds, links, duplicates, limits."""

    def __init__(self, source: str, limits: Limits) -> None:
        self._source = source
        self._limits = limits
        self._kinds: dict[str, MemberKind] = {}
        self._traversed: set[str] = set()
        """Paths that the targets of admitted symbolic links walk through."""
        self._count = 0
        self._declared_total = 0

    def admit(self, member: Member) -> Member:
        """Return ``member`` when it is safe to unpack next, else raise ExtractionError."""
        name = member.name
        self.count(name)
        parent = posixpath.dirname(name)
        while parent:
            kind = self._kinds.get(parent)
            if kind is MemberKind.SYMLINK:
                raise ExtractionError(
                    self._source,
                    name,
                    f"the path goes through the symbolic link {parent!r}",
                    LINK_ADVICE,
                )
            if kind is not None and kind is not MemberKind.DIRECTORY:
                raise ExtractionError(
                    self._source,
                    name,
                    f"its parent {parent!r} is a file, not a directory",
                    "rebuild the archive without the conflicting names",
                )
            parent = posixpath.dirname(parent)
        previous = self._kinds.get(name)
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
            self._check_symlink(name, member.link_target or "")
        if member.kind is MemberKind.HARDLINK:
            target = member.link_target or ""
            if self._kinds.get(target) is not MemberKind.FILE:
                raise ExtractionError(
                    self._source,
                    name,
                    f"the hard link points to {target!r}, which is not an earlier file member",
                    HARDLINK_ADVICE,
                )
        if member.kind is MemberKind.FILE:
            self._declared_total += member.size
            self.check_total(self._declared_total, name)
        self._kinds[name] = member.kind
        parent = posixpath.dirname(name)
        while parent and parent not in self._kinds:  # implied directories count as names
            self._kinds[parent] = MemberKind.DIRECTORY
            parent = posixpath.dirname(parent)
        return member

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

    def _check_symlink(self, name: str, target: str) -> None:
        """Refuse a link whose target leaves the root, or walks through another link (in
        either order: a later link may not sit on an earlier link's path)."""
        check_link_target(self._source, name, target)
        if name in self._traversed:
            raise ExtractionError(
                self._source,
                name,
                "an earlier symbolic link's target goes through this link",
                LINK_ADVICE,
            )
        parts: list[str] = [p for p in posixpath.dirname(name).split("/") if p]
        for component in target.split("/"):
            if component in ("", "."):
                continue
            if component == "..":
                if parts:
                    parts.pop()
                continue
            parts.append(component)
            walked = "/".join(parts)
            if self._kinds.get(walked) is MemberKind.SYMLINK:
                raise ExtractionError(
                    self._source,
                    name,
                    f"the link's target goes through the symbolic link {walked!r}",
                    LINK_ADVICE,
                )
            self._traversed.add(walked)

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
