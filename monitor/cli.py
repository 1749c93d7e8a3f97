"""Command line: ``python -m monitor watch|report``."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from monitor.callbacks import MonitorEvent
from monitor.config import MonitorConfig
from monitor.errors import ConfigurationError, run_reporting_errors
from monitor.metrics import Level, Resource
from monitor.sidecar import StorageMonitor
from monitor.units import format_size


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m monitor", description="Watch /tmp and memory; report on EMF logs."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    watch = commands.add_parser("watch", help="print one line per level change until Ctrl-C")
    watch.add_argument("path", nargs="?", default=None, help="directory to watch (default /tmp)")
    watch.add_argument(
        "--interval",
        type=float,
        default=None,
        metavar="MS",
        help="sample interval in milliseconds (default 100)",
    )
    watch.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="S",
        help="stop after S seconds (default: run until interrupted)",
    )
    report = commands.add_parser("report", help="draw a timeline from EMF log lines")
    report.add_argument("log", type=Path, help="a CloudWatch Logs export or a local capture")
    report.add_argument("-o", "--output", type=Path, required=True, help="OUT.png or OUT.html")
    return parser


def _describe(event: MonitorEvent) -> str:
    m = event.metrics
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(m.timestamp))
    if event.resource is Resource.TMP:
        detail = (
            f"{m.used_fraction:.1%} used ({format_size(m.used_space)} of "
            f"{format_size(m.total_space)})"
        )
        if event.level is Level.PREDICTED_FULL and event.seconds_to_full is not None:
            detail += f", full in about {event.seconds_to_full:.0f} s at the current rate"
    else:
        detail = (
            f"{m.memory_fraction:.1%} used ({format_size(m.memory_used)} of "
            f"{format_size(m.memory_limit)})"
        )
    return f"{stamp} {event.resource.value} {event.level.value}: {detail}"


def run_watch(args: argparse.Namespace, out: TextIO) -> int:
    interval = args.interval / 1000 if args.interval is not None else None
    monitor = StorageMonitor(
        MonitorConfig.resolve(
            path=args.path, sample_interval=interval, emf=False, actions=False, tracing="off"
        )
    )
    lock = threading.Lock()

    def show(event: MonitorEvent) -> None:
        with lock:
            out.write(_describe(event) + "\n")
            out.flush()

    for resource, levels in (
        ("tmp", ("warning", "predicted_full", "critical")),
        ("memory", ("warning", "critical")),
    ):
        for level in levels:
            monitor.add_callback(level, show, resource=resource)
    first = monitor.sample_now()
    out.write(
        f"watching {monitor.config.path} ({format_size(first.total_space)}) and memory "
        f"(limit {format_size(first.memory_limit)}) every "
        f"{monitor.config.sample_interval * 1000:g} ms; Ctrl-C to stop\n"
    )
    out.flush()
    last = {Resource.TMP: Level.OK, Resource.MEMORY: Level.OK}
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    monitor.start()
    deadline = time.monotonic() + args.duration if args.duration else None
    try:
        while not stop.wait(monitor.config.sample_interval):
            for resource, previous in last.items():
                level = monitor.level(resource)
                if level is Level.OK and previous is not Level.OK:
                    with lock:
                        out.write(f"{resource.value} back to ok\n")
                        out.flush()
                last[resource] = level
            if deadline is not None and time.monotonic() >= deadline:
                break
    except KeyboardInterrupt:
        pass
    finally:
        monitor.stop()
        monitor.drain_callbacks(1.0)
    return 0


def run_report(args: argparse.Namespace, out: TextIO) -> int:
    try:
        from monitor.report import render_report  # noqa: PLC0415 - matplotlib loads only here
    except ModuleNotFoundError as exc:
        if exc.name != "monitor.report":
            raise
        raise ConfigurationError(
            "the report is not part of the monitor layer (it needs matplotlib); run "
            "python -m monitor report where tmpwarden is installed with its report extra"
        ) from exc

    summary = render_report(args.log, args.output)
    out.write(f"wrote {args.output}: {summary}\n")
    return 0


def main(
    argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    stdout, stderr = out or sys.stdout, err or sys.stderr
    args = build_parser().parse_args(argv)
    if args.command == "watch":
        return run_reporting_errors(lambda: run_watch(args, stdout), stderr)
    return run_reporting_errors(lambda: run_report(args, stdout), stderr)
