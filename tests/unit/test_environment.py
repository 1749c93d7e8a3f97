"""Lambda or a Lambda Managed Instance: what the monitor detects, what each figure covers,
the memory share each process watches, and the request's own growth of /tmp."""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from monitor import monitored
from monitor import records as r
from monitor.attribution import TmpAttribution, held_bytes
from monitor.emf import MemorySink
from monitor.environment import (
    INITIALIZATION_TYPE_ENV,
    MAX_CONCURRENCY_ENV,
    MIN_PROCESS_MEMORY_BUDGET,
    ExecutionEnvironment,
    ExecutionModel,
)
from monitor.errors import ConfigurationError
from monitor.metrics import (
    MEMORY_USED_PERCENT,
    METRIC_SCOPES,
    PEAK_TMP_ATTRIBUTED_BYTES,
    REGISTRY,
    TMP_ATTRIBUTED_BYTES,
    Level,
    Scope,
)
from monitor.records import RecordKind
from monitor.sampler import LAMBDA_MEMORY_ENV, memory_limit_bytes
from tests.fakes import MIB, FakeSystem

MANAGED = {
    INITIALIZATION_TYPE_ENV: "lambda-managed-instances",
    MAX_CONCURRENCY_ENV: "4",
    LAMBDA_MEMORY_ENV: "2048",
}


def test_lambda_is_one_process_with_the_whole_memory() -> None:
    found = ExecutionEnvironment.detect({INITIALIZATION_TYPE_ENV: "on-demand"}, 1024 * MIB)
    assert (found.model, found.processes, found.shared) == (ExecutionModel.LAMBDA, 1, False)
    assert found.process_memory_budget == 1024 * MIB
    assert found.properties[r.PROCESS_ID] == os.getpid()


@pytest.mark.parametrize(
    "environ",
    [MANAGED, {MAX_CONCURRENCY_ENV: "4", LAMBDA_MEMORY_ENV: "2048"}],
    ids=["initialization type", "max concurrency alone"],
)
def test_a_managed_instance_shares_its_memory_among_its_processes(
    environ: dict[str, str],
) -> None:
    found = ExecutionEnvironment.detect(environ)
    assert (found.model, found.processes, found.shared) == ("managed-instances", 4, True)
    assert found.properties == {
        r.PROCESS_ID: os.getpid(),
        r.EXECUTION_MODEL: "managed-instances",
        r.ENVIRONMENT_PROCESSES: 4,
        r.MEMORY_LIMIT_BYTES: 2048 * MIB,
        r.PROCESS_MEMORY_BUDGET_BYTES: 512 * MIB,
        r.MEMORY_SCOPE: "process",
        r.TMP_SCOPE: "environment",
    }


def test_an_unknown_process_count_keeps_the_whole_memory_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, "tmpwarden.monitor"):
        found = ExecutionEnvironment.detect({INITIALIZATION_TYPE_ENV: "lambda-managed-instances"})
    assert found.processes is None and found.shared
    assert found.properties[r.ENVIRONMENT_PROCESSES] is None
    assert found.process_memory_budget == found.memory_limit
    assert MAX_CONCURRENCY_ENV in caplog.text


@pytest.mark.parametrize(
    "value", ["0", "-2", "four", "2.5", "1_000", "+4", "\u0664", "1601", str(10**12)]
)
def test_a_bad_max_concurrency_is_one_clear_error(value: str) -> None:
    """Review2 item 9: 10**12 processes gave each a budget of 0 bytes and a
    ZeroDivisionError in the sampling path; Lambda's PerExecutionEnvironmentMaxConcurrency
    is 1 to 1600, and int()'s extras ("1_000", "+4", Arabic-Indic digits) are not Lambda's."""
    named = re.escape(f"{MAX_CONCURRENCY_ENV}='{value}'")
    with pytest.raises(ConfigurationError, match=named + ".* 1600"):
        ExecutionEnvironment.detect({MAX_CONCURRENCY_ENV: value}, 1024 * MIB)


def test_the_largest_max_concurrency_lambda_allows_still_gives_each_process_a_mebibyte() -> None:
    """1600 processes on the smallest Managed Instance memory (2048 MB): 1.28 MiB each."""
    found = ExecutionEnvironment.detect({MAX_CONCURRENCY_ENV: "1600", LAMBDA_MEMORY_ENV: "2048"})
    assert (found.processes, found.process_memory_budget) == (1600, 2048 * MIB // 1600)
    assert found.process_memory_budget >= MIN_PROCESS_MEMORY_BUDGET
    with pytest.raises(ConfigurationError, match="less than 1024 KiB; give the function more"):
        ExecutionEnvironment.detect({MAX_CONCURRENCY_ENV: "1600", LAMBDA_MEMORY_ENV: "128"})
    with pytest.raises(ConfigurationError, match="memory_limit=-1 is negative"):
        ExecutionEnvironment.detect({}, -1)


@pytest.mark.parametrize("blank", ["", "  "])
def test_an_empty_max_concurrency_on_demand_is_lambda_without_a_warning(
    blank: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Review2 item 17: set but empty is unset, not a Managed Instance of unknown size."""
    on_demand = {INITIALIZATION_TYPE_ENV: "on-demand", MAX_CONCURRENCY_ENV: blank}
    with caplog.at_level(logging.WARNING, "tmpwarden.monitor"):
        found = ExecutionEnvironment.detect(on_demand, 1024 * MIB)
        assert ExecutionEnvironment.detect({MAX_CONCURRENCY_ENV: blank}, MIB).model == "lambda"
    assert (found.model, found.processes, found.shared) == (ExecutionModel.LAMBDA, 1, False)
    assert found.process_memory_budget == 1024 * MIB
    assert not caplog.records
    managed = {INITIALIZATION_TYPE_ENV: "lambda-managed-instances", MAX_CONCURRENCY_ENV: blank}
    found = ExecutionEnvironment.detect(managed, 1024 * MIB)
    assert (found.model, found.processes) == (ExecutionModel.MANAGED_INSTANCES, None)


@pytest.mark.parametrize("blank", ["", " "])
def test_an_empty_function_memory_size_is_an_unset_one(blank: str) -> None:
    """The same kind in AWS_LAMBDA_FUNCTION_MEMORY_SIZE: blank was 'not a whole number'."""
    assert memory_limit_bytes({LAMBDA_MEMORY_ENV: blank}) == memory_limit_bytes({})


@pytest.mark.parametrize("value", ["0", "-5", "1_024", "+128", "128MB"])
def test_a_function_memory_size_lambda_could_not_set_is_one_clear_error(value: str) -> None:
    """0 and -5 were silently replaced by the cgroup's or the machine's memory."""
    named = re.escape(f"{LAMBDA_MEMORY_ENV}='{value}' is not a positive whole number")
    with pytest.raises(ConfigurationError, match=named):
        memory_limit_bytes({LAMBDA_MEMORY_ENV: value})


def test_a_zero_memory_budget_never_breaks_sampling(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever its cause (an environment made by hand here), a budget of 0 bytes is no
    limit known: samples, level changes, the invocation and its EMF all still come out,
    with memory at 0% rather than a ZeroDivisionError on the sampling path."""
    zero = ExecutionEnvironment(ExecutionModel.MANAGED_INSTANCES, 1000, 1600, os.getpid())
    assert zero.process_memory_budget == 0
    monkeypatch.setattr(ExecutionEnvironment, "detect", classmethod(lambda cls, *a: zero))
    for sampling in ("headroom", "fixed"):
        sink, fake = MemorySink(), FakeSystem(rss=50 * MIB)
        monitor = fake.monitor(sink, sampling=sampling)
        assert monitor.memory_limit == 0
        monitor.begin_invocation("req-1")
        fake.fill_fraction(0.95)  # a /tmp level change on the same path
        monitor.sample_now()
        record = monitor.end_invocation()
        assert monitor.level("memory") is Level.OK
        assert record.peaks.memory_fraction == 0.0
        docs = [json.loads(line) for line in sink.lines]
        kinds = {d[r.RECORD_KIND] for d in docs}
        assert {RecordKind.SAMPLES, RecordKind.INVOCATION, RecordKind.LEVEL_CHANGE} <= kinds
        for samples in [d for d in docs if d[r.RECORD_KIND] == RecordKind.SAMPLES]:
            percent = samples[MEMORY_USED_PERCENT]
            assert set(percent if isinstance(percent, list) else [percent]) == {0.0}


def test_every_metric_has_a_scope_that_matches_its_resource() -> None:
    assert set(METRIC_SCOPES) == set(REGISTRY)
    for name, scope in METRIC_SCOPES.items():
        if "Attributed" in name:
            assert scope is Scope.REQUEST, name
        elif name.startswith(("Tmp", "PeakTmp")):
            assert scope is Scope.ENVIRONMENT, name
        if name.startswith(("Memory", "PeakMemory")):
            assert scope is Scope.PROCESS, name
    assert {METRIC_SCOPES[TMP_ATTRIBUTED_BYTES], METRIC_SCOPES[PEAK_TMP_ATTRIBUTED_BYTES]} == {
        Scope.REQUEST
    }


def test_memory_thresholds_are_of_the_process_share_on_a_managed_instance() -> None:
    """Four processes at 30% of the environment's memory each would be killed at 120%:
    each is critical at 120% of its share, while alone on Lambda it is fine."""
    levels = {}
    for name, environ in (("lambda", {}), ("managed", {MAX_CONCURRENCY_ENV: "4"})):
        fake = FakeSystem(rss=30 * MIB)
        monitor = fake.monitor(environ=environ, memory_limit=100 * MIB)
        monitor.sample_now()
        levels[name] = monitor.level("memory")
        assert monitor.latest is not None
        if name == "managed":
            assert monitor.memory_limit == 25 * MIB
            assert monitor.latest.memory_fraction == pytest.approx(1.2)
    assert levels == {"lambda": Level.OK, "managed": Level.CRITICAL}


def test_every_record_states_the_scopes_and_the_environment_limit() -> None:
    sink = MemorySink()
    monitor = FakeSystem().monitor(sink, environ={MAX_CONCURRENCY_ENV: "2"})
    monitor.begin_invocation("req-1")
    monitor.end_invocation()
    docs = [json.loads(line) for line in sink.lines]
    kinds = {RecordKind.SAMPLES, RecordKind.INVOCATION}
    stated = [d for d in docs if d[r.RECORD_KIND] in kinds]
    assert {d[r.RECORD_KIND] for d in stated} == kinds
    for doc in stated:
        assert doc[r.MEMORY_LIMIT_BYTES] == 100 * MIB  # the environment's, not the share
        assert doc[r.PROCESS_MEMORY_BUDGET_BYTES] == 50 * MIB
        assert (doc[r.MEMORY_SCOPE], doc[r.TMP_SCOPE]) == ("process", "environment")


# -- /tmp attributed to the request ---------------------------------------------------


def test_held_bytes_counts_files_under_the_paths_and_open_ones_once(tmp_path: Path) -> None:
    already_open = held_bytes([], tmp_path)  # what earlier tests in this process hold open
    scratch = tmp_path / "scratch"
    (scratch / "deep").mkdir(parents=True)
    (scratch / "a.bin").write_bytes(b"a" * 5000)  # two pages
    (scratch / "deep" / "b.bin").write_bytes(b"b")  # one page
    os.link(scratch / "a.bin", scratch / "a-again.bin")  # the same inode: once
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"o" * 100_000)
    (scratch / "link").symlink_to(outside)  # not followed
    expected = sum(p.stat().st_blocks * 512 for p in (scratch / "a.bin", scratch / "deep/b.bin"))
    assert held_bytes([scratch, tmp_path / "missing"], tmp_path) - already_open == expected
    with (tmp_path / "open.bin").open("wb") as held:  # open and unlinked: still held
        held.write(b"h" * 9000)
        held.flush()
        (tmp_path / "open.bin").unlink()
        grown = held_bytes([scratch], tmp_path) - already_open - expected
        assert grown == os.fstat(held.fileno()).st_blocks * 512 >= 9000


def test_growth_is_what_the_request_added_or_freed(tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (scratch / "before.bin").write_bytes(b"x" * 8192)
    attribution = TmpAttribution(tmp_path, lambda: [scratch])
    attribution.begin()
    (scratch / "new.bin").write_bytes(b"y" * 4096)
    assert attribution.growth() == (scratch / "new.bin").stat().st_blocks * 512
    (scratch / "new.bin").unlink()
    (scratch / "before.bin").unlink()
    assert attribution.growth() < 0


def _invocation(environ: dict[str, str], scratch: Path) -> dict[str, Any]:
    sink = MemorySink()
    monitor = FakeSystem().monitor(sink, environ=environ, path=str(scratch.parent))

    @monitored(monitor)
    def handler(event: object, context: object) -> None:
        monitor.register_cleanup(scratch).mkdir()
        (scratch / "out.bin").write_bytes(b"z" * 10_000)

    handler({}, SimpleNamespace(aws_request_id="req-1"))
    docs = [json.loads(line) for line in sink.lines]
    [invocation] = [d for d in docs if d[r.RECORD_KIND] == RecordKind.INVOCATION]
    assert isinstance(invocation, dict)
    return invocation


def test_the_decorator_attributes_tmp_on_a_managed_instance_only(tmp_path: Path) -> None:
    managed = _invocation({MAX_CONCURRENCY_ENV: "4"}, tmp_path / "managed")
    written = (tmp_path / "managed/out.bin").stat().st_blocks * 512
    assert managed[TMP_ATTRIBUTED_BYTES] == managed[PEAK_TMP_ATTRIBUTED_BYTES] == written
    on_lambda = _invocation({}, tmp_path / "lambda")
    assert TMP_ATTRIBUTED_BYTES not in on_lambda and PEAK_TMP_ATTRIBUTED_BYTES not in on_lambda


def test_what_a_request_held_when_the_shared_tmp_crossed_is_kept_after_it_cleans_up(
    tmp_path: Path,
) -> None:
    """The request that filled the shared /tmp cleans its scratch before it ends (as
    tmpwarden's handler does on a failure): its growth start to end is 0, but at the
    warning crossing it held what it wrote, and the record says so."""
    sink, fake = MemorySink(), FakeSystem()
    monitor = fake.monitor(sink, environ={MAX_CONCURRENCY_ENV: "4"}, path=str(tmp_path))
    scratch = tmp_path / "scratch"

    @monitored(monitor)
    def handler(event: object, context: object) -> None:
        monitor.register_cleanup(scratch).mkdir()
        (scratch / "part.bin").write_bytes(b"p" * 300_000)
        fake.fill_fraction(0.85)  # the environment's /tmp, all processes' files
        monitor.sample_now()
        assert monitor.drain_callbacks()
        shutil.rmtree(scratch)

    handler({}, SimpleNamespace(aws_request_id="req-1"))
    docs = [json.loads(line) for line in sink.lines]
    [invocation] = [d for d in docs if d[r.RECORD_KIND] == RecordKind.INVOCATION]
    assert invocation[TMP_ATTRIBUTED_BYTES] == 0
    assert invocation[PEAK_TMP_ATTRIBUTED_BYTES] == math.ceil(300_000 / 4096) * 4096
    runs = [run["name"] for run in invocation[r.CALLBACKS]]
    assert runs == ["attribute_tmp_to_request"]
