"""Running short of memory or threads: one ResourceExhaustedError naming what ran short,
how much the work needs and the setting to raise, wherever the failure surfaces."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from handler import packaging
from handler.archive import StreamingExtractor
from handler.cli.main import main
from handler.errors import RemoteServiceError, ResourceExhaustedError, TmpwardenError
from handler.events import StrategyChoice, Target
from handler.locations.buffers import plan_memory
from handler.locations.multipart import S3MultipartWriter
from handler.locations.s3 import translate
from handler.memory import (
    BASELINE_BYTES,
    check_memory,
    explain,
    function_memory_limit,
)
from handler.settings import HandlerSettings
from monitor.units import KiB, MiB
from tests.helpers import build_archive

FILES = {f"model/shard-{i}.bin": bytes([i]) * 1000 for i in range(3)}
THREAD_START = "can't start new thread"


def test_the_plan_names_its_parts_and_their_sum() -> None:
    s3_to_s3 = plan_memory("s3://models/m.tar.gz", "s3://packages/m.zip", 32 * MiB)
    # read buffers: 4 x 1 MiB, 32 MiB of ranges read ahead, 4 connections' 256 KiB pieces;
    # parts: 4 uploading (the function's memory unknown: 256 MB or more), 3 more
    assert (s3_to_s3.parts, s3_to_s3.part_size, s3_to_s3.total) == (7, 8 * MiB, 183 * MiB)
    extract = plan_memory("s3://models/m.tar.gz", "s3://packages/m.zip", 32 * MiB, extract=True)
    assert extract.total == 203 * MiB
    # a 3 MiB object is one range_size read in 4 ranges (256 KiB, to 1, 2 and 3 MiB), each
    # on its connection: 4 MiB + 8 MiB + 4 x 256 KiB
    assert plan_memory("s3://m/a.tar", "a.zip", 3 * MiB).read_buffers == 13 * MiB
    # parts double every 1,000 (8 GiB): a 20 GiB output holds 16 MiB parts
    assert plan_memory("s3://m/a.tar", "s3://p/a.zip", 20 * 1024 * MiB).part_size == 16 * MiB
    # a range (a 1 MiB object is read in 2: 256 KiB and 768 KiB), 2 pieces, a random read
    zip_read = 12 * MiB + 2 * 256 * KiB + 64 * KiB
    assert plan_memory("s3://m/a.zip", "s3://p/a.zip", MiB).read_buffers == zip_read
    local = plan_memory("a.tar.gz", "a.zip", 32 * MiB)
    assert local.total == BASELINE_BYTES + 5 * MiB
    assert function_memory_limit({"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128"}) == 128 * MiB
    assert function_memory_limit({}) is None


def test_a_plan_over_the_limit_less_headroom_is_refused_with_the_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")  # 2 parts uploading, not 4
    plan = plan_memory("s3://models/m.tar.gz", "s3://packages/m.zip", 32 * MiB)
    check_memory(plan, 192 * MiB)
    check_memory(plan, None)
    with pytest.raises(ResourceExhaustedError) as caught:
        check_memory(plan, 128 * MiB)
    error = caught.value
    assert isinstance(error, MemoryError) and isinstance(error, TmpwardenError)
    assert (error.resource, error.needed, error.limit) == ("memory", 167 * MiB, 128 * MiB)
    assert str(error) == (
        "short of memory (checked before starting: 90.0 MiB baseline + 5 parts of 8.0 MiB + "
        "37.0 MiB of read buffers, with 10% kept free); the work needs about 167.0 MiB, the "
        "function has 128.0 MiB; raise the function's MemorySize in template.yaml (locally: "
        "python -m handler invoke --memory MB) to at least 192 MB"
    )


def test_memory_errors_and_thread_start_failures_are_found_through_the_chain() -> None:
    try:
        try:
            raise MemoryError
        except MemoryError as inner:
            raise ValueError("reading failed") from inner
    except ValueError as outer:
        wrapped = outer
    found = explain(wrapped)
    assert found is not None and found.resource == "memory"
    threads = explain(RuntimeError(THREAD_START))
    assert threads is not None and threads.resource == "threads"
    assert str(threads).startswith("short of threads (can't start new thread")
    assert explain(RuntimeError("dictionary changed size")) is None
    assert explain(ValueError("bad")) is None


def test_s3_does_not_take_the_blame_for_a_memory_error() -> None:
    # issue 8: at 160 MB `RemoteServiceError: ...: MemoryError:`
    translated = translate(MemoryError(), "s3://packages/m.zip (part 2)", reading_source=False)
    assert isinstance(translated, ResourceExhaustedError)
    assert not isinstance(translated, RemoteServiceError)


class _Client:
    def __init__(self) -> None:
        self.aborted = 0

    def create_multipart_upload(self, **_: Any) -> dict[str, str]:
        return {"UploadId": "u-1"}

    def abort_multipart_upload(self, **_: Any) -> None:
        self.aborted += 1


def test_an_upload_thread_that_cannot_start_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    # issue 8: at 128 MB `RuntimeError: can't start new thread`
    client = _Client()
    writer = S3MultipartWriter(client, "s3://packages/m.zip")  # type: ignore[arg-type]

    def no_thread(*_: Any, **__: Any) -> Any:
        raise RuntimeError(THREAD_START)

    monkeypatch.setattr(writer._pool, "submit", no_thread)
    with pytest.raises(ResourceExhaustedError) as caught:
        writer.write(b"x" * (8 * MiB))
    assert caught.value.resource == "threads"
    assert writer._slots.acquire(blocking=False)  # the slot was given back
    writer._slots.release()
    writer.abort()
    assert client.aborted == 1


class _StarvedSource:
    name = "s3://models/m.tar.gz"

    def size(self) -> int:
        return 10 * MiB

    def open_stream(self) -> Any:
        class Stream(io.RawIOBase):
            def readable(self) -> bool:
                return True

            def readinto(self, _: Any) -> int:
                raise MemoryError

        return io.BufferedReader(Stream())

    open_random_access = open_stream


def test_a_memory_error_while_reading_is_not_called_a_corrupt_archive() -> None:
    # issue 8: `ExtractionError: ... reading failed (MemoryError); the archive is truncated`
    with pytest.raises(ResourceExhaustedError) as caught:
        StreamingExtractor().get_archive_info(_StarvedSource())
    assert caught.value.resource == "memory"


@pytest.mark.parametrize(
    ("failure", "resource"), [(MemoryError(), "memory"), (RuntimeError(THREAD_START), "threads")]
)
def test_a_target_short_of_memory_fails_once_with_the_need(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: Exception, resource: str
) -> None:
    archive = build_archive(tmp_path / "m.tar.gz", FILES, "tar.gz")

    def starved(*_: Any, **__: Any) -> Any:
        raise failure

    monkeypatch.setattr(packaging, "run_stream", starved)
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "3008")
    result = packaging.package_target(
        Target(str(archive), str(tmp_path / "m.zip")),
        HandlerSettings(scratch_dir=str(tmp_path)),
        choice=StrategyChoice.STREAM,
    )
    assert result.status == "failed" and result.attempts == 1  # never retried
    assert result.error is not None and result.error["type"] == "ResourceExhaustedError"
    assert result.error["message"].startswith(f"short of {resource}")
    assert "the work needs about 95.0 MiB, the function has 2.9 GiB" in result.error["message"]
    assert not (tmp_path / "m.zip").exists()


def test_a_lambda_whose_memory_cannot_hold_the_plan_refuses_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = build_archive(tmp_path / "m.tar.gz", FILES, "tar.gz")
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "100")
    monkeypatch.setattr(packaging, "run_stream", pytest.fail)
    result = packaging.package_target(
        Target(str(archive), str(tmp_path / "m.zip")),
        HandlerSettings(scratch_dir=str(tmp_path)),
    )
    assert result.error is not None and result.error["type"] == "ResourceExhaustedError"
    assert "checked before starting" in result.error["message"]
    assert "to at least 128 MB" in result.error["message"]


def test_the_command_line_names_a_memory_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = build_archive(tmp_path / "m.tar.gz", FILES, "tar.gz")

    def starved(*_: Any, **__: Any) -> Any:
        raise MemoryError

    monkeypatch.setattr(packaging, "run_stream", starved)
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", raising=False)
    out, err = io.StringIO(), io.StringIO()
    code = main(["package", str(archive), str(tmp_path / "m.zip")], out=out, err=err)
    assert code == 1
    assert err.getvalue().startswith("error: short of memory (MemoryError; 90.0 MiB baseline")
    assert "the work needs about 95.0 MiB; raise" in err.getvalue()


def test_a_monitor_thread_that_cannot_start_gives_a_response_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from handler.app import lambda_handler, reset_runtime
    from monitor.sidecar import StorageMonitor

    for key, value in {"TMPWARDEN_EMF": "off", "TMPWARDEN_TRACING": "off"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    reset_runtime()

    def no_thread(self: StorageMonitor) -> StorageMonitor:
        raise RuntimeError(THREAD_START)

    monkeypatch.setattr(StorageMonitor, "start", no_thread)
    try:
        response = lambda_handler({"targets": []}, None)
    finally:
        monkeypatch.undo()
        reset_runtime()
    assert response["status"] == "failed"
    assert response["error"]["type"] == "ResourceExhaustedError"
    assert response["error"]["message"].startswith("short of threads")


def test_malloc_arenas_are_capped_unless_the_environment_sets_them() -> None:
    # 256 MiB S3 to S3: peak RSS 210-243 MiB with glibc's default arenas, 178-180 with one
    from handler.memory import limit_malloc_arenas

    assert limit_malloc_arenas(environ={}) is True  # glibc on Linux, as Lambda runs
    assert limit_malloc_arenas(environ={"MALLOC_ARENA_MAX": "4"}) is False
