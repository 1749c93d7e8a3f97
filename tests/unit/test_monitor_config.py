"""Settings: arguments over TMPWARDEN_* over defaults; bad values fail at start."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from monitor.config import ExtensionConfig, MonitorConfig
from monitor.errors import ConfigurationError
from monitor.sidecar import StorageMonitor
from monitor.units import GiB, MiB
from tests.fakes import FakeSystem


def test_defaults() -> None:
    config = MonitorConfig.resolve(environ={})
    assert (config.path, config.sample_interval, config.flush_interval) == ("/tmp", 0.1, 10.0)
    assert (config.tmp_warning, config.tmp_critical, config.predict_horizon) == (0.8, 0.9, 30.0)
    assert config.namespace == "tmpwarden" and config.function_name == "local"


def test_environment_then_arguments() -> None:
    env = {
        "TMPWARDEN_SAMPLE_INTERVAL_MS": "10",
        "TMPWARDEN_TMP_WARNING": "70%",
        "TMPWARDEN_TMP_CRITICAL": "85",
        "TMPWARDEN_MEMORY_WARNING": "0.6",
        "TMPWARDEN_NAMESPACE": "ml/packaging",
        "TMPWARDEN_ACTIONS": "off",
        "AWS_LAMBDA_FUNCTION_NAME": "packager",
    }
    config = MonitorConfig.resolve({"tmp_critical": 0.95, "path": None}, environ=env)
    assert config.sample_interval == pytest.approx(0.01)
    assert config.tmp_warning == pytest.approx(0.7)
    assert config.tmp_critical == pytest.approx(0.95)  # the argument wins
    assert config.memory_warning == pytest.approx(0.6)
    assert config.namespace == "ml/packaging" and config.actions is False
    assert config.function_name == "packager"


def test_sampling_settings_from_the_environment() -> None:
    config = MonitorConfig.resolve(environ={})
    assert (config.sampling, config.max_sample_interval) == ("headroom", 1.0)
    assert config.worst_fill_rate == config.worst_memory_rate == 1 * GiB
    env = {
        "TMPWARDEN_SAMPLING": "Fixed",
        "TMPWARDEN_MAX_SAMPLE_INTERVAL_MS": "2500",
        "TMPWARDEN_WORST_FILL_RATE": "512MiB/s",
        "TMPWARDEN_WORST_MEMORY_RATE": "64 MiB",
    }
    config = MonitorConfig.resolve(environ=env)
    assert config.sampling == "fixed"
    assert config.max_sample_interval == pytest.approx(2.5)
    assert config.worst_fill_rate == 512 * MiB
    assert config.worst_memory_rate == 64 * MiB
    assert MonitorConfig.resolve(environ={"TMPWARDEN_WORST_FILL_RATE": "1G"}).worst_fill_rate == GiB


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"TMPWARDEN_SAMPLE_INTERVAL_MS": "fast"},
            "TMPWARDEN_SAMPLE_INTERVAL_MS='fast' is not a number",
        ),
        (
            {"TMPWARDEN_TMP_WARNING": "95", "TMPWARDEN_TMP_CRITICAL": "90"},
            "no higher than tmp_critical",
        ),
        ({"TMPWARDEN_TMP_CRITICAL": "150%"}, "tmp_critical=1.5"),
        ({"TMPWARDEN_ACTIONS": "maybe"}, "must be on or off"),
        ({"TMPWARDEN_TRACING": "jaeger"}, "one of auto, otel, xray, on, off"),
        ({"TMPWARDEN_SAMPLE_INTERVAL_MS": "0.1"}, "at least 1 ms"),
        ({"TMPWARDEN_SAMPLING": "sometimes"}, "sampling='sometimes' is invalid; expected one of"),
        ({"TMPWARDEN_MAX_SAMPLE_INTERVAL_MS": "0"}, "max_sample_interval=0.0 is invalid"),
        ({"TMPWARDEN_WORST_FILL_RATE": "fast"}, "TMPWARDEN_WORST_FILL_RATE: 'fast' is not a size"),
        ({"TMPWARDEN_WORST_FILL_RATE": "0"}, "worst_fill_rate=0.0 is invalid"),
        ({"TMPWARDEN_WORST_MEMORY_RATE": "-1G"}, "TMPWARDEN_WORST_MEMORY_RATE: '-1G' is not"),
    ],
)
def test_invalid_settings_name_the_setting(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(").replace("'", "'")):
        MonitorConfig.resolve(environ=env)


def test_an_invalid_setting_fails_when_the_monitor_is_made_not_in_its_thread() -> None:
    fake = FakeSystem()
    with pytest.raises(ConfigurationError, match="hysteresis"):
        StorageMonitor(MonitorConfig.resolve(hysteresis=0.9, environ={}), probe=fake.probe)


def test_a_missing_path_is_a_clear_error(tmp_path: object) -> None:
    with pytest.raises(ConfigurationError, match="cannot watch /nonexistent"):
        StorageMonitor(MonitorConfig.resolve(path="/nonexistent/dir", environ={}), environ={})


def test_memory_limit_comes_from_lambda_size() -> None:
    from monitor.sampler import memory_limit_bytes

    assert memory_limit_bytes({"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "3008"}) == 3008 * 1024 * 1024
    assert memory_limit_bytes({}) > 0
    with pytest.raises(ConfigurationError, match="megabytes"):
        memory_limit_bytes({"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "3GB"})


def test_the_monitor_takes_its_settings_only_as_a_config() -> None:
    """Adding a setting touches MonitorConfig (and template.yaml), not the facade: no
    constructor parameter restates a config field."""
    parameters = inspect.signature(StorageMonitor).parameters
    assert next(iter(parameters)) == "config"
    assert not set(parameters) & {f.name for f in dataclasses.fields(MonitorConfig)}
    with pytest.raises(ConfigurationError, match="takes a MonitorConfig"):
        StorageMonitor("/tmp")  # type: ignore[arg-type]


def test_the_extension_settings_are_read_in_monitor_config() -> None:
    assert ExtensionConfig.from_environ({}) == ExtensionConfig(
        "auto", 0.5, "sandbox.localdomain", 0, None
    )
    env = {
        "TMPWARDEN_SHARED_STATE": " ON ",
        "TMPWARDEN_EXTENSION_INTERVAL_MS": "10",
        "TMPWARDEN_EXTENSION_HOST": "127.0.0.1",
        "TMPWARDEN_EXTENSION_PORT": "9001",
        "TMPWARDEN_RUNTIME_PID": "77",
    }
    assert ExtensionConfig.from_environ(env) == ExtensionConfig("on", 0.01, "127.0.0.1", 9001, 77)
    auto = ExtensionConfig()
    assert auto.shares_state({"AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001"})
    assert not auto.shares_state({})
    assert not ExtensionConfig("off").shares_state({"AWS_LAMBDA_RUNTIME_API": "h:1"})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"TMPWARDEN_SHARED_STATE": "yes"},
            "TMPWARDEN_SHARED_STATE='yes' must be one of auto, on, off",
        ),
        (
            {"TMPWARDEN_EXTENSION_INTERVAL_MS": "5"},
            "TMPWARDEN_EXTENSION_INTERVAL_MS='5' is not a whole number from 10 to 60000",
        ),
        (
            {"TMPWARDEN_EXTENSION_PORT": "-1"},
            "TMPWARDEN_EXTENSION_PORT='-1' is not a whole number from 0 to 65535",
        ),
    ],
)
def test_a_bad_extension_setting_names_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        ExtensionConfig.from_environ(env)
    assert str(caught.value) == message


def test_a_bad_shared_state_setting_fails_when_the_monitor_is_made(tmp_path: object) -> None:
    # before: any unknown value read as auto, silently
    with pytest.raises(ConfigurationError, match="TMPWARDEN_SHARED_STATE='of' must be one of"):
        StorageMonitor(
            MonitorConfig.resolve(path=str(tmp_path), emf=False),
            environ={"TMPWARDEN_SHARED_STATE": "of"},
        )
