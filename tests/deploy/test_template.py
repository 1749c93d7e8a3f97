"""template.yaml: what cfn-lint misses on SAM functions, the settings, least privilege, the
fan-out, the build directories; and cfn-lint (and sam validate, where installed) clean."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from deploy.checks import check_all, check_functions, check_settings, load_template
from deploy.problems import Problem
from deploy.sources import REPO_ROOT
from tests.deploy.helpers import replace_once

FUNCTION = "template.yaml: PackagingFunction"


def template_of(root: Path) -> dict[str, Any]:
    _, template, problems = load_template(root)
    assert template is not None, problems
    return template


def real_template() -> dict[str, Any]:
    return template_of(REPO_ROOT)


# --- Lambda's limits, which cfn-lint does not check on AWS::Serverless::Function -----------------


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "MemorySize: 3008",
            "MemorySize: 20000",
            "MemorySize is 20000; Lambda allows 128-10240 MB",
        ),
        ("MemorySize: 3008", "MemorySize: 64", "MemorySize is 64; Lambda allows 128-10240 MB"),
        ("Size: 8192", "Size: 20000", "EphemeralStorage is 20000; Lambda allows 512-10240 MB"),
        ("Timeout: 900", "Timeout: 1000", "Timeout is 1000; Lambda allows 1-900 seconds"),
        (
            "Runtime: python3.12",
            "Runtime: python2.7",
            "Runtime 'python2.7' is not a Lambda runtime tmpwarden supports "
            "(python3.11, python3.12, python3.13, python3.14)",
        ),
    ],
)
def test_a_function_outside_lambdas_limits_is_reported(
    repo: Path, old: str, new: str, message: str
) -> None:
    replace_once(repo / "template.yaml", old, new, after="PackagingFunction:\n")
    assert check_functions(template_of(repo)) == [Problem(FUNCTION, message)]
    assert check_all(repo) == [Problem(FUNCTION, message)]


def test_limits_given_by_a_parameter_are_checked_at_its_default(repo: Path) -> None:
    replace_once(repo / "template.yaml", "MemorySize: 3008", "MemorySize: !Ref MaxAttempts")
    replace_once(repo / "template.yaml", "Default: 3\n", "Default: 12000\n", after="MaxAttempts:")
    assert check_functions(template_of(repo)) == [
        Problem(FUNCTION, "MemorySize is 12000; Lambda allows 128-10240 MB")
    ]


def test_globals_count_for_serverless_functions() -> None:
    template = real_template()
    template["Globals"] = {"Function": {"Timeout": 901}}
    del template["Resources"]["PackagingFunction"]["Properties"]["Timeout"]
    assert check_functions(template) == [
        Problem(FUNCTION, "Timeout is 901; Lambda allows 1-900 seconds")
    ]


def test_a_dashboard_body_that_is_not_json_is_reported() -> None:
    template = real_template()
    template["Resources"]["OperationsDashboard"]["Properties"]["DashboardBody"] = {
        "Fn::Sub": '{"widgets": [}'
    }
    assert check_functions(template) == [
        Problem(
            "template.yaml: OperationsDashboard",
            "DashboardBody is not valid JSON (line 1): Expecting value",
        )
    ]


def test_the_packaging_function_is_as_the_issue_asks() -> None:
    properties = real_template()["Resources"]["PackagingFunction"]["Properties"]
    assert properties["Runtime"] == "python3.12"
    assert properties["Handler"] == "handler.app.lambda_handler"
    assert properties["MemorySize"] == 3008
    assert properties["Timeout"] == 900
    assert properties["EphemeralStorage"] == {"Size": 8192}
    assert properties["Tracing"] == "Active"
    assert properties["AutoPublishAlias"] == "live"
    assert properties["AutoPublishAliasAllProperties"] is True  # flag flips roll out too
    assert properties["Layers"] == [{"Ref": "MonitorLayer"}]


# --- every TMPWARDEN_* setting is a Parameter with the code's default ----------------------------


def test_every_setting_is_fed_by_a_parameter_with_the_codes_default() -> None:
    assert check_settings(real_template()) == []


def test_a_missing_setting_is_reported(repo: Path) -> None:
    replace_once(repo / "template.yaml", "          TMPWARDEN_HYSTERESIS: !Ref Hysteresis\n", "")
    assert check_settings(template_of(repo)) == [
        Problem(FUNCTION, "Environment has no TMPWARDEN_HYSTERESIS; feed it from a Parameter")
    ]


def test_a_setting_written_out_is_reported(repo: Path) -> None:
    replace_once(repo / "template.yaml", "TMPWARDEN_EMF: !Ref MonitorEmf", 'TMPWARDEN_EMF: "on"')
    assert check_settings(template_of(repo)) == [
        Problem(FUNCTION, "TMPWARDEN_EMF is not a Ref to a Parameter")
    ]


def test_a_monitor_default_that_differs_is_reported(repo: Path) -> None:
    replace_once(
        repo / "template.yaml", "Default: 0.8", "Default: 0.85", after="TmpWarningThreshold:"
    )
    assert check_settings(template_of(repo)) == [
        Problem(
            FUNCTION,
            "Parameter TmpWarningThreshold (TMPWARDEN_TMP_WARNING) defaults to '0.85', which the "
            "monitor reads as tmp_warning=0.85; its default is 0.8",
        )
    ]


def test_a_handler_default_that_differs_is_reported(repo: Path) -> None:
    replace_once(
        repo / "template.yaml", "Default: auto", "Default: stream", after="PackagingStrategy:"
    )
    [problem] = check_settings(template_of(repo))
    assert problem.where == FUNCTION
    assert problem.message.startswith(
        "Parameter PackagingStrategy (TMPWARDEN_STRATEGY) defaults to 'stream', which the "
        "handler reads as strategy="
    )


def test_a_setting_nobody_reads_is_reported(repo: Path) -> None:
    replace_once(
        repo / "template.yaml",
        "          TMPWARDEN_EMF: !Ref MonitorEmf\n",
        "          TMPWARDEN_EMF: !Ref MonitorEmf\n          TMPWARDEN_TURBO: !Ref MonitorEmf\n",
    )
    assert check_settings(template_of(repo)) == [
        Problem(FUNCTION, "TMPWARDEN_TURBO is read by neither the monitor nor the handler")
    ]


def test_an_extension_default_that_differs_and_an_emulator_hook_are_reported(
    repo: Path,
) -> None:
    replace_once(
        repo / "template.yaml", "Default: 500", "Default: 250", after="ExtensionIntervalMs:"
    )
    replace_once(
        repo / "template.yaml",
        "          TMPWARDEN_EMF: !Ref MonitorEmf\n",
        "          TMPWARDEN_EMF: !Ref MonitorEmf\n"
        "          TMPWARDEN_EXTENSION_HOST: !Ref MonitorEmf\n",
    )
    assert check_settings(template_of(repo)) == [
        Problem(
            FUNCTION,
            "TMPWARDEN_EXTENSION_HOST is for local emulators; Lambda decides it: remove it",
        ),
        Problem(
            FUNCTION,
            "Parameter ExtensionIntervalMs (TMPWARDEN_EXTENSION_INTERVAL_MS) defaults to '250', "
            "which the extension reads as interval=0.25; its default is 0.5",
        ),
    ]


# --- least privilege -----------------------------------------------------------------------------


def _statements(resource: str) -> list[tuple[str, str, str]]:
    """(Sid, action, resource) for every statement of a SAM resource's inline policies."""
    found = []
    for policy in real_template()["Resources"][resource]["Properties"]["Policies"]:
        for statement in policy["Statement"]:
            assert statement["Effect"] == "Allow"
            actions = statement["Action"]
            for action in [actions] if isinstance(actions, str) else actions:
                target = statement["Resource"]
                text = (
                    target["Fn::Sub"]
                    if isinstance(target, dict) and "Fn::Sub" in target
                    else json.dumps(target)
                )
                found.append((statement["Sid"], action, text))
    return found


def test_the_function_reads_the_source_prefix_and_writes_the_destination_prefix_only() -> None:
    source = "arn:${AWS::Partition}:s3:::${SourceBucket}/${SourcePrefix}*"
    destination = "arn:${AWS::Partition}:s3:::${DestinationBucket}/${DestinationPrefix}*"
    assert sorted(_statements("PackagingFunction")) == sorted(
        [
            ("ReadSourceArchives", "s3:GetObject", source),
            ("ListSourcePrefix", "s3:ListBucket", "arn:${AWS::Partition}:s3:::${SourceBucket}"),
            ("WriteDestinationZips", "s3:PutObject", destination),
            ("WriteDestinationZips", "s3:AbortMultipartUpload", destination),
            ("WriteDestinationZips", "s3:ListMultipartUploadParts", destination),
            ("VerifyDestinationZips", "s3:GetObject", destination),
            # no s3:DeleteObject: the writer never deletes (issue 8: a blind delete after
            # the commit removed another writer's object)
        ]
    )


def test_listing_the_source_bucket_is_limited_to_the_source_prefix() -> None:
    """ListBucket makes S3 answer a missing key with 404 (not 403); only under the prefix."""
    policy = real_template()["Resources"]["PackagingFunction"]["Properties"]["Policies"][0]
    listing = next(s for s in policy["Statement"] if s["Sid"] == "ListSourcePrefix")
    assert listing["Condition"] == {"StringLike": {"s3:prefix": {"Fn::Sub": "${SourcePrefix}*"}}}


def test_the_state_machine_reads_manifests_writes_results_and_runs_itself_only() -> None:
    jobs = "arn:${AWS::Partition}:s3:::${JobsBucket}/"
    states = "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:"
    actions = {(action, target) for _, action, target in _statements("FanOutStateMachine")}
    assert actions == {
        ("lambda:InvokeFunction", '{"Ref": "PackagingFunction.Alias"}'),
        ("s3:GetObject", jobs + "${ManifestPrefix}*"),
        ("s3:PutObject", jobs + "${ResultsPrefix}*"),
        ("s3:GetObject", jobs + "${ResultsPrefix}*"),
        ("s3:ListMultipartUploadParts", jobs + "${ResultsPrefix}*"),
        ("s3:AbortMultipartUpload", jobs + "${ResultsPrefix}*"),
        ("states:StartExecution", states + "stateMachine:${AWS::StackName}-fanout"),
        ("states:DescribeExecution", states + "execution:${AWS::StackName}-fanout/*"),
        ("states:StopExecution", states + "execution:${AWS::StackName}-fanout/*"),
    }
    name = real_template()["Resources"]["FanOutStateMachine"]["Properties"]["Name"]
    assert name == {"Fn::Sub": "${AWS::StackName}-fanout"}


# --- the fan-out's state machine -----------------------------------------------------------------


def _asl() -> dict[str, Any]:
    definition: dict[str, Any] = json.loads(
        (REPO_ROOT / "statemachine" / "fanout.asl.json").read_text(encoding="utf-8")
    )
    return definition


def _walk_states(states: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(the States object it is in, state) for every state, nested ones too."""
    found = []
    for state in states.values():
        found.append((states, state))
        processor = state.get("ItemProcessor")
        if processor:
            assert processor["StartAt"] in processor["States"]
            found += _walk_states(processor["States"])
    return found


def test_the_state_machine_is_well_formed() -> None:
    asl = _asl()
    assert asl["QueryLanguage"] == "JSONata"
    assert asl["StartAt"] in asl["States"]
    for siblings, state in _walk_states(asl["States"]):
        targets = [state.get("Next"), state.get("Default")]
        targets += [choice["Next"] for choice in state.get("Choices", [])]
        for target in filter(None, targets):
            assert target in siblings, target
        if state["Type"] not in ("Choice", "Succeed", "Fail"):
            assert ("Next" in state) != bool(state.get("End")), state


def test_the_state_machine_fans_out_over_json_and_csv_manifests_alike() -> None:
    states = _asl()["States"]
    json_map, csv_map = states["PackageJsonManifest"], states["PackageCsvManifest"]
    assert json_map["ItemReader"]["ReaderConfig"] == {"InputType": "JSON"}
    assert csv_map["ItemReader"]["ReaderConfig"] == {
        "InputType": "CSV",
        "CSVHeaderLocation": "FIRST_ROW",
    }
    without_reader = [
        {key: value for key, value in state.items() if key not in ("ItemReader", "Comment")}
        for state in (json_map, csv_map)
    ]
    assert without_reader[0] == without_reader[1]
    assert json_map["ItemReader"]["Arguments"] == csv_map["ItemReader"]["Arguments"]
    processor = json_map["ItemProcessor"]
    assert processor["ProcessorConfig"] == {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}
    assert "${MaxConcurrency}" in json_map["MaxConcurrency"]
    assert "${ToleratedFailurePercentage}" in json_map["ToleratedFailurePercentage"]
    assert json_map["ResultWriter"]["Resource"] == "arn:aws:states:::s3:putObject"
    assert processor["States"]["Package"]["Arguments"]["FunctionName"] == "${PackagingFunctionArn}"


def test_every_substitution_of_the_state_machine_is_defined_and_used() -> None:
    text = (REPO_ROOT / "statemachine" / "fanout.asl.json").read_text(encoding="utf-8")
    used = set(re.findall(r"\$\{([A-Za-z0-9]+)\}", text))
    properties = real_template()["Resources"]["FanOutStateMachine"]["Properties"]
    assert properties["DefinitionUri"] == "statemachine/fanout.asl.json"
    assert used == set(properties["DefinitionSubstitutions"])


# --- what sam build packages ---------------------------------------------------------------------


LOCAL_ONLY = {"pyyaml"}
"""Dependencies the Lambda does not need (pyyaml: the local sandbox reads template.yaml)."""


def _name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9_.-]+", requirement)
    assert match is not None, requirement
    return match[0].lower()


def _requirements(path: Path) -> set[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return {line.replace(" ", "") for line in lines if line.strip() and not line.startswith("#")}


def test_the_build_directories_hold_the_code_and_the_projects_dependencies() -> None:
    deploy = REPO_ROOT / "deploy"
    assert (deploy / "function" / "handler").resolve() == REPO_ROOT / "handler"
    # the layer links monitor/'s modules one by one, leaving out report/ (test_layer.py)
    monitor = REPO_ROOT / "monitor"
    assert (deploy / "layer" / "monitor" / "__init__.py").resolve() == monitor / "__init__.py"
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = {item.replace(" ", "") for item in project["dependencies"]}
    function = _requirements(deploy / "function" / "requirements.txt")
    layer = _requirements(deploy / "layer" / "requirements.txt")
    deployed = {item for item in declared if _name(item) not in LOCAL_ONLY}
    assert function | layer == deployed
    assert not function & layer


# --- the linters ---------------------------------------------------------------------------------


def _tool(name: str) -> str | None:
    beside = Path(sys.executable).with_name(name)
    return str(beside) if beside.exists() else shutil.which(name)


def test_cfn_lint_finds_nothing() -> None:
    cfn_lint = _tool("cfn-lint")
    assert cfn_lint is not None, "cfn-lint is a dev dependency (pip install -e '.[dev]')"
    result = subprocess.run(
        [cfn_lint, "template.yaml"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


SAM_CANDIDATES = (REPO_ROOT / ".venv-sam" / "bin" / "sam",)


def test_sam_validate_lint_finds_nothing() -> None:
    sam = next((str(path) for path in SAM_CANDIDATES if path.exists()), None) or shutil.which("sam")
    if sam is None:
        pytest.skip("sam (aws-sam-cli) is not installed here (.venv-sam/bin/sam or on PATH)")
    environment = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1", "SAM_CLI_TELEMETRY": "0"}
    result = subprocess.run(
        [sam, "validate", "--lint", "-t", "template.yaml"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=environment,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
