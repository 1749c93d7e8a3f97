"""Parts in flight follow the target throughput (issue 10, "Uploads": one per 85 MB/s wanted,
at least 2), the memory plan counts them, and the writer uploads that many at once."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from handler.errors import ConfigurationError
from handler.locations.buffers import plan_memory
from handler.locations.multipart import S3Destination
from handler.locations.throughput import TARGET_ENV, UploadPlan
from handler.memory import BASELINE_BYTES
from handler.settings import HandlerSettings
from monitor.units import MiB


def test_parts_in_flight_follow_the_target_throughput() -> None:
    wanted = {
        mb_s: UploadPlan(mb_s).parts_in_flight
        for mb_s in (1, 75, 170, 171, 255, 256, 341, 375, 1250)
    }
    print(f"MB/s -> parts in flight: {wanted}")
    assert wanted == {1: 4, 75: 4, 170: 4, 171: 4, 255: 4, 256: 4, 341: 5, 375: 5, 1250: 15}
    assert UploadPlan().parts_in_flight == 4  # the default, 75 MB/s (600 Mbps)
    # a function under 256 MB keeps 2 (a third part would not fit a 192 MB function)
    assert UploadPlan(75, memory_mb=192).parts_in_flight == 2
    assert UploadPlan(375, memory_mb=192).parts_in_flight == 5
    assert UploadPlan(75, memory_mb=256).parts_in_flight == 4
    assert UploadPlan.from_env({"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "192"}).parts_in_flight == 2


def test_the_setting_is_read_and_bad_values_are_refused() -> None:
    assert HandlerSettings.from_env({TARGET_ENV: "375"}).upload_plan.parts_in_flight == 5
    assert HandlerSettings.from_env({}).upload_plan == UploadPlan(75)
    for bad in ("fast", "0", "5000"):
        with pytest.raises(ConfigurationError, match=TARGET_ENV):
            UploadPlan.from_env({TARGET_ENV: bad})


def test_the_memory_plan_holds_the_parts_in_flight_plus_three(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    totals = {}
    for mb_s, parts in (("75", 7), ("375", 8), ("1250", 18)):
        monkeypatch.setenv(TARGET_ENV, mb_s)
        plan = plan_memory("s3://m/a.tar.gz", "s3://p/a.zip", 1024 * MiB)
        assert (plan.parts, plan.part_size) == (parts, 8 * MiB)
        totals[mb_s] = plan.total // MiB
    print(f"MB/s -> planned MiB: {totals}")
    monkeypatch.delenv(TARGET_ENV)
    default = plan_memory("s3://m/a.tar.gz", "s3://p/a.zip", 1024 * MiB)
    # the defaults stay inside the 256 MiB peak RSS goal of issue 10
    assert default.total <= BASELINE_BYTES + 7 * 8 * MiB + 64 * MiB <= 256 * MiB


class _SlowClient:
    """UploadPart holds each part until ``expected`` parts are uploading at once (or 2 s
    pass), so the count does not depend on how fast this machine fills parts; counts the
    parts uploading at once."""

    def __init__(self, expected: int) -> None:
        self._ready = threading.Condition()
        self._expected = expected
        self.now = 0
        self.most = 0

    def create_multipart_upload(self, **_: Any) -> dict[str, str]:
        return {"UploadId": "u-1"}

    def upload_part(self, **params: Any) -> dict[str, str]:
        with self._ready:
            self.now += 1
            self.most = max(self.most, self.now)
            self._ready.notify_all()
            self._ready.wait_for(lambda: self.now >= self._expected, timeout=2.0)
        time.sleep(0.01)
        with self._ready:
            self.now -= 1
        return {"ETag": f'"{params["PartNumber"]}"'}

    def abort_multipart_upload(self, **_: Any) -> None:
        pass


@pytest.mark.parametrize(("mb_s", "parts"), [("75", 4), ("375", 5)])
def test_the_writer_uploads_as_many_parts_at_once_as_planned(
    monkeypatch: pytest.MonkeyPatch, mb_s: str, parts: int
) -> None:
    monkeypatch.setenv(TARGET_ENV, mb_s)
    client = _SlowClient(parts)
    writer = S3Destination(client, "s3://p/a.zip").begin()  # type: ignore[arg-type]
    assert writer.parts_in_flight == parts
    chunk = bytes(8 * MiB)
    for _ in range(2 * parts + 1):
        writer.write(chunk)
    writer.abort()
    print(f"{mb_s} MB/s: at most {client.most} parts uploading at once")
    assert client.most == parts
