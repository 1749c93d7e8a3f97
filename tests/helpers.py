"""Builders and independent readers the tests share.

Archives are built with the standard library (not with tmpwarden), and ZIPs are
read back with ``zipfile`` and with Info-ZIP's ``unzip -t``: independent readers.
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
import tarfile
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import pytest

if TYPE_CHECKING:
    from handler.archive import StreamingExtractor
    from handler.members import OpenMember
    from handler.strategies import PackageResult

ArchiveKind = Literal["tar", "tar.gz", "tar.bz2", "tar.xz", "zip"]
ALL_FORMATS: tuple[ArchiveKind, ...] = ("tar", "tar.gz", "tar.bz2", "tar.xz", "zip")
_TAR_MODES = {"tar": "w", "tar.gz": "w:gz", "tar.bz2": "w:bz2", "tar.xz": "w:xz"}
FIXED_MTIME = 1_700_000_000


def write_tree(root: Path, files: Mapping[str, bytes]) -> Path:
    """Create ``files`` (relative path -> content) under ``root``."""
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def build_archive(out: Path, files: Mapping[str, bytes], kind: ArchiveKind) -> Path:
    """An archive of ``files`` built by the standard library; directories implied by names."""
    if kind == "zip":
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, data in files.items():
                info = zipfile.ZipInfo(name, (2023, 11, 14, 22, 13, 20))
                info.external_attr = (stat.S_IFREG | 0o644) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, data)
        return out
    with tarfile.open(out, _TAR_MODES[kind]) as tar:  # type: ignore[call-overload]
        for name, data in files.items():
            member = tarfile.TarInfo(name)
            member.size = len(data)
            member.mtime = FIXED_MTIME
            member.mode = 0o644
            tar.addfile(member, io.BytesIO(data))
    return out


def tar_with(out: Path, members: Iterable[tarfile.TarInfo | tuple[tarfile.TarInfo, bytes]]) -> Path:
    """A plain tar holding hand-made headers (for hostile and odd members)."""
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for item in members:
            if isinstance(item, tuple):
                info, data = item
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(item)
    return out


def tar_info(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.mtime = FIXED_MTIME
    return info


def read_zip(path: Path | io.BytesIO) -> dict[str, bytes]:
    """Every file member's bytes, read back with ``zipfile`` (CRCs checked)."""
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None
        return {
            info.filename: archive.read(info) for info in archive.infolist() if not info.is_dir()
        }


def unzip_test(path: Path) -> None:
    """Check the ZIP with Info-ZIP's ``unzip -t`` (an independent implementation)."""
    if shutil.which("unzip") is None:
        pytest.skip("Info-ZIP unzip is not installed (scripts/bootstrap installs it as root)")
    result = subprocess.run(
        ["unzip", "-tqq", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"unzip -t failed: {result.stdout}{result.stderr}"


def listing(root: Path) -> set[str]:
    """Every path under ``root`` (relative), to show nothing was written elsewhere."""
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def python_env() -> dict[str, str]:
    """The environment for a child ``python -m handler``, with this checkout importable."""
    env = dict(os.environ)
    repo = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = repo + os.pathsep + env.get("PYTHONPATH", "")
    return env


def read_zip_names(path: Path) -> list[str]:
    """The member names of a ZIP, from its central directory."""
    with zipfile.ZipFile(path) as archive:
        return archive.namelist()


def archive_digests(path: Path) -> dict[str, str]:
    """sha256 of every file member of a tar (any compression) or zip, read by the stdlib."""
    import hashlib

    digests: dict[str, str] = {}
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.is_dir():
                    continue
                digest = hashlib.sha256()
                with archive.open(info) as member:
                    while chunk := member.read(1 << 20):
                        digest.update(chunk)
                digests[info.filename] = digest.hexdigest()
        return digests
    with tarfile.open(path) as tar:
        for entry in tar:
            if not entry.isfile():
                continue
            digest = hashlib.sha256()
            extracted = tar.extractfile(entry)
            assert extracted is not None
            while chunk := extracted.read(1 << 20):
                digest.update(chunk)
            digests[entry.name.removeprefix("./")] = digest.hexdigest()
    return digests


def open_members(
    extractor: StreamingExtractor, archive: Path, patterns: Sequence[str] | None = None
) -> Iterator[OpenMember]:
    """Each member of ``archive`` with its data stream, through the product's door
    (:meth:`StreamingExtractor.open`, then the reader's ``members``)."""
    with extractor.open(archive) as reader:
        yield from reader.members(patterns)


def stream_locally(
    archive: Path, out: Path, _scratch: Path, include: tuple[str, ...] = ()
) -> PackageResult:
    """Package a local ``archive`` into ``out`` with the stream strategy."""
    from handler.locations.local import LocalDestination, LocalSource
    from handler.strategies import PackageOptions, run_stream

    return run_stream(LocalSource(archive), LocalDestination(out), PackageOptions(include=include))


def extract_locally(
    archive: Path, out: Path, scratch: Path, include: tuple[str, ...] = ()
) -> PackageResult:
    """Package a local ``archive`` into ``out`` with the extract strategy, scratch in
    ``scratch`` and no critical threshold in the way."""
    from handler.locations.local import LocalDestination, LocalSource
    from handler.storage import StorageManager
    from handler.strategies import PackageOptions, run_extract

    return run_extract(
        LocalSource(archive),
        LocalDestination(out),
        PackageOptions(include=include),
        scratch_root=scratch,
        storage=StorageManager(scratch),
        critical=1.0,
    )
