"""What to do about a refused member, in words that fit its source.

The archive texts (the ``*_ADVICE`` constants) say how to rebuild an archive; a tree
source's member is a file in a directory or an object under an S3 prefix, which is
renamed or copied, never rebuilt, so :func:`fit_advice` gives the text for the source's
kind (:class:`~handler.members.TreeFormat`, or None for an archive).
"""

from __future__ import annotations

from handler.members import TreeFormat

__all__ = ["fit_advice", "source_noun", "trusted_advice"]

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
CONFLICT_ADVICE = "rebuild the archive without the conflicting names"
DUPLICATE_ADVICE = "rebuild the archive so each name appears once"

S3_KEY_ADVICE = (
    "copy the object to a key whose part after the prefix is a plain relative path (no "
    "empty, '.' or '..' segments, no '\\' or control characters: aws s3 mv s3://BUCKET/OLD "
    "s3://BUCKET/NEW), or package a prefix that does not hold it"
)
S3_SHORTER_ADVICE = (
    "copy the object to a shorter key (at most 4,096 bytes after the prefix, at most 255 "
    "between two '/'), or package a prefix that does not hold it"
)
S3_CLASH_ADVICE = (
    "these keys name the same member of the ZIP (or one names a file and another a folder "
    "of that name); copy one object to another key, or package a prefix that holds one"
)
DIRECTORY_NAME_ADVICE = (
    "rename the file (a ZIP reader would misread the name), or move it out of the directory"
)
DIRECTORY_LINK_ADVICE = (
    "replace the link with one whose target is relative, stays inside the directory and "
    "goes through no other link, or copy the tree with its links resolved (cp -rL DIR COPY) "
    "and package the copy"
)
DIRECTORY_SHORTER_ADVICE = (
    "move the file to a shorter path (at most 4,096 bytes below the directory, 255 per "
    "part), or package the directory it is in"
)

_TREE_ADVICE: dict[TreeFormat, dict[str, str]] = {
    TreeFormat.S3_PREFIX: {
        ABSOLUTE_ADVICE: S3_KEY_ADVICE,
        DOTDOT_ADVICE: S3_KEY_ADVICE,
        BACKSLASH_ADVICE: S3_KEY_ADVICE,
        CONTROL_ADVICE: S3_KEY_ADVICE,
        EMPTY_ADVICE: S3_KEY_ADVICE,
        LONG_PATH_ADVICE: S3_SHORTER_ADVICE,
        LONG_COMPONENT_ADVICE: S3_SHORTER_ADVICE,
        CONFLICT_ADVICE: S3_CLASH_ADVICE,
        DUPLICATE_ADVICE: S3_CLASH_ADVICE,
    },
    TreeFormat.DIRECTORY: {
        ABSOLUTE_ADVICE: DIRECTORY_NAME_ADVICE,
        DOTDOT_ADVICE: DIRECTORY_NAME_ADVICE,
        BACKSLASH_ADVICE: DIRECTORY_NAME_ADVICE,
        CONTROL_ADVICE: DIRECTORY_NAME_ADVICE,
        EMPTY_ADVICE: DIRECTORY_NAME_ADVICE,
        LONG_PATH_ADVICE: DIRECTORY_SHORTER_ADVICE,
        LONG_COMPONENT_ADVICE: DIRECTORY_SHORTER_ADVICE,
        CONFLICT_ADVICE: DIRECTORY_NAME_ADVICE,
        DUPLICATE_ADVICE: DIRECTORY_NAME_ADVICE,
        LINK_ADVICE: DIRECTORY_LINK_ADVICE,
        HARDLINK_ADVICE: DIRECTORY_LINK_ADVICE,
    },
}


def fit_advice(advice: str, kind: TreeFormat | None) -> str:
    """``advice`` (an archive's ``*_ADVICE`` text) as it fits a source of ``kind``."""
    if kind is None:
        return advice
    return _TREE_ADVICE[kind].get(advice, advice)


def source_noun(kind: TreeFormat | None) -> str:
    """What the source is called in a message: "archive", "directory" or "prefix"."""
    if kind is None:
        return "archive"
    return "directory" if kind is TreeFormat.DIRECTORY else "prefix"


def trusted_advice(option: str, kind: TreeFormat | None) -> str:
    """The advice of a refusal at a limit: raise ``option`` if the source is trusted."""
    what = {"--max-members": "member", "--max-total-size": "size", "--max-ratio": "ratio"}
    return f"raise the {what[option]} limit ({option}) if this {source_noun(kind)} is trusted"
