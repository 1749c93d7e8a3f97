"""A local destination is written only as a regular file, and ``--if-exists fail`` works on
filesystems without hard links.

Guards the review of issue 8's fixes: ``mknod mynull c 1 3; package a.tar mynull`` left
a 292-byte regular file where the device was, exit 0 (the same for a FIFO and a symbolic
link to ``/proc/self/fd/1``; as root ``package m.tgz /dev/null`` would replace the host's
``/dev/null``); and ``--if-exists fail`` where ``link(2)`` fails with EPERM (vfat, exFAT,
some FUSE mounts) exited 70 with ``unexpected PermissionError``.

The rule (handler.locations.publish): anything that exists and is not a regular file is refused
with an ``error:`` naming what it is; a symbolic link to a regular file is written
through (the ZIP replaces the link's target, the link stays); a dangling link is refused.
"""

from __future__ import annotations

import errno
import io
import os
import socket
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from handler.cli.main import main
from handler.errors import DestinationError
from handler.events import StrategyChoice, Target
from handler.locations.leftovers import PARTIAL_SUFFIX
from handler.locations.local import LocalDestination
from handler.packaging import package_target
from handler.settings import HandlerSettings
from handler.zipwriter.zipper import IncrementalZipper
from tests.helpers import build_archive, read_zip

FILES = {"model/config.json": b'{"a": 1}', "model/weights.bin": bytes(range(256)) * 64}


def run(*argv: str) -> tuple[int, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    return main(list(argv), out=stdout, err=stderr), stderr.getvalue()


def leftovers(*directories: Path) -> list[Path]:
    return [p for d in directories for p in d.iterdir() if p.name.endswith(PARTIAL_SUFFIX)]


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return build_archive(tmp_path / "a.tar", FILES, "tar")


def _device(path: Path) -> str:
    if os.geteuid() != 0:
        pytest.skip("mknod of a device needs root")
    os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # the null device, as /dev/null
    return "a character device"


def _fifo(path: Path) -> str:
    os.mkfifo(path)
    return "a FIFO"


@pytest.fixture
def bound_socket() -> Iterator[list[socket.socket]]:
    held: list[socket.socket] = []
    yield held
    for sock in held:
        sock.close()


def _link_to_device(path: Path) -> str:
    path.symlink_to("/dev/null")
    return "a symbolic link to /dev/null, a character device"


def _link_to_fifo(path: Path) -> str:
    os.mkfifo(path.with_name("pipe"))
    path.symlink_to("pipe")
    return "a FIFO"


def _link_to_directory(path: Path) -> str:
    path.with_name("somewhere").mkdir()
    path.symlink_to("somewhere")
    return "a directory"


def _dangling_link(path: Path) -> str:
    path.symlink_to("nowhere/model.zip")
    return "which does not exist"


MAKERS: dict[str, Callable[[Path], str]] = {
    "device": _device,
    "fifo": _fifo,
    "link to a device": _link_to_device,
    "link to a fifo": _link_to_fifo,
    "link to a directory": _link_to_directory,
    "dangling link": _dangling_link,
}


def _identity(path: Path) -> tuple[int, int, int, str | None]:
    found = path.lstat()
    link = str(path.readlink()) if path.is_symlink() else None
    return found.st_mode, found.st_ino, found.st_rdev, link


@pytest.mark.parametrize("kind", list(MAKERS))
def test_a_destination_that_is_not_a_regular_file_is_refused_and_left_as_it_is(
    tmp_path: Path, source: Path, kind: str
) -> None:
    destination = tmp_path / "out"
    named = MAKERS[kind](destination)
    before = _identity(destination)
    code, err = run("package", str(source), str(destination))
    assert code == 1, err
    assert err.startswith(f"error: {destination}: is ") and err.count("\n") == 1, err
    assert named in err, err
    assert _identity(destination) == before, f"the {kind} was replaced"
    assert leftovers(tmp_path) == []
    assert not (tmp_path / "nowhere").exists()


def test_a_socket_destination_is_refused_and_left_as_it_is(
    tmp_path: Path, source: Path, bound_socket: list[socket.socket]
) -> None:
    destination = tmp_path / "out.sock"
    sock = socket.socket(socket.AF_UNIX)
    bound_socket.append(sock)
    sock.bind(str(destination))
    code, err = run("package", str(source), str(destination))
    assert code == 1 and "is a socket" in err, err
    assert stat.S_ISSOCK(destination.lstat().st_mode)


@pytest.mark.parametrize("if_exists", ["overwrite", "fail"])
def test_a_device_is_refused_whatever_if_exists_says(
    tmp_path: Path, source: Path, if_exists: str
) -> None:
    destination = tmp_path / "null"
    _device(destination)
    code, err = run("package", "--if-exists", if_exists, str(source), str(destination))
    assert code == 1 and "is a character device" in err, err
    assert stat.S_ISCHR(destination.lstat().st_mode)


def test_a_link_to_a_regular_file_is_written_through_and_stays_a_link(
    tmp_path: Path, source: Path
) -> None:
    """The ZIP replaces the link's target, atomically from a partial beside the target (in
    the target's directory, which may be another filesystem than the link's)."""
    links, targets = tmp_path / "links", tmp_path / "targets"
    links.mkdir()
    targets.mkdir()
    target = targets / "model.zip"
    target.write_bytes(b"the previous package")
    link = links / "latest.zip"
    link.symlink_to(Path("..") / "targets" / "model.zip")
    assert run("package", str(source), str(link)) == (0, "")
    assert link.is_symlink() and link.readlink() == Path("..") / "targets" / "model.zip"
    assert read_zip(target) == FILES
    assert leftovers(links, targets) == []
    # and with if_exists fail, the link (which exists) is a package already there
    code, err = run("package", "--if-exists", "fail", str(source), str(link))
    assert code == 1 and "already exists" in err, err


def test_a_fifo_put_in_place_while_the_zip_is_written_is_not_replaced(tmp_path: Path) -> None:
    """The kind, at commit time: what is at the path is checked again before the rename."""
    destination = tmp_path / "m.zip"
    writer = LocalDestination(destination).begin()
    zipper = IncrementalZipper(writer.sink)
    zipper.add_stream("a.txt", iter([b"data"]), size_hint=4)
    zipper.finalize()
    os.mkfifo(destination)
    with pytest.raises(DestinationError, match="FIFO"):
        writer.commit(zipper.entries)
    assert stat.S_ISFIFO(destination.lstat().st_mode)
    assert leftovers(tmp_path) == []


NO_LINK_ERRNOS = [errno.EPERM, errno.ENOTSUP, errno.EXDEV]


def _no_hard_links(monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "link", refuse)


@pytest.mark.parametrize("code", NO_LINK_ERRNOS, ids=errno.errorcode.get)
def test_if_exists_fail_publishes_without_hard_links(
    tmp_path: Path, source: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    """vfat/exFAT/FUSE refuse link(2): renameat2(RENAME_NOREPLACE) publishes instead, and
    still never replaces."""
    _no_hard_links(monkeypatch, code)
    destination = tmp_path / "m.zip"
    assert run("package", "--if-exists", "fail", str(source), str(destination)) == (0, "")
    assert read_zip(destination) == FILES
    assert leftovers(tmp_path) == []
    # a package already there (made after the up-front check): refused at the commit
    monkeypatch.setattr(LocalDestination, "check_writable", lambda _self: None)
    destination.write_bytes(b"published once")
    code_, err = run("package", "--if-exists", "fail", str(source), str(destination))
    assert code_ == 1 and "already exists" in err, err
    assert destination.read_bytes() == b"published once"
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("code", NO_LINK_ERRNOS, ids=errno.errorcode.get)
@pytest.mark.parametrize("rename_errno", [errno.EINVAL, errno.ENOSYS])
def test_if_exists_fail_where_nothing_can_publish_without_replacing_is_a_clear_error(
    tmp_path: Path,
    source: Path,
    monkeypatch: pytest.MonkeyPatch,
    code: int,
    rename_errno: int,
) -> None:
    """Neither hard links nor RENAME_NOREPLACE (EINVAL: the filesystem; ENOSYS: the C
    library): one error line with advice, exit 1 (never 70), nothing written."""
    _no_hard_links(monkeypatch, code)

    def no_renameat2(*_args: object) -> None:
        raise OSError(rename_errno, os.strerror(rename_errno))

    monkeypatch.setattr("handler.locations.publish.renameat2_noreplace", no_renameat2)
    destination = tmp_path / "m.zip"
    code_, err = run("package", "--if-exists", "fail", str(source), str(destination))
    assert code_ == 1, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "if_exists 'overwrite'" in err and "filesystem" in err, err
    assert not destination.exists()
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("if_exists", "patched", "code"),
    [
        ("fail", "link", errno.EIO),
        ("fail", "link", errno.EACCES),
        ("overwrite", "replace", errno.EBUSY),
        ("overwrite", "replace", errno.EACCES),
    ],
)
def test_any_failure_to_publish_is_one_error_line_never_exit_70(
    tmp_path: Path,
    source: Path,
    monkeypatch: pytest.MonkeyPatch,
    if_exists: str,
    patched: str,
    code: int,
) -> None:
    """The whole kind of item 3: whatever the rename or link says, exit 1 with an
    ``error:`` naming the destination, and no partial left."""

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise OSError(code, os.strerror(code))

    if patched == "link":
        monkeypatch.setattr(os, "link", refuse)
    else:
        monkeypatch.setattr(Path, "replace", refuse)
    destination = tmp_path / "m.zip"
    code_, err = run("package", "--if-exists", if_exists, str(source), str(destination))
    assert code_ == 1, err
    assert err.startswith(f"error: {destination}") and os.strerror(code) in err, err
    assert err.count("\n") == 1
    assert not destination.exists()
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("choice", [StrategyChoice.STREAM, StrategyChoice.EXTRACT])
def test_the_lambda_reports_a_fifo_destination_failed_once_and_leaves_it(
    tmp_path: Path, source: Path, choice: StrategyChoice
) -> None:
    """The same rule for a target of an event: one attempt (not retried), the FIFO left as
    it is, no scratch directory or partial left."""
    destination = tmp_path / "out.zip"
    os.mkfifo(destination)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    result = package_target(
        Target(str(source), str(destination)),
        HandlerSettings(scratch_dir=str(scratch)),
        choice=choice,
    )
    assert (result.status, result.attempts) == ("failed", 1), result
    assert result.error is not None and result.error["type"] == "DestinationError"
    assert "is a FIFO" in result.error["message"]
    assert stat.S_ISFIFO(destination.lstat().st_mode)
    assert list(scratch.iterdir()) == [] and leftovers(tmp_path) == []
