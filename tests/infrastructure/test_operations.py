"""What template.yaml promises an operator, checked for every function, including ones added later: the database
connection budget holds, every asynchronous invocation ends somewhere when it fails, every function and dead
letter queue has an alarm that reaches the alarm topic, logs are KMS-encrypted, and checkov finds nothing that is
not fixed or skipped with a reason. docs/deploy.md ("Adding a function") says what a new function declares."""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

import pytest

from devserver.template import load_template
from tests.infrastructure.cfn import REPO, Template, as_list, branches

AURORA_POSTGRES_MAX_CONNECTIONS = {1: 189, 4: 823, 8: 1669, 16: 3360, 32: 5000, 64: 5000, 128: 5000, 256: 5000}
"""Default max_connections of Aurora PostgreSQL Serverless v2 by maximum ACU (AWS Aurora user guide, "Maximum
connections for Aurora Serverless v2"); a minimum of 0.5 ACU caps it at 2,000."""
BUDGET_SHARE = 0.6
"""The stack may plan for at most this share of max_connections: the rest is headroom for migrations during a
deploy, RDS's own sessions, an operator's psql, and instances Lambda is still tearing down."""
ASYNC_EVENT_TYPES = {"Schedule", "ScheduleV2", "EventBridgeRule", "CloudWatchEvent", "SNS", "S3"}
SYNC_EVENT_TYPES = {"HttpApi", "Api"}

_TEMPLATE = Template(load_template())
_FUNCTIONS = sorted(_TEMPLATE.functions)


def default_of(template: Template, value: Any) -> Any:
    """A literal, or the default of the parameter a ``Ref`` names."""
    if isinstance(value, dict) and set(value) == {"Ref"}:
        return template.parameters[value["Ref"]]["Default"]
    return value


def connections_per_instance(template: Template, function: str) -> int:
    declared = template.functions[function].get("Metadata", {}).get("connvault", {}).get("DatabaseConnections")
    assert isinstance(declared, int), f"{function} declares no Metadata.connvault.DatabaseConnections"
    return declared


def max_instances(template: Template, function: str) -> int:
    reserved = template.functions[function]["Properties"].get("ReservedConcurrentExecutions")
    assert reserved is not None, f"{function} has no ReservedConcurrentExecutions: its connections are unbounded"
    return int(default_of(template, reserved))


def checkov_skips(resource: dict[str, Any]) -> dict[str, str]:
    skips = resource.get("Metadata", {}).get("checkov", {}).get("skip", [])
    return {skip["id"]: skip.get("comment", "") for skip in skips}


def alarms(template: Template) -> dict[str, dict[str, Any]]:
    return {name: res["Properties"] for name, res in template.of_type("AWS::CloudWatch::Alarm").items()}


def alarm_metrics(properties: dict[str, Any]) -> list[dict[str, Any]]:
    """(Namespace, MetricName, Dimensions) of an alarm, whether on one metric or on metric math."""
    if "MetricName" in properties:
        return [properties]
    return [query["MetricStat"]["Metric"] for query in properties["Metrics"] if "MetricStat" in query]


# -- connection budget ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("function", _FUNCTIONS)
def test_each_function_bounds_its_instances_and_their_connections(template: Template, function: str) -> None:
    per_instance = connections_per_instance(template, function)
    assert max_instances(template, function) >= 1
    env = template.environment(function)
    pool = int(env["CONNVAULT_DB_POOL_SIZE"]) + int(env["CONNVAULT_DB_MAX_OVERFLOW"])
    # The session pool can never open more than pool_size + max_overflow; the declaration covers it, unless the
    # function declares that it never opens a session.
    if template.functions[function]["Metadata"]["connvault"].get("SessionPool", True):
        assert pool <= per_instance, f"{function}: a pool of {pool} but {per_instance} connections declared"
    threads = int(env.get("CONNVAULT_REFRESH_CONCURRENCY", "0"))
    assert threads < pool or threads == 0, f"{function}: {threads} refresh threads need a pool above that"


def test_the_connection_budget_fits_the_default_database_with_headroom(template: Template) -> None:
    max_acu = int(template.parameters["DatabaseMaxCapacity"]["Default"])
    max_connections = AURORA_POSTGRES_MAX_CONNECTIONS[max_acu]
    budget = {
        function: max_instances(template, function) * connections_per_instance(template, function)
        for function in template.functions
    }
    assert sum(budget.values()) <= BUDGET_SHARE * max_connections, budget
    # docs/deploy.md shows the same arithmetic
    text = (REPO / "docs" / "deploy.md").read_text(encoding="utf-8")
    assert f"**{sum(budget.values())}**" in text, "docs/deploy.md's connection budget is out of date"
    assert f"{max_connections}" in text


def test_the_database_connections_alarm_sits_between_the_budget_and_max_connections(template: Template) -> None:
    max_connections = AURORA_POSTGRES_MAX_CONNECTIONS[int(template.parameters["DatabaseMaxCapacity"]["Default"])]
    budget = sum(max_instances(template, f) * connections_per_instance(template, f) for f in template.functions)
    threshold = default_of(template, alarms(template)["DatabaseConnectionsAlarm"]["Threshold"])
    assert budget < threshold < max_connections


def test_the_refresh_worker_may_not_outrun_its_reserved_concurrency(template: Template) -> None:
    (event,) = template.functions["RefreshWorkerFunction"]["Properties"]["Events"].values()
    scaling = event["Properties"]["ScalingConfig"]["MaximumConcurrency"]
    reserved = template.functions["RefreshWorkerFunction"]["Properties"]["ReservedConcurrentExecutions"]
    assert scaling == reserved == {"Ref": "RefreshWorkerMaxConcurrency"}


# -- failed invocations end somewhere ----------------------------------------------------------------------------


def _invoked_by_custom_resource(template: Template, function: str) -> bool:
    return any(
        res.get("Properties", {}).get("ServiceToken") == {"Fn::GetAtt": [function, "Arn"]}
        for res in template.resources.values()
        if str(res["Type"]).startswith("Custom::") or res["Type"] == "AWS::CloudFormation::CustomResource"
    )


def _is_the_authorizer(template: Template, function: str) -> bool:
    auth = template.resources["HttpApi"]["Properties"]["Auth"]["Authorizers"]
    return any(a["FunctionArn"] == {"Fn::GetAtt": [function, "Arn"]} for a in auth.values())


@pytest.mark.parametrize("function", _FUNCTIONS)
def test_every_asynchronous_invocation_has_a_place_to_fail_to(template: Template, function: str) -> None:
    properties = template.functions[function]["Properties"]
    events = list(properties.get("Events", {}).values())
    kinds = {event["Type"] for event in events}
    asynchronous = bool(kinds & ASYNC_EVENT_TYPES) or _invoked_by_custom_resource(template, function)
    if asynchronous:
        # Lambda's own retries are decided, and what fails for good is kept
        assert "MaximumRetryAttempts" in properties.get("EventInvokeConfig", {}), function
        assert properties.get("DeadLetterQueue", {}).get("Type") == "SQS", f"{function} has no DeadLetterQueue"
        for event in events:
            if event["Type"] in ASYNC_EVENT_TYPES:
                assert "DeadLetterConfig" in event["Properties"], f"{function}: an undeliverable event is lost"
    for event in events:
        if event["Type"] == "SQS":
            queue = event["Properties"]["Queue"]["Fn::GetAtt"][0]
            assert "RedrivePolicy" in template.resources[queue]["Properties"], f"{queue} has no dead-letter queue"
    if not asynchronous:
        assert kinds <= SYNC_EVENT_TYPES | {"SQS"}, f"{function}: {kinds - SYNC_EVENT_TYPES} is asynchronous?"
        assert events or _is_the_authorizer(template, function), f"{function} is invoked by nothing"
        assert "CKV_AWS_116" in checkov_skips(template.functions[function]), function


# -- alarms ---------------------------------------------------------------------------------------------------------


def _topic(template: Template) -> dict[str, Any]:
    return {"Fn::If": ["CreateAlarmTopic", {"Ref": "AlarmTopic"}, {"Ref": "AlarmTopicArn"}]}


def test_every_alarm_notifies_the_alarm_topic_when_it_fires_and_when_it_clears(template: Template) -> None:
    assert template.parameters["AlarmTopicArn"]["Default"] == ""
    assert template.resources["AlarmTopic"]["Condition"] == "CreateAlarmTopic"
    assert template.resources["AlarmTopic"]["Properties"]["KmsMasterKeyId"] == {"Fn::GetAtt": ["OperationsKey", "Arn"]}
    found = alarms(template)
    assert found
    for name, properties in found.items():
        assert properties["AlarmActions"] == [_topic(template)], name
        assert properties["OKActions"] == [_topic(template)], name
        assert properties["TreatMissingData"] == "notBreaching", name
        assert properties["AlarmDescription"].strip(), name


@pytest.mark.parametrize("function", _FUNCTIONS)
def test_every_function_has_a_throttles_alarm(template: Template, function: str) -> None:
    watching = [
        name
        for name, properties in alarms(template).items()
        for metric in alarm_metrics(properties)
        if metric["MetricName"] == "Throttles"
        and {"Name": "FunctionName", "Value": {"Ref": function}} in metric["Dimensions"]
    ]
    assert watching, f"no alarm watches {function}'s throttles"
    condition = template.functions[function].get("Condition")
    assert all(template.resources[name].get("Condition") == condition for name in watching), function


def test_every_dead_letter_queue_has_a_depth_alarm(template: Template) -> None:
    dead_letter_queues = {
        queue["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
        for queue in template.of_type("AWS::SQS::Queue").values()
        if "RedrivePolicy" in queue.get("Properties", {})
    }
    for function in template.functions.values():
        target = function["Properties"].get("DeadLetterQueue", {}).get("TargetArn")
        if target:
            dead_letter_queues.add(target["Fn::GetAtt"][0])
    assert dead_letter_queues == {"RefreshDeadLetterQueue", "FailedInvocationsQueue"}
    watched = {
        dimension["Value"]["Fn::GetAtt"][0]
        for properties in alarms(template).values()
        for metric in alarm_metrics(properties)
        if metric["MetricName"] == "ApproximateNumberOfMessagesVisible"
        for dimension in metric["Dimensions"]
    }
    assert dead_letter_queues <= watched


@pytest.mark.parametrize(
    ("namespace", "metric"),
    [
        ("connvault", "RefreshPermanentFailure"),
        ("connvault", "RefreshTransientFailure"),
        ("connvault", "RefreshDueBacklog"),
        ("connvault", "DatabaseUnavailable"),
        ("AWS/ApiGateway", "5xx"),
        ("AWS/ApiGateway", "Latency"),
        ("AWS/RDS", "DatabaseConnections"),
    ],
)
def test_the_operators_alarms_exist(template: Template, namespace: str, metric: str) -> None:
    assert any(
        found["Namespace"] == namespace and found["MetricName"] == metric
        for properties in alarms(template).values()
        for found in alarm_metrics(properties)
    ), f"no alarm on {namespace} {metric}"


def test_the_emf_alarms_use_the_namespace_and_service_the_functions_publish(template: Template) -> None:
    env = template.environment("ApiFunction")
    for properties in alarms(template).values():
        for metric in alarm_metrics(properties):
            if metric["Namespace"] not in ("AWS/ApiGateway", "AWS/Lambda", "AWS/SQS", "AWS/RDS"):
                assert metric["Namespace"] == env["POWERTOOLS_METRICS_NAMESPACE"]
                assert metric["Dimensions"] == [{"Name": "service", "Value": env["POWERTOOLS_SERVICE_NAME"]}]


def test_the_dashboard_shows_every_function_and_queue(template: Template) -> None:
    body = template.resources["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    text, variables = body
    json.loads(re.sub(r"\$\{[^}]+\}", "x", text))  # valid JSON once substituted
    for function in template.functions:
        assert f"${{{function}}}" in text or any(
            {"Ref": function} in list(branches(value)) for value in variables.values()
        ), f"the dashboard does not show {function}"
    assert "${FailedInvocationsQueue.QueueName}" in text


# -- encryption -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("function", _FUNCTIONS)
def test_each_function_logs_to_its_own_encrypted_log_group_with_retention(template: Template, function: str) -> None:
    group = template.functions[function]["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
    properties = template.resources[group]["Properties"]
    assert properties["KmsKeyId"] == {"Fn::GetAtt": ["OperationsKey", "Arn"]}
    assert properties["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_the_operations_key_lets_cloudwatch_logs_use_it_for_this_accounts_log_groups_only(template: Template) -> None:
    key = template.resources["OperationsKey"]["Properties"]
    assert key["EnableKeyRotation"] is True
    statements = {s["Sid"]: s for s in key["KeyPolicy"]["Statement"]}
    logs = statements["CloudWatchLogsEncryptsThisAccountsLogGroups"]
    assert logs["Principal"] == {"Service": {"Fn::Sub": "logs.${AWS::Region}.amazonaws.com"}}
    context = logs["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"]
    assert context == {"Fn::Sub": "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:*"}
    alarms_statement = statements["CloudWatchAlarmsPublishToTheEncryptedTopic"]
    assert set(as_list(alarms_statement["Action"])) == {"kms:Decrypt", "kms:GenerateDataKey*"}
    assert alarms_statement["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    for log_group in template.of_type("AWS::Logs::LogGroup").values():
        assert log_group["Properties"]["KmsKeyId"] == {"Fn::GetAtt": ["OperationsKey", "Arn"]}


# -- IAM database authentication ------------------------------------------------------------------------------------


def test_iam_database_login_is_off_by_default_and_then_replaces_the_secret_for_serving_functions(
    template: Template,
) -> None:
    assert template.parameters["DbIamAuth"]["Default"] == "false"
    policy = template.resources["DatabaseIamLoginPolicy"]
    assert policy["Condition"] == "IamAuth"
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Action"] == "rds-db:connect"
    arn, _ = statement["Resource"]["Fn::Sub"]
    assert arn.endswith(":dbuser:${ResourceId}/${DbAppRole}"), "IAM login is for the app role only"
    serving = {ref["Ref"] for entry in policy["Properties"]["Roles"] for ref in branches(entry)}
    assert serving == {f"{f}Role" for f in template.functions} - {"MigrationsFunctionRole"}
    # With IAM login the serving roles lose the secret; the migrations keep it (they run as the owner)
    secret_roles = template.resources["DatabaseSecretReadPolicy"]["Properties"]["Roles"]
    assert secret_roles[0] == {"Ref": "MigrationsFunctionRole"}
    for entry in secret_roles[1:]:
        assert "SecretLogin" in json.dumps(entry), entry
    migrations = template.environment("MigrationsFunction")
    assert migrations["CONNVAULT_DB_IAM_AUTH"] == "false"
    assert migrations["CONNVAULT_DB_APP_IAM_LOGIN"] == {"Ref": "DbIamAuth"}
    assert template.resources["DatabaseCluster"]["Properties"]["EnableIAMDatabaseAuthentication"] is True


# -- checkov --------------------------------------------------------------------------------------------------------


def test_every_checkov_skip_gives_its_reason(template: Template) -> None:
    for name, resource in template.resources.items():
        for check, reason in checkov_skips(resource).items():
            assert check.startswith("CKV"), (name, check)
            assert len(reason.split()) >= 8, f"{name} skips {check} without a reason a reviewer could weigh"


def test_checkov_finds_no_failure_in_the_template() -> None:
    # Builds .venv-checkov first when it is missing (a minute or two), then scans (about a minute here).
    built = subprocess.run(
        ["make", "--no-print-directory", "checkov-venv"], cwd=REPO, capture_output=True, text=True, timeout=900
    )
    assert built.returncode == 0, built.stderr[-4000:]
    scan = subprocess.run(
        [
            str(REPO / ".venv-checkov" / "bin" / "checkov"),
            *("--file", "template.yaml", "--framework", "cloudformation", "--output", "json", "--quiet"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    report = json.loads(scan.stdout)
    failed = [(c["check_id"], c["resource"]) for c in report.get("results", {}).get("failed_checks", [])]
    assert failed == [], failed
    assert report["summary"]["passed"] > 0
    assert scan.returncode == 0, scan.stderr[-2000:]
