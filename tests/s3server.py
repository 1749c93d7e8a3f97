"""A real S3-compatible HTTP endpoint on 127.0.0.1 (moto's standalone server), and a
fault-injecting proxy in front of it for failure tests."""

from __future__ import annotations

import fcntl
import http.client
import socket
import struct
import termios
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import boto3
from botocore.config import Config
from moto.moto_server.threaded_moto_server import ThreadedMotoServer

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


def client_for(endpoint: str) -> S3Client:
    """A plain boto3 client for the test's own setup and checks."""
    client: S3Client = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    ).client(
        "s3",
        endpoint_url=endpoint,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )
    return client


class MotoS3:
    """moto's S3 server on 127.0.0.1, on a free port."""

    def __init__(self) -> None:
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.url = f"http://{host}:{port}"

    def client(self) -> S3Client:
        return client_for(self.url)

    def stop(self) -> None:
        self._server.stop()


@dataclass(frozen=True)
class Fault:
    """What the proxy does instead of passing a request through.

    ``status``/``code``: the S3 error answered. ``forward``: send the request upstream
    first (it takes effect, as when S3 did the work but the answer was lost), then answer
    the error. ``stall_after``: pass the response through but stop sending its body at
    that byte of the object (of the body, for a GET of the whole object; at once, for a
    range past it), for ``stall_s`` seconds or until the proxy stops (a stalled read).
    ``reset_at`` / ``end_at``: send the body up to that byte of the object, then reset the
    connection (TCP RST, once the client has taken in what was sent) / close it early
    (fewer bytes than its Content-Length)."""

    status: int = 500
    code: str = "InternalError"
    forward: bool = False
    stall_after: int | None = None
    stall_s: float = 600.0
    reset_at: int | None = None
    end_at: int | None = None


Rule = Callable[[str, str, dict[str, list[str]]], int | Fault | None]
"""(method, path, query) -> an HTTP status or a :class:`Fault` for the request, or None to
pass it. A rule may block to force an order between clients."""

RangeRule = Callable[[str, str, int, int], Fault | None]
"""(method, path, first byte, end byte) of a response body -> a :class:`Fault` cutting it
(``stall_after``, ``reset_at``, ``end_at``), or None to pass it."""


def range_start(range_header: str | None) -> int:
    """The first byte a ``Range: bytes=first-last`` header asks for (0 without one)."""
    if not range_header or not range_header.startswith("bytes="):
        return 0
    first = range_header.removeprefix("bytes=").split("-", 1)[0]
    return int(first) if first else 0


@dataclass
class FaultProxy:
    """An HTTP proxy on 127.0.0.1 that forwards to ``upstream`` unless a rule fails the request."""

    upstream: str
    rules: list[Rule] = field(default_factory=list)
    seen: list[tuple[str, str, int]] = field(default_factory=list)
    stalled: list[str] = field(default_factory=list)
    range_rules: list[RangeRule] = field(default_factory=list)
    sent: dict[str, int] = field(default_factory=dict)
    """Body bytes sent per path for GETs (cut bodies counted as far as they went)."""

    def __post_init__(self) -> None:
        target = urlsplit(self.upstream)
        proxy = self
        self.stopping = threading.Event()
        count_lock = threading.Lock()

        def count(path: str, size: int) -> None:
            with count_lock:
                proxy.sent[path] = proxy.sent.get(path, 0) + size

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                query = parse_qs(parts.query, keep_blank_values=True)
                fault: Fault | None = None
                for rule in proxy.rules:
                    verdict = rule(self.command, parts.path, query)
                    if verdict is not None:
                        fault = verdict if isinstance(verdict, Fault) else Fault(verdict)
                        break
                if fault is not None and not fault.forward and fault.stall_after is None:
                    self._answer_fault(fault)
                    return
                connection = http.client.HTTPConnection(
                    target.hostname or "127.0.0.1", target.port, timeout=60
                )
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                headers["Host"] = target.netloc
                connection.request(self.command, self.path, body=body, headers=headers)
                response = connection.getresponse()
                data = response.read()
                connection.close()
                if fault is not None and fault.forward:
                    self._answer_fault(fault)
                    return
                proxy.seen.append((self.command, self.path, response.status))
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                upstream_length = response.getheader("Content-Length")
                if self.command == "HEAD" and upstream_length:
                    self.send_header("Content-Length", upstream_length)
                else:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command == "HEAD":
                    return
                first = range_start(self.headers.get("Range"))
                if fault is None and self.command == "GET":
                    for range_rule in proxy.range_rules:
                        fault = range_rule(self.command, parts.path, first, first + len(data))
                        if fault is not None:
                            break
                if fault is not None and self._cut(fault, data, first, parts.path):
                    return
                if self.command == "GET":
                    count(parts.path, len(data))
                self.wfile.write(data)

            def _cut(self, fault: Fault, data: bytes, first: int, path: str) -> bool:
                """Send ``data`` (from byte ``first`` of the object) up to the fault's byte
                and stall, reset or end there; False when the fault's byte is past it."""
                at = next(
                    (a for a in (fault.stall_after, fault.reset_at, fault.end_at) if a is not None),
                    None,
                )
                if at is None:
                    return False
                cut = max(0, at - first)
                if cut >= len(data):
                    return False
                self.wfile.write(data[:cut])
                self.wfile.flush()
                count(path, cut)
                self.close_connection = True
                if fault.stall_after is not None:
                    proxy.stalled.append(self.path)
                    proxy.stopping.wait(fault.stall_s)
                elif fault.reset_at is not None:
                    self._drain()  # the client has what was sent: the cut is at the byte
                    self.connection.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                    self.wfile.close()
                    self.rfile.close()
                    self.connection.close()
                return True

            def _drain(self, timeout: float = 5.0) -> None:
                """Wait until the client has acknowledged every byte sent (the send queue,
                TIOCOUTQ, is empty) and has had a moment to read it: a reset then loses
                nothing in flight, so the cut falls at the fault's byte."""
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:
                    queued = fcntl.ioctl(self.connection.fileno(), termios.TIOCOUTQ, b"\0" * 4)
                    if struct.unpack("i", queued)[0] == 0:
                        break
                    time.sleep(0.01)
                time.sleep(0.2)

            def _answer_fault(self, fault: Fault) -> None:
                proxy.seen.append((self.command, self.path, fault.status))
                payload = (
                    f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{fault.code}</Code>"
                    "<Message>injected fault</Message></Error>"
                ).encode()
                self.send_response(fault.status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        host, port = self._server.server_address[:2]
        self.url = f"http://{host!s}:{port}"

    def stop(self) -> None:
        self.stopping.set()  # ends every stall
        self._server.shutdown()
        self._server.server_close()


def fail_upload_parts_from(part: int, status: int = 500) -> Rule:
    """Fail every UploadPart request for part numbers ``part`` and above."""

    def rule(method: str, path: str, query: dict[str, list[str]]) -> int | None:
        numbers = query.get("partNumber")
        if method == "PUT" and numbers and int(numbers[0]) >= part and "uploadId" in query:
            return status
        return None

    return rule


def fail_first_gets(count: int, key_suffix: str, status: int = 503) -> Rule:
    """Fail the first ``count`` GetObject requests for keys ending in ``key_suffix``."""
    remaining = [count]
    lock = threading.Lock()

    def rule(method: str, path: str, query: dict[str, list[str]]) -> int | None:
        if method != "GET" or not path.endswith(key_suffix) or query:
            return None
        with lock:
            if remaining[0] > 0:
                remaining[0] -= 1
                return status
        return None

    return rule


def completes_of(key_suffix: str) -> Callable[[str, str, dict[str, list[str]]], bool]:
    """Matches CompleteMultipartUpload requests (POST ?uploadId=) for keys ending in the suffix."""

    def match(method: str, path: str, query: dict[str, list[str]]) -> bool:
        return method == "POST" and "uploadId" in query and path.endswith(key_suffix)

    return match


def faults_in_turn(
    match: Callable[[str, str, dict[str, list[str]]], bool], *faults: Fault | None
) -> Rule:
    """The n-th request ``match`` accepts gets ``faults[n]`` (None passes it); later ones pass."""
    queue = list(faults)
    lock = threading.Lock()

    def rule(method: str, path: str, query: dict[str, list[str]]) -> Fault | None:
        if not match(method, path, query):
            return None
        with lock:
            return queue.pop(0) if queue else None

    return rule


def heads_of(key_suffix: str, fault: Fault) -> Rule:
    """Every HeadObject of keys ending in ``key_suffix`` gets ``fault``."""

    def rule(method: str, path: str, query: dict[str, list[str]]) -> Fault | None:
        return fault if method == "HEAD" and path.endswith(key_suffix) and not query else None

    return rule


def hold(
    match: Callable[[str, str, dict[str, list[str]]], bool],
    arrived: threading.Event,
    release: threading.Event,
    timeout: float = 120.0,
) -> Rule:
    """Hold the first request ``match`` accepts: set ``arrived``, wait for ``release``, then
    pass it on (forces one client's step after another client's)."""
    held = [False]

    def rule(method: str, path: str, query: dict[str, list[str]]) -> None:
        if match(method, path, query) and not held[0]:
            held[0] = True
            arrived.set()
            release.wait(timeout)

    return rule


def stall_gets(key_suffix: str, after: int) -> Rule:
    """Every GetObject of keys ending in ``key_suffix`` stops sending at byte ``after`` of
    the object (a ranged GET past it at once), until the proxy stops."""

    def rule(method: str, path: str, query: dict[str, list[str]]) -> Fault | None:
        if method == "GET" and path.endswith(key_suffix) and not query:
            return Fault(200, stall_after=after)
        return None

    return rule


def cut_once(key_suffix: str, fault: Fault) -> RangeRule:
    """The first GET of a key ending in ``key_suffix`` whose body holds the fault's byte
    (``stall_after``, ``reset_at`` or ``end_at``) is cut there; later ones pass."""
    at = next(a for a in (fault.stall_after, fault.reset_at, fault.end_at) if a is not None)
    fired = [False]
    lock = threading.Lock()

    def rule(method: str, path: str, first: int, end: int) -> Fault | None:
        if method != "GET" or not path.endswith(key_suffix) or not first <= at < end:
            return None
        with lock:
            if fired[0]:
                return None
            fired[0] = True
        return fault

    return rule
