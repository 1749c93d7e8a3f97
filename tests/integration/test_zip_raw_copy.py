"""Deflated members of a ZIP source are copied as they are (ISSUE 10: "copied as they
are (raw deflate bytes and CRC), not inflated and deflated again"), to a local file and
to S3 (moto on 127.0.0.1), still verified: a damaged member fails, nothing is left."""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

import pytest

import handler.locations.multipart
from handler.cli.sample import weight_chunks
from handler.errors import ExtractionError
from handler.packaging import PackageOptions, package
from handler.zipwriter.records import METHOD_DEFLATED
from handler.zipwriter.zipper import BUFFER_LIMIT
from monitor.units import MiB
from tests.integration.conftest import upload
from tests.s3server import MotoS3
from tests.streaming_readers import (
    assert_command_line_readers_accept,
    assert_no_data_descriptors,
    stream_unzip_contents,
    zipfile_contents,
)

CONFIG = b'{"hidden_size": 2048, "num_layers": 24}\n' * 400
WEIGHTS = b"".join(weight_chunks(7 * MiB, seed=11))  # spans two 5 MiB parts
NOISE = bytes(range(256)) * 400  # stored in the source: not copied raw
DEFLATED = ("model/config.json", "model/weights.safetensors")
CONTENTS = {
    "model/": b"",
    "model/config.json": CONFIG,
    "model/weights.safetensors": WEIGHTS,
    "model/noise.bin": NOISE,
}
CENTRAL_CRC = 16  # offsets in a central directory record (APPNOTE.TXT 4.3.12)
CENTRAL_UNCOMPRESSED = 24


def source_zip(path: Path) -> Path:
    """Deflated by zlib at level 9: bytes ISA-L (what tmpwarden deflates with) never makes."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(zipfile.ZipInfo("model/", (2024, 1, 1, 0, 0, 0)), b"")
        for name in DEFLATED:
            archive.writestr(name, CONTENTS[name], zipfile.ZIP_DEFLATED, compresslevel=9)
        archive.writestr("model/noise.bin", NOISE, zipfile.ZIP_STORED)
    return path


def raw_members(data: bytes) -> dict[str, tuple[int, int, bytes]]:
    """Each member's (method, CRC-32, compressed bytes as they are in the file)."""
    found = {}
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():
            start = info.header_offset
            name_length, extra_length = struct.unpack_from("<HH", data, start + 26)
            begin = start + 30 + name_length + extra_length
            found[info.filename] = (
                info.compress_type,
                info.CRC,
                data[begin : begin + info.compress_size],
            )
    return found


def check_copied(source: bytes, output: bytes, path: Path) -> None:
    copied, original = raw_members(output), raw_members(source)
    for name in DEFLATED:
        method, crc, raw = copied[name]
        print(f"{name}: {len(raw)} compressed bytes copied for {len(CONTENTS[name])}")
        assert (method, crc, raw) == original[name]  # byte-identical, same CRC
    assert len(WEIGHTS) > BUFFER_LIMIT  # the large one went through the patched header
    assert copied["model/noise.bin"][0] == METHOD_DEFLATED  # re-chosen by auto, not copied
    assert_no_data_descriptors(output)
    assert stream_unzip_contents(output) == CONTENTS
    assert zipfile_contents(output) == CONTENTS
    path.write_bytes(output)
    assert_command_line_readers_accept(path)  # unzip -t, 7z t, bsdtar from a pipe


def test_deflated_members_are_copied_byte_for_byte_to_a_local_zip(tmp_path: Path) -> None:
    source = source_zip(tmp_path / "model.zip")
    out = tmp_path / "out.zip"
    package(source, out, PackageOptions())
    check_copied(source.read_bytes(), out.read_bytes(), tmp_path / "check.zip")


def test_deflated_members_are_copied_byte_for_byte_to_s3(
    s3_env: MotoS3, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(handler.locations.multipart, "FIRST_PART_SIZE", 5 * MiB)
    source = source_zip(tmp_path / "model.zip")
    client = s3_env.client()
    url = upload(client, bucket, "models/model.zip", source)  # read back by ranged GETs
    package(url, f"s3://{bucket}/packages/model.zip", PackageOptions(), s3=client)
    obj = client.get_object(Bucket=bucket, Key="packages/model.zip")
    assert obj["ETag"].strip('"').endswith("-2")  # the weights' header sat in a held part
    check_copied(source.read_bytes(), obj["Body"].read(), tmp_path / "check.zip")


def test_a_level_given_by_the_user_re_deflates_the_members(tmp_path: Path) -> None:
    source = source_zip(tmp_path / "model.zip")
    out = tmp_path / "out.zip"
    package(source, out, PackageOptions(level=1))
    copied, original = raw_members(out.read_bytes()), raw_members(source.read_bytes())
    assert copied["model/weights.safetensors"][2] != original["model/weights.safetensors"][2]
    assert zipfile_contents(out.read_bytes()) == CONTENTS


def _patch_central(data: bytes, name: bytes, offset: int, value: int) -> bytes:
    """``data`` with one 32-bit field of ``name``'s central directory record replaced."""
    record = 0
    while True:
        record = data.index(b"PK\x01\x02", record)
        name_length = struct.unpack_from("<H", data, record + 28)[0]
        if data[record + 46 : record + 46 + name_length] == name:
            break
        record += 4
    return data[: record + offset] + struct.pack("<I", value) + data[record + offset + 4 :]


@pytest.mark.parametrize(
    ("field", "problem"),
    [(CENTRAL_CRC, "Bad CRC-32"), (CENTRAL_UNCOMPRESSED, "inflates past")],
    ids=["crc", "declared-size"],
)
@pytest.mark.parametrize("name", DEFLATED)
def test_a_copied_member_that_does_not_verify_fails_and_leaves_nothing(
    tmp_path: Path, field: int, problem: str, name: str
) -> None:
    # GIVEN a source whose central directory lies about one member's CRC or size
    data = source_zip(tmp_path / "model.zip").read_bytes()
    info = zipfile.ZipFile(io.BytesIO(data)).getinfo(name)
    wrong = info.CRC ^ 1 if field == CENTRAL_CRC else info.file_size // 2
    bad = tmp_path / "bad.zip"
    bad.write_bytes(_patch_central(data, name.encode(), field, wrong))
    out = tmp_path / "out.zip"
    # WHEN it is packaged THEN the raw copy's check refuses it, naming the member
    with pytest.raises(ExtractionError, match=problem) as raised:
        package(bad, out, PackageOptions())
    print(f"{name}, {problem}: {raised.value}")
    assert name in str(raised.value)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.zip", "model.zip"]
