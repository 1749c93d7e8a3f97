"""In a simulated Lambda: X-Ray subsegments over UDP on 127.0.0.1, and Powertools beside us."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.emf_schema import is_emf, validate_emf_line
from tests.helpers import python_env

TRACE_ROOT = "1-5759e988-bd862e3fe1be46a994272793"
FACADE_PARENT = "53995c3f42cd8ad8"


class XRayListener:
    """A UDP socket on 127.0.0.1 that collects the X-Ray SDK's documents."""

    def __init__(self) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.settimeout(0.2)
        self.documents: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        host, port = self.socket.getsockname()
        return f"{host}:{port}"

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.socket.recv(65536)
            except TimeoutError:
                continue
            header, _, body = data.decode().partition("\n")
            assert json.loads(header) == {"format": "json", "version": 1}
            self.documents.append(json.loads(body))

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.socket.close()


@pytest.fixture
def xray() -> Iterator[XRayListener]:
    listener = XRayListener()
    yield listener
    listener.close()


def run_child(scenario: str, scratch: Path, xray: XRayListener) -> list[str]:
    env = python_env() | {
        "LAMBDA_TASK_ROOT": str(scratch),
        "_X_AMZN_TRACE_ID": f"Root={TRACE_ROOT};Parent={FACADE_PARENT};Sampled=1",
        "AWS_XRAY_DAEMON_ADDRESS": xray.address,
        "AWS_LAMBDA_FUNCTION_NAME": "packager",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "3008",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EMF_ENVIRONMENT": "Lambda",
        "POWERTOOLS_DEV": "false",
    }
    result = subprocess.run(
        [sys.executable, "-m", "tests.integration.lambda_child", scenario, str(scratch)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1].startswith("RESULT ")
    assert json.loads(lines[-1].removeprefix("RESULT ")) == {"status": "succeeded"}
    return lines[:-1]


def _wait_for(xray: XRayListener, names: set[str]) -> dict[str, dict[str, Any]]:
    import time

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        found = {d["name"]: d for d in xray.documents}
        if names <= set(found):
            return found
        time.sleep(0.05)
    raise AssertionError(f"missing subsegments {names - {d['name'] for d in xray.documents}}")


def test_phase_subsegments_reach_the_daemon_under_the_facade_segment(
    tmp_path: Path, xray: XRayListener
) -> None:
    run_child("plain", tmp_path, xray)
    found = _wait_for(xray, {"tmpwarden.download", "tmpwarden.extract"})
    download = found["tmpwarden.download"]
    assert download["type"] == "subsegment"
    assert download["trace_id"] == TRACE_ROOT
    assert download["parent_id"] == FACADE_PARENT
    assert download["annotations"]["phase"] == "download"
    assert download["annotations"]["peak_tmp_bytes"] > 0
    assert download["annotations"]["peak_rss_bytes"] > 0
    storage = download["metadata"]["tmpwarden"]
    assert storage["storage_end"]["used_space"] >= storage["storage_start"]["used_space"]
    assert set(storage["storage_start"]) >= {"total_space", "available_space", "memory_used"}


def test_beside_powertools_every_emf_line_is_valid_and_phases_nest_in_its_handler(
    tmp_path: Path, xray: XRayListener
) -> None:
    lines = run_child("powertools", tmp_path, xray)
    emf = [line for line in lines if is_emf(line)]
    documents = [validate_emf_line(line) for line in emf]
    namespaces = {d["_aws"]["CloudWatchMetrics"][0]["Namespace"] for d in documents}
    assert namespaces == {"tmpwarden", "ml-platform"}
    powertools_metrics = [d for d in documents if "ModelsPackaged" in d]
    assert len(powertools_metrics) == 1
    ours = [d for d in documents if "TmpwardenRecord" in d]
    assert {d["TmpwardenRecord"] for d in ours} == {"samples", "invocation", "phase"}
    assert all("ModelsPackaged" not in d for d in ours)  # separate documents, not merged
    # Powertools' own log lines are JSON too, one object per line
    logs = [json.loads(line) for line in lines if not is_emf(line)]
    assert [entry["message"] for entry in logs] == ["packaging started", "packaging finished"]

    found = _wait_for(xray, {"## handler", "tmpwarden.download", "tmpwarden.extract"})
    handler_id = found["## handler"]["id"]
    assert found["tmpwarden.download"]["parent_id"] == handler_id
    assert found["tmpwarden.extract"]["parent_id"] == handler_id
