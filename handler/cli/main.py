"""Command line: ``python -m handler package|inspect|sample``.

Errors print as one line starting with ``error:`` on stderr and exit non-zero,
without a traceback (set ``TMPWARDEN_DEBUG=1`` to see one).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

from handler.archive import StreamingExtractor
from handler.archive.names import check_name_encoding
from handler.archive.safety import Limits
from handler.cli.progress import ProgressBar
from handler.codec import COMPRESSIONS
from handler.errors import CommitUnverifiedError, InputError, TmpwardenError
from handler.events import UNVERIFIED, error_dict
from handler.locations.local import IF_EXISTS, is_s3, open_source
from handler.members import ArchiveFormat, ArchiveInfo
from handler.memory import limit_malloc_arenas
from handler.packaging import PackageOptions, PackageResult, package
from handler.storage import StorageManager, Strategy
from handler.validation import check_arguments
from monitor.errors import EXIT_ERROR, one_line, run_reporting_errors
from monitor.units import MiB, format_size, parse_size

MEMBERS_SHOWN = 40
EXIT_UNVERIFIED = 3
"""Exit status when the ZIP was written but could not be verified (check it; not a retry)."""

DEFAULT_TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"
"""The sandbox's default (handler.cli.sandbox.DEFAULT_TEMPLATE); the sandbox is imported
only by ``invoke``, so ``python -m handler.cli.sandbox_init`` finds its module unloaded."""


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except TmpwardenError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _level(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 9:
        raise argparse.ArgumentTypeError(f"{value} is not a level from 0 to 9")
    return value


def _encoding(text: str) -> str:
    try:
        return check_name_encoding(text) or text
    except TmpwardenError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _add_name_encoding(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--name-encoding",
        type=_encoding,
        default=None,
        metavar="ENC",
        help="read member names that are not UTF-8 in this codec (e.g. latin-1, cp932); "
        "without it such names are refused",
    )


def _add_limit_options(parser: argparse.ArgumentParser) -> None:
    defaults = Limits()
    group = parser.add_argument_group("safety limits (raise them for trusted, unusual archives)")
    group.add_argument(
        "--max-total-size",
        type=_size,
        default=defaults.max_total_size,
        metavar="SIZE",
        help="largest uncompressed total (default %(default)s bytes)",
    )
    group.add_argument(
        "--max-members",
        type=int,
        default=defaults.max_members,
        metavar="N",
        help="most members (default %(default)s)",
    )
    group.add_argument(
        "--max-ratio",
        type=float,
        default=defaults.max_ratio,
        metavar="R",
        help="highest compression ratio (default %(default)s)",
    )


def _limits(args: argparse.Namespace) -> Limits:
    return Limits(
        max_total_size=args.max_total_size, max_members=args.max_members, max_ratio=args.max_ratio
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m handler",
        description="Turn model archives into ZIPs by streaming: bounded disk and memory.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    pack = commands.add_parser("package", help="stream an archive into a ZIP")
    pack.add_argument(
        "source",
        help="archive to read (tar, tar.gz, tar.bz2, tar.xz, zip): a path or s3://bucket/key",
    )
    pack.add_argument(
        "dest", help="ZIP to write, a path or s3://bucket/key (complete and verified, or absent)"
    )
    pack.add_argument(
        "--endpoint-url",
        default=None,
        help="an S3-compatible endpoint (default: AWS_ENDPOINT_URL, else AWS)",
    )
    pack.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="GLOB",
        help="only members matching GLOB (repeatable); without '/' it matches "
        "base names, with '/' whole paths",
    )
    pack.add_argument(
        "--compression",
        choices=COMPRESSIONS,
        default="auto",
        help="auto (default): deflate at the strongest level that keeps up with the "
        "bottleneck (6 to S3 at up to 112 MB/s of target throughput, else 1; 1 locally, "
        "where the input's inflate is the limit), members that do not compress stored, a "
        "ZIP source's deflated members copied as they are",
    )
    pack.add_argument(
        "--level", type=_level, default=None, help="deflate level 0-9 (default: auto)"
    )
    pack.add_argument(
        "--if-exists",
        choices=IF_EXISTS,
        default="overwrite",
        help="when the destination exists: replace it (default) or fail, leaving it as it is "
        "(S3: If-None-Match: * on the commit)",
    )
    pack.add_argument("--json", action="store_true", help="print one JSON object")
    _add_name_encoding(pack)
    _add_limit_options(pack)

    inspect = commands.add_parser("inspect", help="list members and the space each strategy needs")
    inspect.add_argument("source")
    inspect.add_argument("--endpoint-url", default=None)
    inspect.add_argument("--json", action="store_true")
    inspect.add_argument("--all", action="store_true", help="list every member")
    _add_name_encoding(inspect)
    _add_limit_options(inspect)

    sample = commands.add_parser("sample", help="generate a sample model artifact")
    sample.add_argument("output")
    sample.add_argument("--size", type=_size, default=parse_size("1GiB"), metavar="SIZE")
    sample.add_argument("--format", choices=[f.value for f in ArchiveFormat], default="tar.gz")
    sample.add_argument("--seed", type=int, default=0)

    invoke = commands.add_parser(
        "invoke", help="run the Lambda handler once, locally, under the function's limits"
    )
    invoke.add_argument("event", type=Path, help="the event as a JSON file")
    invoke.add_argument(
        "--tmp-size",
        type=_size,
        default=None,
        metavar="SIZE",
        help="size of /tmp (default: EphemeralStorage from the template)",
    )
    invoke.add_argument(
        "--memory",
        type=int,
        default=None,
        metavar="MB",
        help="memory limit (default: MemorySize from the template)",
    )
    invoke.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="S",
        help="timeout in seconds (default: Timeout from the template)",
    )
    invoke.add_argument("--template", type=Path, default=DEFAULT_TEMPLATE)
    invoke.add_argument(
        "--emf-log",
        type=Path,
        default=None,
        metavar="PATH",
        help="where the EMF lines go (default: invoke-emf.log beside the event)",
    )
    invoke.add_argument(
        "--extensions",
        type=Path,
        default=None,
        metavar="DIR",
        help="start every executable in DIR as a Lambda external extension "
        "(default: the layer's deploy/layer/extensions in a checkout, when it exists)",
    )
    invoke.add_argument("--no-extensions", action="store_true", help="start no extension")
    invoke.add_argument(
        "--address-space",
        type=int,
        default=None,
        metavar="MB",
        help="also cap each process's address space (RLIMIT_AS) at MB, so allocations fail "
        "instead of the out-of-memory kill at the memory limit (default: 4x memory + 1 GiB, "
        "a far backstop)",
    )
    invoke.add_argument(
        "--handler",
        default=None,
        metavar="MODULE.FUNCTION",
        help="the handler to run (default: Handler from the template)",
    )
    return parser


def _run_package(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    options = PackageOptions(
        include=tuple(args.include),
        compression=args.compression,
        level=args.level,
        limits=_limits(args),
        name_encoding=args.name_encoding,
    )
    s3 = _client(args.endpoint_url, args.source, args.dest)
    check_arguments(args.source, args.dest)
    bar = ProgressBar(err, "packaging") if not args.json and err.isatty() else None
    try:
        result = package(
            args.source,
            args.dest,
            options,
            progress=bar.update if bar else None,
            s3=s3,
            if_exists=args.if_exists,
        )
    except CommitUnverifiedError as exc:  # written, not verified: its own status and exit
        if args.json:
            shown = {"status": UNVERIFIED, "source": args.source, "destination": args.dest}
            out.write(json.dumps({**shown, "etag": exc.etag, "error": error_dict(exc)}) + "\n")
        err.write(f"error: {one_line(str(exc))}\n")
        return EXIT_UNVERIFIED
    finally:
        if bar is not None:
            bar.close()
    if args.json:
        out.write(json.dumps(result.to_dict()) + "\n")
    else:
        out.write(_describe_result(result) + "\n")
    return 0


def _describe_result(result: PackageResult) -> str:
    rate = result.uncompressed_bytes / max(result.duration_s, 1e-6)
    return (
        f"packaged {result.files} files ({format_size(result.uncompressed_bytes)}) from "
        f"{result.source} into {result.destination}: {format_size(result.bytes_out)} in "
        f"{result.duration_s:.1f} s ({format_size(rate)}/s), peak RSS "
        f"{format_size(result.peak_rss_bytes)}"
    )


def _run_inspect(args: argparse.Namespace, out: TextIO) -> int:
    extractor = StreamingExtractor(limits=_limits(args), name_encoding=args.name_encoding)
    check_arguments(args.source)
    info = extractor.get_archive_info(
        open_source(args.source, s3=_client(args.endpoint_url, args.source))
    )
    storage = StorageManager()
    estimates = {s.value: storage.estimate_space_needed(info, s) for s in Strategy}
    if args.json:
        out.write(json.dumps(_inspect_json(info, storage, estimates)) + "\n")
        return 0
    out.write(
        f"source     {info.source} ({info.format.value}, {format_size(info.archive_size)})\n"
        f"members    {info.file_count} files, {info.directory_count} directories, "
        f"{format_size(info.total_size)} uncompressed\n"
        f"scratch    {storage.path}: {format_size(storage.get_available_space())} available\n"
    )
    for name, estimate in estimates.items():
        out.write(f"  {name:<8} needs {format_size(estimate.scratch_bytes)} on {storage.path}\n")
    out.write(f"output     ZIP of at most {format_size(estimates['stream'].output_bytes)}\n")
    shown = info.members if args.all else info.members[:MEMBERS_SHOWN]
    for member in shown:
        out.write(f"  {format_size(member.size):>10}  {member.kind.value:<9}  {member.name}\n")
    if len(shown) < len(info.members):
        out.write(f"  ... and {len(info.members) - len(shown)} more (--all lists them)\n")
    return 0


def _inspect_json(
    info: ArchiveInfo, storage: StorageManager, estimates: dict[str, Any]
) -> dict[str, Any]:
    return {
        "source": info.source,
        "format": info.format.value,
        "archive_size": info.archive_size,
        "files": info.file_count,
        "directories": info.directory_count,
        "total_size": info.total_size,
        "scratch_path": str(storage.path),
        "scratch_available": storage.get_available_space(),
        "space_needed": {
            name: {"scratch_bytes": e.scratch_bytes, "output_bytes": e.output_bytes}
            for name, e in estimates.items()
        },
        "members": [
            {"name": m.name, "kind": m.kind.value, "size": m.size, "mode": m.mode}
            for m in info.members
        ],
    }


def _run_sample(args: argparse.Namespace, out: TextIO) -> int:
    parent = Path(args.output).resolve().parent
    if not parent.is_dir():
        raise InputError(f"{args.output}: the directory {parent} does not exist; create it first")
    from handler.cli.sample import build_sample_artifact  # noqa: PLC0415 - only here

    path = build_sample_artifact(args.output, args.size, fmt=args.format, seed=args.seed)
    out.write(
        f"wrote {path} ({format_size(path.stat().st_size)}, "
        f"{format_size(args.size)} uncompressed)\n"
    )
    return 0


def _client(endpoint_url: str | None, *locations: str) -> Any:
    if not any(is_s3(location) for location in locations):
        return None
    from handler.locations.s3 import make_client  # noqa: PLC0415 - boto3 only for S3

    return make_client(endpoint_url)


def _run_invoke(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from handler.cli.sandbox import (  # noqa: PLC0415
        HANDLER_NAME,
        LAYER_EXTENSIONS,
        invoke,
        limits_from_template,
    )

    base = limits_from_template(args.template)
    limits = replace(
        base,
        tmp_size=args.tmp_size or base.tmp_size,
        memory_mb=args.memory or base.memory_mb,
        timeout=args.timeout or base.timeout,
    )
    emf_log = args.emf_log or args.event.resolve().parent / "invoke-emf.log"
    extensions = None if args.no_extensions else args.extensions
    if extensions is None and not args.no_extensions and LAYER_EXTENSIONS.is_dir():
        extensions = LAYER_EXTENSIONS
    outcome = invoke(
        args.event,
        limits,
        emf_log=emf_log,
        log_stream=err,
        extensions_dir=extensions,
        handler=args.handler or HANDLER_NAME,
        address_space_mb=args.address_space,
    )
    out.write(json.dumps(outcome.response, indent=2) + "\n")
    err.write(
        "sandbox: /tmp {tmp} MiB, memory {mem} MB, timeout {timeout:g} s; took {took:.1f} s; "
        "/tmp used before {before}, after {after}; {emf} EMF lines in {log}\n".format(
            tmp=limits.tmp_size // MiB,
            mem=limits.memory_mb,
            timeout=limits.timeout,
            took=outcome.duration_s,
            before=format_size(outcome.tmp_before.get("used_bytes", 0)),
            after=format_size(outcome.tmp_after.get("used_bytes", 0))
            + (f" ({', '.join(left)})" if (left := outcome.tmp_after.get("entries")) else ""),
            emf=outcome.emf_lines,
            log=emf_log,
        )
    )
    err.write(describe_platform(outcome) + "\n")
    status = outcome.response.get("status")
    if status == UNVERIFIED:
        return EXIT_UNVERIFIED
    return 0 if status == "succeeded" else EXIT_ERROR


def describe_platform(outcome: Any) -> str:
    """One line: the platform's status, memory and each extension's life."""
    status = outcome.status + (f" ({outcome.error_type})" if outcome.error_type else "")
    parts = []
    for ext in outcome.extensions:
        if not ext.registered:
            life = f"not registered ({ext.error or f'exit {ext.exit_code}'})"
        elif ext.killed:
            life = "killed after the shutdown budget"
        elif ext.shutdown_ms is not None:
            life = f"exit {ext.exit_code} {ext.shutdown_ms:.0f} ms after SHUTDOWN"
        else:
            life = f"exit {ext.exit_code}"
        parts.append(f"{ext.name} [{' '.join(ext.events)}] {life}")
    return (
        f"platform: status {status}, max memory used {outcome.max_memory_mb} MB; "
        f"extensions: {'; '.join(parts) or 'none'}"
    )


def main(
    argv: Sequence[str] | None = None,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Run the CLI; returns the exit status."""
    stdout, stderr = out or sys.stdout, err or sys.stderr
    args = build_parser().parse_args(argv)
    limit_malloc_arenas()  # before the work's threads: RSS stays near the buffers
    commands: dict[str, Callable[[], int]] = {
        "package": lambda: _run_package(args, stdout, stderr),
        "inspect": lambda: _run_inspect(args, stdout),
        "sample": lambda: _run_sample(args, stdout),
        "invoke": lambda: _run_invoke(args, stdout, stderr),
    }
    return run_reporting_errors(commands[args.command], stderr)
