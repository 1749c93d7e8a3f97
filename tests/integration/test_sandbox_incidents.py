"""The incidents that kill a function, in the local Lambda with the layer's extension
(issue 11, Must show): a handler that allocates until the memory limit, one that fills
/tmp until ENOSPC and one that sleeps past the timeout each leave the extension's
incident record, with the right Classification and the samples of the last seconds,
after the in-process monitor's level-change lines, written before the end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from handler.cli.sandbox import namespace_prefix
from monitor import records as r
from monitor.records import RecordKind
from monitor.units import MiB
from tests.emf_schema import validate_emf_line
from tests.integration.conftest import invoke_sandbox

REPO = Path(__file__).resolve().parents[2]
LAYER_EXTENSIONS = REPO / "deploy" / "layer" / "extensions"
HANDLERS = "tests.integration.sandbox_handlers"
INTERVAL_MS = 50
"""The extension's sample interval here (its default is 500 ms)."""


@pytest.fixture(autouse=True)
def _needs_namespaces() -> None:
    if namespace_prefix() is None:
        pytest.skip("mount namespaces are not permitted here (needs root or user namespaces)")


def run(
    tmp_path: Path, handler: str, event: dict[str, Any], *args: str
) -> tuple[dict[str, Any], str, list[dict[str, Any]]]:
    """The response, stderr and the EMF documents (in the order written) of one
    sandboxed invocation of ``handler`` with the layer's extensions."""
    code, response, stderr, emf_log = invoke_sandbox(
        tmp_path,
        event,
        "--handler",
        f"{HANDLERS}.{handler}",
        "--extensions",
        str(LAYER_EXTENSIONS),
        *args,
        env={"TMPWARDEN_EXTENSION_INTERVAL_MS": str(INTERVAL_MS)},
    )
    documents = [validate_emf_line(line) for line in emf_log.read_text().splitlines()]
    emf_log.unlink()
    assert code == 1, stderr
    platform = next(line for line in stderr.splitlines() if line.startswith("platform:"))
    print(platform)
    assert "tmpwarden-monitor [INVOKE SHUTDOWN] exit 0" in platform  # within the budget
    return response, stderr, documents


def incident_and_before(
    documents: list[dict[str, Any]],
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The one incident record, and the level-change lines written before it."""
    kinds = [d[r.RECORD_KIND] for d in documents]
    assert kinds.count(RecordKind.INCIDENT.value) == 1, kinds
    at = kinds.index(RecordKind.INCIDENT.value)
    before = [d for d in documents[:at] if d[r.RECORD_KIND] == RecordKind.LEVEL_CHANGE.value]
    incident = documents[at]
    offsets = incident[r.LAST_SAMPLES_OFFSETS_MS]
    print(
        f"{incident[r.CLASSIFICATION]}: {incident[r.REASON]}; {len(offsets)} samples over "
        f"the last {(offsets[-1] - offsets[0]) / 1000:.1f} s; level changes before it: "
        f"{[(d[r.RESOURCE], d[r.LEVEL], d[r.LEVEL_PERCENT]) for d in before]}"
    )
    return incident, before


def levels(before: list[dict[str, Any]], resource: str) -> set[str]:
    return {d[r.LEVEL] for d in before if d[r.RESOURCE] == resource}


def test_out_of_memory_the_extension_records_it_after_the_level_changes(tmp_path: Path) -> None:
    response, _, documents = run(
        tmp_path, "allocate_monitored", {"chunk_mib": 4}, "--memory", "512", "--timeout", "20"
    )
    assert response["errorType"] == "Runtime.OutOfMemory"
    incident, before = incident_and_before(documents)
    assert incident[r.CLASSIFICATION] == "out_of_memory"
    assert incident[r.STATUS] == "error" and incident[r.ERROR_TYPE] == "Runtime.OutOfMemory"
    assert incident[r.MAX_MEMORY_USED_MB] == incident[r.MEMORY_SIZE_MB] == 512
    climb = incident[r.LAST_MEMORY_USED_BYTES]  # the runtime's RSS; 0 once it is killed
    top = climb.index(max(climb))
    print(f"the climb: {[round(b / MiB) for b in climb]} MiB")
    assert top >= 4 and climb[: top + 1] == sorted(climb[: top + 1])  # the climb that explains it
    assert climb[top] >= 0.8 * 512 * MiB
    assert levels(before, "memory") == {"warning", "critical"}


def test_tmp_full_the_extension_records_it_after_the_level_changes(tmp_path: Path) -> None:
    response, _, documents = run(
        tmp_path,
        "fill_tmp_monitored",
        {"pause_s": 0.02},
        "--tmp-size",
        "16M",
        "--memory",
        "512",
        "--timeout",
        "20",
    )
    assert response["errorType"] == "OSError" and "No space left" in response["errorMessage"]
    incident, before = incident_and_before(documents)
    assert incident[r.CLASSIFICATION] == "tmp_full"
    assert incident[r.STATUS] == "error"
    used = incident[r.LAST_TMP_USED_BYTES]
    assert len(used) >= 5 and max(used) >= 0.99 * 16 * MiB
    assert levels(before, "tmp") == {"warning", "critical"}


def test_timeout_the_extension_records_it_after_the_level_change(tmp_path: Path) -> None:
    response, _, documents = run(
        tmp_path,
        "fill_then_sleep_monitored",
        {"fill_mib": 14, "seconds": 60},
        "--tmp-size",
        "16M",
        "--memory",
        "512",
        "--timeout",
        "2",
    )
    assert response["errorType"] == "Sandbox.Timedout"
    incident, before = incident_and_before(documents)
    assert incident[r.CLASSIFICATION] == "timeout"
    assert incident[r.STATUS] == "timeout"
    used = incident[r.LAST_TMP_USED_BYTES]
    assert len(used) >= 10 and used[-1] >= 14 * MiB  # the last seconds, /tmp at 87.5%
    assert levels(before, "tmp") == {"warning"}
