"""Deflated members of a ZIP source are copied as they are (ISSUE 10: "copied as they
are (raw deflate bytes and CRC), not inflated and deflated again"), to a local file and
to S3 (moto on 127.0.0.1), still verified: a damaged member fails, nothing is left."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
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


def test_compression_deflate_re_deflates_the_members(tmp_path: Path) -> None:
    # review 2 item 3: the README says --compression deflate deflates (level 6 unless given)
    source = source_zip(tmp_path / "model.zip")
    out = tmp_path / "out.zip"
    package(source, out, PackageOptions(compression="deflate"))
    copied, original = raw_members(out.read_bytes()), raw_members(source.read_bytes())
    for name in DEFLATED:
        assert copied[name][2] != original[name][2]
    assert zipfile_contents(out.read_bytes()) == CONTENTS


TEXT = b"".join(b'{"row": %d, "label": "item-%d"}\n' % (i, i % 97) for i in range(200_000))


def test_auto_deflates_again_a_member_kept_in_stored_deflate_blocks(tmp_path: Path) -> None:
    # review 2 item 3: level-0 deflate of 6.8 MB JSON was copied at 6,800,525 B (level 6:
    # 49,658 B)
    source = tmp_path / "model.zip"
    with zipfile.ZipFile(source, "w") as archive:
        archive.writestr("data.jsonl", TEXT, zipfile.ZIP_DEFLATED, compresslevel=0)
        archive.writestr("config.json", CONFIG, zipfile.ZIP_DEFLATED, compresslevel=0)
    out = tmp_path / "out.zip"
    package(source, out, PackageOptions())
    reference = zlib.compressobj(6, zlib.DEFLATED, -15)
    zlib6 = len(reference.compress(TEXT) + reference.flush())
    with zipfile.ZipFile(out) as archive:
        size = archive.getinfo("data.jsonl").compress_size
        assert archive.read("data.jsonl") == TEXT
        assert archive.read("config.json") == CONFIG
        assert archive.getinfo("config.json").compress_size < len(CONFIG) / 10
    print(f"level-0 source {source.stat().st_size:,} B -> {size:,} B (zlib 6: {zlib6:,} B)")
    assert size <= 1.1 * zlib6


def trailing_zip(path: Path, contents: dict[str, bytes], junk: bytes) -> Path:
    """A ZIP whose deflated members carry ``junk`` after the end of their deflate stream,
    inside their declared compressed size (zipfile and ``unzip -t`` accept it)."""
    records, directory = io.BytesIO(), io.BytesIO()
    for name, data in contents.items():
        compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
        payload = compressor.compress(data) + compressor.flush() + junk
        encoded, crc, offset = name.encode(), zlib.crc32(data), records.tell()
        sizes = struct.pack("<III", crc, len(payload), len(data))
        records.write(
            struct.pack("<4sHHHHH", b"PK\x03\x04", 20, 0, 8, 0, 0x21)
            + sizes
            + struct.pack("<HH", len(encoded), 0)
            + encoded
            + payload
        )
        directory.write(
            struct.pack("<4sHHHHHH", b"PK\x01\x02", 20, 20, 0, 8, 0, 0x21)
            + sizes
            + struct.pack("<HHHHHII", len(encoded), 0, 0, 0, 0, 0o644 << 16, offset)
            + encoded
        )
    end = struct.pack(
        "<4sHHHHIIH",
        b"PK\x05\x06",
        0,
        0,
        len(contents),
        len(contents),
        directory.tell(),
        records.tell(),
        0,
    )
    path.write_bytes(records.getvalue() + directory.getvalue() + end)
    return path


@pytest.mark.parametrize("junk", [b"JUNK", bytes(3 * MiB)], ids=["4-bytes", "3-MiB"])
def test_bytes_after_the_deflate_stream_are_left_behind(tmp_path: Path, junk: bytes) -> None:
    # review 2 item 13: such a member was refused though zipfile and unzip -t read it
    contents = {"small.txt": b"hello world " * 1000, "weights.bin": WEIGHTS}
    source = trailing_zip(tmp_path / "trail.zip", contents, junk)
    assert zipfile_contents(source.read_bytes()) == contents  # the readers' view
    out = tmp_path / "out.zip"
    package(source, out, PackageOptions())
    data = out.read_bytes()
    copied = raw_members(data)
    for name, content in contents.items():
        method, crc, raw = copied[name]
        inflater = zlib.decompressobj(-15)
        assert (method, crc) == (METHOD_DEFLATED, zlib.crc32(content))
        assert inflater.decompress(raw) == content and inflater.eof
        assert inflater.unused_data == b""  # the stream, whole, and nothing after it
    print(f"source {source.stat().st_size:,} B -> output {len(data):,} B")
    assert zipfile_contents(data) == contents
    assert_command_line_readers_accept(out)
