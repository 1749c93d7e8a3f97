"""Fields checked against each other and against what S3 and the filesystem can hold, and
user values shown at most about 1 KiB wherever they are echoed."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest

from handler.events import EventValidationError, error_dict, parse_event
from handler.logs import JsonFormatter
from handler.validation import (
    DISPLAY_LIMIT,
    location_problems,
    same_location,
    shown,
    text_problem,
)


def target(**fields: object) -> dict[str, object]:
    return {"source": "s3://models/m.tar.gz", "destination": "s3://packages/m.zip", **fields}


def refused(event: object) -> EventValidationError:
    with pytest.raises(EventValidationError) as caught:
        parse_event(event)
    return caught.value


def test_the_same_bucket_and_key_is_refused_as_the_destination() -> None:
    error = refused({"targets": [target(destination="s3://models/m.tar.gz")]})
    assert error.problems == [
        (
            "targets[0].destination",
            "is the source ('s3://models/m.tar.gz'); writing it would destroy the archive "
            "being read: choose another destination",
        )
    ]


def test_a_local_destination_linked_to_the_source_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "m.tar.gz"
    source.write_bytes(b"x")
    (tmp_path / "hard.zip").hardlink_to(source)
    (tmp_path / "soft.zip").symlink_to(source)
    for name in ("hard.zip", "soft.zip"):
        error = refused({"targets": [target(source=str(source), destination=str(tmp_path / name))]})
        assert error.field == "targets[0].destination" and "is the source" in str(error)
    assert same_location(str(source), str(tmp_path / "sub" / ".." / "m.tar.gz"))
    assert not same_location(str(source), str(tmp_path / "other.zip"))
    assert not same_location("s3://models/m.tar.gz", "s3://models/m.tar.gz.zip")


def test_targets_are_checked_against_each_other() -> None:
    error = refused(
        {
            "targets": [
                target(),
                target(source="s3://models/n.tar.gz"),
                target(source="s3://packages/m.zip", destination="s3://packages/n.zip"),
            ]
        }
    )
    assert [field for field, _ in error.problems] == [
        "targets[1].destination",
        "targets[2].source",
        "targets[2].source",
    ]
    assert "is also targets[0].destination" in error.problems[0][1]
    assert "is targets[0].destination, which this event writes" in error.problems[1][1]
    assert "is targets[1].destination, which this event writes" in error.problems[2][1]


@pytest.mark.parametrize(
    ("destination", "problem"),
    [
        ("s3://packages/a\x00.zip", "contains a NUL byte at character 15"),
        ("out/a\x00.zip", "contains a NUL byte at character 5"),
        ("s3://packages/caf\ud800.zip", "contains an unpaired surrogate ('\\ud800'"),
        ("s3://packages/" + "k" * 200_000, "the key is 200,000 bytes of UTF-8; S3 keys hold"),
        ("s3://ab/k.zip", "bucket 'ab' is not a valid S3 bucket name"),
        ("s3://my..bucket/k.zip", "bucket 'my..bucket' holds '..'"),
        ("s3://192.168.1.1/k.zip", "bucket '192.168.1.1' is shaped like an IP address"),
        ("/" + "d" * 5000 + ".zip", "the path is 5,005 bytes; paths hold at most 4,095"),
    ],
)
def test_a_destination_the_target_cannot_hold_is_refused_naming_the_field(
    destination: str, problem: str
) -> None:
    error = refused({"targets": [target(destination=destination)]})
    assert error.field == "targets[0].destination"
    assert error.problems[0][1].startswith(problem), error.problems
    assert len(str(error)) < 2 * DISPLAY_LIMIT


def test_legacy_bucket_names_and_exact_limits_are_accepted() -> None:
    assert location_problems("s3://Legacy_Bucket/k") == []
    assert location_problems("s3://my-bucket/" + "k" * 1024) == []
    assert location_problems("s3://my-bucket/" + "é" * 512) == []  # 1,024 bytes
    assert location_problems("s3://my-bucket/" + "é" * 513) != []
    assert text_problem("caf\udce9", escaped_bytes=True) is None
    assert text_problem("caf\udce9") is not None
    assert text_problem("😀 ok") is None


def test_every_invalid_field_is_reported_at_once() -> None:
    # issue 8: only the first invalid field was reported
    error = refused(
        {
            "targets": [
                target(level=12, compression="lz4", include=["", "*.json"]),
                target(source="s3://x", oops=True),
            ],
            "strategy": "fast",
            "extra": 1,
        }
    )
    fields = [field for field, _ in error.problems]
    assert fields == [
        "extra",
        "targets[0].include[0]",
        "targets[0].compression",
        "targets[0].level",
        "targets[1].oops",
        "targets[1].source",
        "strategy",
    ]
    message = str(error)
    assert message.startswith("extra: unknown field")
    assert "(7 invalid fields, 2 more not shown)" in message


def test_a_200_kb_value_is_shown_as_1_kib_in_messages_results_and_logs() -> None:
    # issue 8: a 200 KB key was echoed into a 400 KB response and 1 MB of logs
    huge = "s3://packages/" + "k" * 200_000
    error = refused({"targets": [target(destination=huge), target(compression=huge)]})
    result = json.dumps(error_dict(error))
    assert len(result) < 3 * DISPLAY_LIMIT
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("tmpwarden.test-validation")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.error(huge, extra={"destination": huge, "nested": {"k": [huge]}})
    finally:
        logger.removeHandler(handler)
    line = stream.getvalue()
    print(f"response {len(result)} bytes, log line {len(line)} bytes")
    assert line.count("\n") == 1 and len(line) < 4 * (DISPLAY_LIMIT + 100)
    assert len(shown(huge)) <= DISPLAY_LIMIT + 50
    assert shown(huge).endswith("k" * 256) and "characters left out" in shown(huge)


def test_the_sandbox_leaves_unrepresentable_paths_to_the_handler() -> None:
    # issue 8: a NUL byte in a destination gave `invoke` a bare `ValueError`
    from handler.cli.sandbox import local_destination_dirs

    event = {"targets": [{"source": "m\x00.tar.gz", "destination": "/var/\x00.zip"}]}
    assert local_destination_dirs(event) == []


def _error_line(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The command's one error line (argparse's usage line before it, if any, aside)."""
    from handler.cli.main import main

    code: object
    try:
        code = main(args)
    except SystemExit as exit_:  # argparse refused an argument
        code = exit_.code
    assert code in (1, 2)
    *_usage, line = capsys.readouterr().err.splitlines()
    assert "error: " in line
    return line


def test_a_huge_member_name_codec_or_pattern_is_shown_as_1_kib_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # issue 8 review: a refused 200 KB member name gave a 200 KB error line; a 5,000
    # character --name-encoding and a 100 KB --include were echoed whole
    import tarfile

    archive = tmp_path / "hostile.tar"
    with tarfile.open(archive, "w", format=tarfile.PAX_FORMAT) as tar:
        member = tarfile.TarInfo("../" + "n" * 200_000)
        tar.addfile(member, io.BytesIO(b""))
    plain = tmp_path / "plain.tar"
    with tarfile.open(plain, "w") as tar:
        member = tarfile.TarInfo("a.txt")
        member.size = 1
        tar.addfile(member, io.BytesIO(b"a"))
    out = str(tmp_path / "o.zip")
    lines = [
        _error_line(["package", str(archive), out], capsys),
        _error_line(["package", str(plain), out, "--name-encoding", "x" * 5000], capsys),
        _error_line(["package", str(plain), out, "--include", "q" * 100_000], capsys),
    ]
    print([len(line) for line in lines])
    for line in lines:
        assert len(line) <= 2 * DISPLAY_LIMIT + 512, len(line)
        assert "characters left out" in line
    assert not (tmp_path / "o.zip").exists()


def test_an_event_codec_name_is_shown_as_1_kib() -> None:
    error = refused({"targets": [target(name_encoding="x" * 5000)]})
    [(field, problem)] = error.problems
    assert field == "targets[0].name_encoding"
    assert len(problem) <= DISPLAY_LIMIT + 256 and "characters left out" in problem


def test_an_empty_include_list_is_refused_rather_than_packaging_everything() -> None:
    # issue 8 review: `include: []` was accepted and packaged every member
    error = refused({"targets": [target(include=[])]})
    assert error.field == "targets[0].include"
    assert "omit it to package every member" in str(error)
