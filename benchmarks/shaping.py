"""A TCP proxy on 127.0.0.1 that models S3 as seen from inside a Lambda function.

Between a client (tmpwarden) and an S3 server it passes bytes through unchanged, and:

* caps each connection at ``per_connection`` bytes/s in each direction (a single connection
  to S3 gives about 85-90 MB/s; AWS's guidance is one concurrent request per 85-90 MB/s);
* delays the first byte of each response by ``latency_s`` after the last byte of its request
  (S3's first-byte latency, tens of milliseconds);
* caps the function's total ingress (server -> client bytes) and egress (client -> server)
  separately with token buckets shared by all connections (600 Mbps = 75 MB/s per function,
  reported up to 3 Gbps = 375 MB/s at 10 GB of memory outside a VPC since 2026);
* counts the bytes each way, exactly;
* optionally (``reset_in_at``) resets, once, the connection that carries ingress byte
  ``reset_in_at`` of the run (a dropped connection mid-body: the client sees
  ``ConnectionResetError``).

Rates are in bytes per second, MB = 10**6 bytes. One thread per direction per connection;
the sockets' own buffers provide back-pressure while a direction waits for its tokens. The
bytes move by splice(2) through a pipe (Linux), not through the proxy's memory: about 0.45
of its 2.3 CPU-s per 1 GiB S3-to-S3 run saved on 2026-11-30.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import struct
import threading
import time
from dataclasses import dataclass

MB = 1_000_000
CHUNK = 256 * 1024


@dataclass(frozen=True)
class Profile:
    """A network model. ``None`` for a rate means uncapped."""

    name: str
    ingress: float | None  # bytes/s, server -> client, all connections together
    egress: float | None  # bytes/s, client -> server, all connections together
    per_connection: float | None = 90 * MB  # bytes/s per connection, each direction
    latency_s: float = 0.020  # first-byte latency of each response


PROFILES = {
    "lambda-600mbps": Profile("lambda-600mbps", 75 * MB, 75 * MB),
    "lambda-3gbps": Profile("lambda-3gbps", 375 * MB, 375 * MB),
    "none": Profile("none", None, None, None, 0.0),
}


def profile(name: str) -> Profile:
    """The profile called ``name``; ValueError naming the known ones otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(
            f"unknown network profile {name!r}: use one of {sorted(PROFILES)}"
        ) from None


def modelled_floor(bytes_in: int, bytes_out: int, model: Profile) -> float:
    """Seconds no client can beat through ``model``: the larger of ``bytes_in`` over the
    ingress cap and ``bytes_out`` over the egress cap, plus one first-byte latency."""
    times = [0.0]
    if model.ingress:
        times.append(bytes_in / model.ingress)
    if model.egress:
        times.append(bytes_out / model.egress)
    return max(times) + model.latency_s


class TokenBucket:
    """Paces bytes to ``rate`` per second, thread-safe: each reservation of ``n`` bytes
    starts when the previous one's ``n / rate`` seconds have passed, and a sender that fell
    behind may catch up by at most ``burst_s`` seconds' worth (absorbs a late wakeup on a
    busy machine without lifting the long-run rate)."""

    def __init__(self, rate: float, burst_s: float = 0.010) -> None:
        self.rate = rate
        self.burst_s = burst_s
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def reserve(self, count: int, earliest: float = 0.0) -> float:
        """Reserve ``count`` bytes to be sent no sooner than ``earliest`` (monotonic
        seconds); the monotonic time at which they may be sent."""
        with self._lock:
            now = time.monotonic()
            start = max(now - self.burst_s, earliest, self._next)
            self._next = start + count / self.rate
            return max(start, now, earliest)


class ShapingProxy:
    """Listens on 127.0.0.1 (``url``), forwards each connection to ``upstream`` (an
    ``http://host:port`` URL) through ``model``. ``bytes_in``/``bytes_out``: bytes
    delivered to the client / to the server since start or :meth:`reset_counts`."""

    def __init__(
        self,
        upstream: str,
        model: Profile | str = "lambda-600mbps",
        *,
        reset_in_at: int | None = None,
    ) -> None:
        self.model = profile(model) if isinstance(model, str) else model
        self.reset_in_at = reset_in_at
        self.resets = 0
        host, _, port = upstream.removeprefix("http://").rstrip("/").rpartition(":")
        self._upstream = (host, int(port))
        self._ingress = TokenBucket(self.model.ingress) if self.model.ingress else None
        self._egress = TokenBucket(self.model.egress) if self.model.egress else None
        self._lock = threading.Lock()
        self._counts = [0, 0]  # in, out
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self.connections = 0
        accept = threading.Thread(target=self._accept, name="shaping-accept", daemon=True)
        accept.start()
        self._threads.append(accept)

    @property
    def bytes_in(self) -> int:
        return self._counts[0]

    @property
    def bytes_out(self) -> int:
        return self._counts[1]

    def reset_counts(self) -> None:
        with self._lock:
            self._counts = [0, 0]

    def floor(self) -> float:
        """:func:`modelled_floor` of the bytes counted so far."""
        return modelled_floor(self.bytes_in, self.bytes_out, self.model)

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self._upstream)
            except OSError:
                client.close()
                continue
            for sock in (client, server):
                # blocking whatever socket.setdefaulttimeout says: under a timeout Python
                # keeps the file descriptor non-blocking, and splice(2) fails with EAGAIN
                sock.setblocking(True)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self.connections += 1
                self._sockets.update((client, server))
            _Connection(self, client, server).start()

    def _count(self, index: int, count: int) -> None:
        with self._lock:
            self._counts[index] += count

    def _cut_at(self, count: int) -> int | None:
        """Of ``count`` ingress bytes about to be sent, how many go before the reset (once,
        at ``reset_in_at``); None: send them all."""
        with self._lock:
            if self.reset_in_at is None or self.resets:
                return None
            left = self.reset_in_at - self._counts[0]
            if left >= count:
                return None
            self.resets += 1
            return max(0, left)

    def _forget(self, *socks: socket.socket) -> None:
        with self._lock:
            for sock in socks:
                self._sockets.discard(sock)
                sock.close()

    def stop(self) -> None:
        """Stop accepting and cut every open connection. Idempotent."""
        self._stopping.set()
        self._listener.close()
        with self._lock:
            live = list(self._sockets)
        for sock in live:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> ShapingProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _reset(sock: socket.socket) -> None:
    """Abort the connection: an RST (SO_LINGER 0), not an orderly end of stream; the
    shutdown of the reading side first wakes the pump blocked reading the socket."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RD)
    sock.close()


class _Connection:
    """One client connection: a pump thread each way, shaped by the proxy's model."""

    def __init__(self, proxy: ShapingProxy, client: socket.socket, server: socket.socket) -> None:
        self.proxy, self.client, self.server = proxy, client, server
        rate = proxy.model.per_connection
        self.limits = {
            "in": [b for b in (TokenBucket(rate) if rate else None, proxy._ingress) if b],
            "out": [b for b in (TokenBucket(rate) if rate else None, proxy._egress) if b],
        }
        self.request_sent_at = 0.0
        self.awaiting_response = False
        self.done = 0
        self._lock = threading.Lock()

    def start(self) -> None:
        for direction, source, target in (
            ("out", self.client, self.server),
            ("in", self.server, self.client),
        ):
            threading.Thread(
                target=self._pump, args=(direction, source, target), daemon=True
            ).start()

    def _pump(self, direction: str, source: socket.socket, target: socket.socket) -> None:
        # the bytes go socket -> pipe -> socket by splice(2), never through this process's
        # memory: the proxy's CPU is the test bed's, shared with the tool on 2 cores
        read_end, write_end = os.pipe()
        latency = self.proxy.model.latency_s
        limits = self.limits[direction]
        index = 0 if direction == "in" else 1
        try:
            fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, CHUNK)
            while True:
                count = os.splice(source.fileno(), write_end, CHUNK)
                if not count:
                    break
                now = time.monotonic()
                send_at = now
                if direction == "out":
                    self.request_sent_at, self.awaiting_response = now, True
                elif self.awaiting_response:
                    self.awaiting_response = False
                    send_at = self.request_sent_at + latency
                for bucket in limits:
                    send_at = bucket.reserve(count, send_at)
                delay = send_at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                resetting = direction == "in" and self.proxy.reset_in_at is not None
                cut = self.proxy._cut_at(count) if resetting else None
                left = count if cut is None else cut
                while left:
                    left -= os.splice(read_end, target.fileno(), left)
                self.proxy._count(index, count if cut is None else cut)
                if cut is not None:
                    _reset(target)
                    break
            with contextlib.suppress(OSError):
                target.shutdown(socket.SHUT_WR)  # pass the end of this direction on
        except OSError:  # a reset or the proxy stopping: cut the whole connection
            for sock in (source, target):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        finally:
            os.close(read_end)
            os.close(write_end)
        with self._lock:
            self.done += 1
            last = self.done == 2
        if last:
            self.proxy._forget(self.client, self.server)
