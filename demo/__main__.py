"""``make demo``: the packaging Lambda on a model artifact larger than its /tmp, locally.

No AWS account needed. It generates a sample model artifact (about 1 GiB of float32
weight shards plus config and tokenizer files), starts a real S3-compatible server on
127.0.0.1 (SeaweedFS, benchmarks/seaweed.py) behind a proxy that models S3 as seen from
inside a function (benchmarks/shaping.py; ``--profile``, or ``DEMO_PROFILE``: by default
``lambda-600mbps``, 75 MB/s each way, 90 MB/s per connection, 20 ms to the first byte;
``none`` for no shaping), uploads the artifact, and invokes the handler in the local Lambda
sandbox with a 512 MiB /tmp: first with the ``extract`` strategy (it fails fast,
/tmp left clean), then with the default (it streams S3 to S3 and succeeds). Each run's
network throughput is printed beside the profile's modelled ceiling. It verifies the ZIP
against the archive, prints a summary, draws the report picture from the captured EMF
lines, and stops everything it started.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Any

from benchmarks.seaweed import SeaweedS3
from benchmarks.shaping import MB, PROFILES, ShapingProxy
from handler.cli.sample import build_sample_artifact
from handler.cli.sandbox import invoke, limits_from_template
from handler.codec import crc32
from monitor.units import MiB, format_size, parse_size

OUTPUT = Path("demo-output")
BUCKET = "ml-artifacts"
SOURCE_KEY = "models/llm-1b/model.tar.gz"
DEST_KEY = "packages/llm-1b/model.zip"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "demo",
    "AWS_SECRET_ACCESS_KEY": "demo",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


def archive_crcs(path: Path) -> dict[str, tuple[int, int]]:
    """(size, CRC-32) of each file in a tar.gz, read by the standard library."""
    result: dict[str, tuple[int, int]] = {}
    with tarfile.open(path, "r|gz") as tar:
        for member in tar:
            if not member.isfile():
                continue
            stream = tar.extractfile(member)
            assert stream is not None
            value = 0
            while chunk := stream.read(4 * MiB):
                value = crc32(chunk, value)
            result[member.name.removeprefix("./")] = (member.size, value)
    return result


def zip_crcs(path: Path) -> dict[str, tuple[int, int]]:
    with zipfile.ZipFile(path) as archive:
        return {i.filename: (i.file_size, i.CRC) for i in archive.infolist() if not i.is_dir()}


def row(label: str, outcome: Any, target: dict[str, Any] | None) -> str:
    if target is None:
        return f"| {label} | {outcome.response.get('errorType', '?')} | | | | |"
    error = target.get("error", {}).get("type", "")
    return (
        f"| {label} | {target['status']}{' (' + error + ')' if error else ''} | "
        f"{target['strategy'] or '-'} | {target['duration_s']:.1f} s | "
        f"{format_size(target['peak_tmp_bytes'])} | {format_size(target['peak_rss_bytes'])} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo")
    parser.add_argument("--size", type=parse_size, default=parse_size("1GiB"))
    parser.add_argument("--tmp-size", type=parse_size, default=parse_size("512MiB"))
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        default=os.environ.get("DEMO_PROFILE", "lambda-600mbps"),
        help="network model between the handler and S3 (default: DEMO_PROFILE, "
        "else lambda-600mbps)",
    )
    args = parser.parse_args(argv)
    out: Path = args.output.resolve()
    out.mkdir(exist_ok=True)
    os.environ.update(CREDENTIALS)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    artifact = out / f"model-{args.size // MiB}MiB.tar.gz"
    if not artifact.exists():
        print(f"generating a {format_size(args.size)} sample model artifact: {artifact}")
        build_sample_artifact(artifact, args.size)

    scratch = out / "seaweedfs"
    shutil.rmtree(scratch, ignore_errors=True)
    server = SeaweedS3(
        scratch, CREDENTIALS["AWS_ACCESS_KEY_ID"], CREDENTIALS["AWS_SECRET_ACCESS_KEY"]
    )
    try:
        server.start(buckets=(BUCKET,))
        with ShapingProxy(server.url, args.profile) as proxy:
            os.environ["AWS_ENDPOINT_URL"] = proxy.url
            print(
                f"S3-compatible server (SeaweedFS) on {server.url}, seen through the "
                f"{args.profile} network model on {proxy.url}; uploading the artifact"
            )
            s3 = server.client()  # set-up and checks go to the server, not through the model
            s3.upload_file(str(artifact), BUCKET, SOURCE_KEY)
            return run(args, out, artifact, s3, proxy)
    finally:
        server.stop()
        shutil.rmtree(scratch, ignore_errors=True)


def network_line(proxy: ShapingProxy, seconds: float) -> str:
    """The run's bytes through the model, its MB/s each way and the modelled ceiling."""
    model = proxy.model
    got_in, got_out = proxy.bytes_in, proxy.bytes_out
    achieved = f"{got_in / MB / seconds:.1f} MB/s in, {got_out / MB / seconds:.1f} MB/s out"
    if model.ingress is None and model.egress is None:
        ceiling = "no modelled ceiling (profile none)"
    else:
        floor = proxy.floor()
        ceiling = (
            f"modelled ceiling {(model.ingress or 0) / MB:g} MB/s in, "
            f"{(model.egress or 0) / MB:g} MB/s out: floor {floor:.2f} s, "
            f"{seconds / floor:.2f}x the floor"
        )
    return (
        f"  network ({model.name}): read {got_in / MB:.0f} MB, wrote {got_out / MB:.0f} MB "
        f"in {seconds:.1f} s = {achieved}; {ceiling}"
    )


def run(args: argparse.Namespace, out: Path, artifact: Path, s3: Any, proxy: ShapingProxy) -> int:
    limits = limits_from_template()
    from dataclasses import replace  # noqa: PLC0415

    limits = replace(limits, tmp_size=args.tmp_size)
    emf_log = out / "invoke-emf.log"
    emf_log.unlink(missing_ok=True)
    target = {"source": f"s3://{BUCKET}/{SOURCE_KEY}", "destination": f"s3://{BUCKET}/{DEST_KEY}"}
    outcomes = []
    for label, event in (
        ("extract (legacy path)", {"targets": [target], "strategy": "extract"}),
        ("default (auto)", {"targets": [target]}),
    ):
        event_path = out / f"event-{label.split()[0]}.json"
        event_path.write_text(json.dumps(event, indent=2))
        print(
            f"\ninvoking the handler: {label}, /tmp {format_size(limits.tmp_size)}, "
            f"memory {limits.memory_mb} MB, timeout {limits.timeout:g} s"
        )
        proxy.reset_counts()
        with (out / "invoke.log").open("a") as logs:
            outcome = invoke(event_path, limits, emf_log=emf_log, log_stream=logs)
        outcomes.append((label, outcome))
        result = outcome.response.get("targets", [None])[0]
        print(
            f"  -> {outcome.response.get('status', outcome.response.get('errorType'))}"
            + (f": {result['error']['message']}" if result and "error" in result else "")
        )
        print(
            f"  /tmp used before {format_size(outcome.tmp_before.get('used_bytes', 0))}, "
            f"after {format_size(outcome.tmp_after.get('used_bytes', 0))}"
        )
        if result and result.get("duration_s"):
            print(network_line(proxy, result["duration_s"]))

    packaged = out / "model.zip"
    s3.download_file(BUCKET, DEST_KEY, str(packaged))
    subprocess.run(["unzip", "-tqq", str(packaged)], check=True)
    expected, actual = archive_crcs(artifact), zip_crcs(packaged)
    if expected != actual:
        print("error: the ZIP's members differ from the archive's", file=sys.stderr)
        return 1
    from monitor.report import render_report  # noqa: PLC0415

    picture = out / "report.png"
    summary = render_report(emf_log, picture)
    print(
        f"\nverified {packaged}: {len(actual)} files, {format_size(packaged.stat().st_size)}; "
        "sizes and CRC-32 equal the archive's, unzip -t clean\n"
        f"report: {picture} ({summary})\n"
        f"logs: {out / 'invoke.log'}, EMF: {emf_log}\n"
    )
    print("| run | status | strategy | time | peak /tmp | peak RSS |")
    print("| --- | --- | --- | ---: | ---: | ---: |")
    for label, outcome in outcomes:
        targets = outcome.response.get("targets") or [None]
        print(row(label, outcome, targets[0]))
    naive = 3 * artifact.stat().st_size
    network = "" if proxy.model.name == "none" else f"the {proxy.model.name} network model and "
    print(
        f"\nthe naive path (download, extractall, make_archive) would need about "
        f"{format_size(naive)} of /tmp; this /tmp has {format_size(limits.tmp_size)}.\n"
        f"(times here are bound by {network}this machine's cores, shared by the S3 "
        "server; see benchmarks/RESULTS.md)"
    )
    ok = [o.response.get("status") for _, o in outcomes] == ["failed", "succeeded"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
