"""tmpwarden S3 to S3 through a model of the network, against its modelled floor.

``python -m benchmarks.network [--size 256MiB] [--profile lambda-600mbps]``: generates an
artifact (float32 weight shards as tar.gz, as ``make bench``), starts SeaweedFS on 127.0.0.1
(benchmarks/seaweed.py) behind the shaping proxy (benchmarks/shaping.py), uploads the
artifact straight to the server, runs ``python -m handler package s3://... s3://...`` through
the proxy and prints its wall time beside the modelled floor of the bytes it moved.

``--proxy-only`` measures the proxy alone instead: a local TCP origin streams ``--size``
bytes on ``--connections`` connections through the profile (``none``: the proxy's own
ceiling on this machine).

``--goals`` measures issue 10's network goals instead, as ``make bench`` does
(:mod:`benchmarks.network_goals`): ``--size`` (default 1 GiB there) through both profiles,
the naive path on ``--small``, a connection reset at half the source.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.seaweed import ACCESS_KEY, REGION, SECRET_KEY, SeaweedS3
from benchmarks.shaping import MB, PROFILES, ShapingProxy
from handler.cli.sample import build_sample_artifact
from monitor.units import GiB, MiB, format_size, parse_size

BUCKET = "tmpwarden-bench"
REPO = Path(__file__).resolve().parent.parent


def package_through(size: int, profile: str, workdir: Path) -> int:
    """One S3-to-S3 packaging through ``profile``; prints and returns the exit code."""
    artifact = workdir / f"model-{size // MiB}MiB.tar.gz"
    if not artifact.exists():
        print(f"generating a {format_size(size)} artifact: {artifact}")
        build_sample_artifact(artifact, size, seed=1)
    scratch = workdir / "seaweedfs"
    shutil.rmtree(scratch, ignore_errors=True)  # the server's data, fresh each run
    with SeaweedS3(scratch) as server:
        server.start(buckets=(BUCKET,))
        server.client().upload_file(str(artifact), BUCKET, "in/model.tar.gz")
        env = dict(
            os.environ,
            AWS_ACCESS_KEY_ID=ACCESS_KEY,
            AWS_SECRET_ACCESS_KEY=SECRET_KEY,
            AWS_DEFAULT_REGION=REGION,
            PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            TMPDIR=str(workdir),
        )
        env.pop("AWS_SESSION_TOKEN", None)
        with ShapingProxy(server.url, profile) as proxy:
            command = [sys.executable, "-m", "handler", "package", "--endpoint-url", proxy.url]
            command += [f"s3://{BUCKET}/in/model.tar.gz", f"s3://{BUCKET}/out/model.zip"]
            started = time.monotonic()
            result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
            wall = time.monotonic() - started
            floor = proxy.floor()
            print(
                f"{profile}: {format_size(artifact.stat().st_size)} tar.gz S3 to S3: "
                f"read {proxy.bytes_in / MB:.0f} MB, wrote {proxy.bytes_out / MB:.0f} MB "
                f"on {proxy.connections} connections in {wall:.2f} s "
                f"({proxy.bytes_in / MB / wall:.1f} MB/s in); modelled floor {floor:.2f} s"
                + (f", {wall / floor:.2f}x the floor" if floor > 0 else "")
            )
    shutil.rmtree(scratch, ignore_errors=True)
    if result.returncode:
        print(f"error: the packaging failed: {result.stderr.strip()[-400:]}", file=sys.stderr)
    return result.returncode


def proxy_throughput(size: int, profile: str, connections: int) -> float:
    """MB/s a local TCP origin reaches through the proxy, ``size`` bytes per connection."""
    origin = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        block = b"x" * MiB
        while True:
            try:
                conn, _ = origin.accept()
            except OSError:
                return
            threading.Thread(target=send, args=(conn, block), daemon=True).start()

    def send(conn: socket.socket, block: bytes) -> None:
        with conn:
            conn.recv(1)
            for offset in range(0, size, len(block)):
                conn.sendall(block[: min(len(block), size - offset)])

    def fetch(port: int) -> None:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"G")
            buffer = bytearray(MiB)
            while sock.recv_into(buffer):
                pass

    threading.Thread(target=serve, daemon=True).start()
    with ShapingProxy(f"http://127.0.0.1:{origin.getsockname()[1]}", profile) as proxy:
        port = int(proxy.url.rsplit(":", 1)[1])
        jobs = [threading.Thread(target=fetch, args=(port,)) for _ in range(connections)]
        started = time.monotonic()
        for job in jobs:
            job.start()
        for job in jobs:
            job.join()
        rate = proxy.bytes_in / MB / (time.monotonic() - started)
    origin.close()
    print(f"proxy ({profile}), {connections} connection(s): {rate:.0f} MB/s")
    return rate


def goals(size: int, small: int, workdir: Path | None) -> int:
    """Issue 10's network goals (:mod:`benchmarks.network_goals`), printed as Markdown."""
    from benchmarks import network_goals  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="tmpwarden-network-") as scratch:
        where = workdir or Path(scratch)
        artifacts = []
        for content in (size, small):
            path = where / "artifacts" / f"model-{content // MiB}MiB.tar.gz"
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                print(f"generating a {format_size(content)} artifact: {path}", flush=True)
                build_sample_artifact(path, content, seed=1)
            artifacts.append(path)
        results = network_goals.run_goals(artifacts[0], artifacts[1], size, small, where)
    print("\n".join(network_goals.report(results)))
    return 0 if all(g.met for g in results) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.network")
    parser.add_argument("--size", type=parse_size, default=None, help="256MiB; --goals: 1GiB")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="lambda-600mbps")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--proxy-only", action="store_true")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--goals", action="store_true")
    parser.add_argument("--small", type=parse_size, default=parse_size("256MiB"))
    args = parser.parse_args(argv)
    if args.goals:
        return goals(args.size or GiB, args.small, args.workdir)
    size = args.size or parse_size("256MiB")
    if args.proxy_only:
        proxy_throughput(size, args.profile, args.connections)
        return 0
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        return package_through(size, args.profile, args.workdir)
    with tempfile.TemporaryDirectory(prefix="tmpwarden-network-") as workdir:
        return package_through(size, args.profile, Path(workdir))


if __name__ == "__main__":
    sys.exit(main())
