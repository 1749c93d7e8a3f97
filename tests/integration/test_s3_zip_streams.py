"""ZIPs written to S3 (moto's server on 127.0.0.1) and to a local file read in streaming
readers: no data descriptor anywhere, and stream-unzip, zipfile, ``unzip -t``, ``7z t``
and libarchive's streaming reader (``bsdtar`` on a pipe) read every entry.

Guards issue 8 item 3: every S3 entry had a data descriptor; stream-unzip stopped at the
first directory and Java's ZipInputStream refuses stored entries with one.
"""

from __future__ import annotations

import random
import tarfile
from pathlib import Path

import pytest

import handler.locations.multipart
from handler.app import lambda_handler
from handler.packaging import PackageOptions, package
from handler.zipwriter.records import FLAG_DATA_DESCRIPTOR, METHOD_DEFLATED, METHOD_STORED
from monitor.units import MiB
from tests.helpers import FIXED_MTIME, tar_info, tar_with
from tests.integration.conftest import upload
from tests.integration.test_lambda_s3 import Context
from tests.s3server import MotoS3
from tests.streaming_readers import (
    assert_command_line_readers_accept,
    assert_no_data_descriptors,
    descriptor_signatures_outside_data,
    stream_unzip_contents,
    zipfile_contents,
)

PART_SIZE = 5 * MiB  # S3's smallest part (but the last): weights.bin spans three parts
CONFIG = b'{"hidden_size": 2048, "num_layers": 24}\n' * 200
NOISE = random.Random(1).randbytes(100_000)  # deflate cannot shrink it: stored
WEIGHTS = random.Random(2).randbytes(12 * MiB)
EXPECTED = {
    "model/": b"",
    "model/config.json": CONFIG,
    "model/empty.txt": b"",
    "model/noise.bin": NOISE,
    "model/latest": b"weights.bin",
    "model/weights.bin": WEIGHTS,
    "model/after.txt": b"after the large member",
}


def source_tar(path: Path) -> Path:
    directory = tar_info("model", tarfile.DIRTYPE)
    directory.mode = 0o755
    link = tar_info("model/latest", tarfile.SYMTYPE, "weights.bin")
    files = [
        (tar_info(name), data)
        for name, data in EXPECTED.items()
        if name not in ("model/", "model/latest")
    ]
    for info, _ in files:
        info.mtime = FIXED_MTIME
    return tar_with(path, [directory, *files[:3], link, *files[3:]])


@pytest.mark.parametrize("compression", ["deflate", "store"])
def test_s3_and_file_zips_have_no_data_descriptor_and_stream(
    s3_env: MotoS3,
    bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    compression: str,
) -> None:
    monkeypatch.setattr(handler.locations.multipart, "FIRST_PART_SIZE", PART_SIZE)
    uploaded: list[int] = []
    upload_part = handler.locations.multipart.S3MultipartWriter._upload_part

    def record(
        writer: handler.locations.multipart.S3MultipartWriter, number: int, chunk: bytes
    ) -> str:
        uploaded.append(number)
        return upload_part(writer, number, chunk)

    monkeypatch.setattr(handler.locations.multipart.S3MultipartWriter, "_upload_part", record)
    archive = source_tar(tmp_path / "model.tar")
    source = upload(s3_env.client(), bucket, "models/model.tar", archive)

    # GIVEN the same source packaged to S3 and to a local file
    response = lambda_handler(
        {
            "targets": [
                {
                    "source": source,
                    "destination": f"s3://{bucket}/packages/model.zip",
                    "compression": compression,
                }
            ],
            "strategy": "stream",
        },
        Context(),
    )
    assert response["status"] == "succeeded", response
    obj = s3_env.client().get_object(Bucket=bucket, Key="packages/model.zip")
    on_s3 = obj["Body"].read()
    local = tmp_path / "model.zip"
    package(archive, local, PackageOptions(compression=compression))  # type: ignore[arg-type]
    on_file = local.read_bytes()

    # THEN the part holding weights.bin's local header went up after the parts after it
    print(f"{compression}: {len(on_s3)} bytes, parts uploaded in order {uploaded}")
    assert obj["ETag"].strip('"').endswith("-3")
    assert uploaded == [2, 1, 3]
    # AND both ZIPs are the same bytes, with no data descriptor anywhere
    assert on_s3 == on_file
    records = {r.name: r for r in assert_no_data_descriptors(on_s3)}
    methods = {name: r.method for name, r in records.items()}
    stored = {"model/", "model/empty.txt", "model/noise.bin", "model/latest", "model/after.txt"}
    if compression == "deflate":
        assert {n for n, m in methods.items() if m == METHOD_STORED} == stored
        assert {n for n, m in methods.items() if m == METHOD_DEFLATED} == set(EXPECTED) - stored
    else:
        assert set(methods.values()) == {METHOD_STORED}
    bit3 = sum(r.flags & FLAG_DATA_DESCRIPTOR != 0 for r in records.values())
    print(
        f"{compression}: {len(records)} local headers, {bit3} with bit 3, "
        f"{len(descriptor_signatures_outside_data(on_s3, list(records.values())))} "
        f"descriptor signatures outside member data; methods {sorted(methods.values())}"
    )
    # AND every reader, streaming ones first, reads every entry
    assert stream_unzip_contents(on_s3) == EXPECTED
    assert zipfile_contents(on_s3) == EXPECTED
    assert_command_line_readers_accept(local)
