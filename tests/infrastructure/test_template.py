"""What template.yaml promises: every function has its code, every route its function and authorizer, and each
function's role holds exactly the KMS and Secrets Manager rights its job needs, never on "*"."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import tomllib
from typing import Any

import pytest

from devserver.template import load_template
from tests.infrastructure.cfn import REPO, Template, as_list, branches

JOBS = {
    "AuthorizerFunction": "authorizer",
    "OAuthCallbackFunction": "oauth_callback",
    "ConnectPageFunction": "connect_page",
    "ApiFunction": "api",
    "TokenFetchFunction": "token_fetch",
    "ProxyFunction": "proxy",
    "ScheduledRefreshFunction": "scheduled_refresh",
    "RefreshWorkerFunction": "refresh_worker",
    "MigrationsFunction": "migrations",
    "WebhookDeliveryFunction": "webhook_delivery",
    "DevicePollerFunction": "device_poller",
}

DOCUMENT = json.loads((REPO / "docs" / "openapi.json").read_text())
DOCUMENTED = {
    (method.upper(), path): operation for path, item in DOCUMENT["paths"].items() for method, operation in item.items()
}
"""Every operation of the OpenAPI document (issue 13.11: the routes are derived from it, not written by hand)."""
PROXY_DOCUMENTED = "/connections/{connection_id}/proxy/{path}"
PROXY_ROUTE = ("ANY", "/connections/{connection_id}/proxy/{path+}")
ROUTE_OF = {key: PROXY_ROUTE if key[1] == PROXY_DOCUMENTED else key for key in DOCUMENTED}
"""The template route of each documented operation: the proxy is documented once per method it forwards, and API
Gateway serves every method and depth of it with one greedy route."""
FUNCTION_OF_PATH = {
    "/connections/{connection_id}/token": "TokenFetchFunction",
    "/oauth/callback": "OAuthCallbackFunction",
    "/connect": "ConnectPageFunction",
    "/connections/{connection_id}/proxy/{path+}": "ProxyFunction",
}
"""The routes served by a function of their own; every other one is the management ``ApiFunction``'s."""

# Who may unwrap data keys (read sealed credentials) and who may create them (seal new ones).
KMS_DECRYPT = {
    "TokenFetchFunction",
    "ProxyFunction",
    "ApiFunction",
    "OAuthCallbackFunction",
    "ConnectPageFunction",
    "ScheduledRefreshFunction",
    "RefreshWorkerFunction",
    "WebhookDeliveryFunction",
    "DevicePollerFunction",
}
KMS_GENERATE = KMS_DECRYPT - {"WebhookDeliveryFunction"}
"""Every function that writes tokens seals them under a fresh, counted data key, token fetch's refresh too."""
SENSITIVE_SERVICES = ("kms:", "secretsmanager:", "rds:", "rds-db:", "rds-data:")

# Parametrization needs the function list at collection time; the fixture serves the tests themselves.
_FUNCTIONS = sorted(Template(load_template()).functions)


def test_the_template_has_one_function_per_job(template: Template) -> None:
    assert set(template.functions) == set(JOBS)


@pytest.mark.parametrize("function", _FUNCTIONS)
def test_each_function_handler_is_a_handler_defined_in_its_jobs_app_module(template: Template, function: str) -> None:
    # Given the function's code directory and handler string
    job = JOBS[function]
    code_uri = template.function_property(function, "CodeUri")
    module, _, attribute = template.function_property(function, "Handler").rpartition(".")

    # Then they name functions/<job>/app.py, which defines the handler at module level
    assert code_uri == f"functions/{job}/"
    source = REPO / code_uri / f"{module.replace('.', '/')}.py"
    assert source.is_file(), f"{source.relative_to(REPO)} does not exist yet"
    tree = ast.parse(source.read_text(encoding="utf-8"))
    defined = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    defined |= {
        target.id
        for node in tree.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    assert attribute in defined, f"{source.relative_to(REPO)} defines no module-level {attribute}"


def test_every_documented_operation_is_routed_and_every_route_is_documented(template: Template) -> None:
    routes = template.routes()
    routed = {(r.method, r.path): r.function for r in routes}
    assert set(routed) == set(ROUTE_OF.values())
    assert routed == {route: FUNCTION_OF_PATH.get(route[1], "ApiFunction") for route in ROUTE_OF.values()}
    assert len(routes) == len(routed), "a route is declared twice"
    for function in {r.function for r in routes}:
        for event in template.functions[function]["Properties"]["Events"].values():
            if event["Type"] == "HttpApi":
                assert event["Properties"]["ApiId"] == {"Ref": "HttpApi"}


def test_only_the_oauth_callback_and_the_connect_page_are_reachable_without_the_authorizer(
    template: Template,
) -> None:
    open_routes = {(r.method, r.path) for r in template.routes() if r.authorizer is not None}
    public = {key for key, operation in DOCUMENTED.items() if operation.get("security") == []}
    assert open_routes == public == {("GET", "/oauth/callback"), ("GET", "/connect"), ("POST", "/connect")}
    assert all(r.authorizer == "NONE" for r in template.routes() if r.authorizer is not None)
    auth = template.resources["HttpApi"]["Properties"]["Auth"]
    assert auth["DefaultAuthorizer"] in auth["Authorizers"]


def test_the_authorizer_is_a_simple_response_lambda_on_the_authorization_header(template: Template) -> None:
    auth = template.resources["HttpApi"]["Properties"]["Auth"]
    authorizer = auth["Authorizers"][auth["DefaultAuthorizer"]]
    assert authorizer["FunctionArn"] == {"Fn::GetAtt": ["AuthorizerFunction", "Arn"]}
    assert authorizer["AuthorizerPayloadFormatVersion"] == "2.0"
    assert authorizer["EnableSimpleResponses"] is True
    assert authorizer["EnableFunctionDefaultPermissions"] is True
    assert authorizer["Identity"]["Headers"] == ["Authorization"]
    # Caching is off unless an operator opts in: a revoked key must fail on the next request.
    ttl = authorizer["Identity"]["ReauthorizeEvery"]
    assert ttl == {"Ref": "AuthorizerCacheSeconds"}
    assert template.parameters["AuthorizerCacheSeconds"]["Default"] == 0


def test_the_api_has_no_cors_and_throttles_every_route(template: Template) -> None:
    api = template.resources["HttpApi"]["Properties"]
    assert "CorsConfiguration" not in api
    assert set(api["DefaultRouteSettings"]) == {"ThrottlingRateLimit", "ThrottlingBurstLimit"}


def test_the_access_log_names_routes_and_never_paths_or_query_strings(template: Template) -> None:
    settings = template.resources["HttpApi"]["Properties"]["AccessLogSettings"]
    log_format = settings["Format"]
    record = json.loads(log_format)  # a JSON line per request, so the values must stay quoted
    variables = set(re.findall(r"\$context\.[A-Za-z.]+", log_format))
    assert "$context.routeKey" in variables
    assert "$context.status" in variables
    assert "$context.requestId" in variables
    assert not {v for v in variables if v.startswith(("$context.path", "$context.requestOverride"))}
    assert "query" not in log_format.lower()
    assert "$input" not in log_format
    assert "$request" not in log_format
    assert all(isinstance(value, str) for value in record.values())
    assert settings["DestinationArn"] == {"Fn::GetAtt": ["AccessLogGroup", "Arn"]}


def test_no_iam_statement_grants_kms_secrets_or_rds_actions_on_every_resource(template: Template) -> None:
    statements = template.iam_statements()
    assert statements, "the template's IAM statements were not found"
    for statement in statements:
        sensitive = {a for a in statement.actions if a.lower().startswith(SENSITIVE_SERVICES) or a == "*"}
        if sensitive:
            assert "*" not in statement.resources, f"{statement.source}: {sorted(sensitive)} on *"
            assert all(isinstance(r, dict) for r in statement.resources), statement.source


def test_no_function_takes_kms_or_secrets_rights_from_sam_policy_templates(template: Template) -> None:
    # The KMS and secret grants live in the reviewed standalone policies only.
    for function in template.functions:
        names = template.policy_template_names(function)
        assert not {n for n in names if n.startswith(("KMS", "SecretsManager", "AWSSecretsManager"))}, function


@pytest.mark.parametrize("function", _FUNCTIONS)
def test_each_role_holds_exactly_the_kms_rights_of_its_job(template: Template, function: str) -> None:
    statements = template.role_statements(function)
    assert any(s.grants("kms:Decrypt") for s in statements) == (function in KMS_DECRYPT)
    assert any(s.grants("kms:GenerateDataKey") for s in statements) == (function in KMS_GENERATE)
    for action in ("kms:Encrypt", "kms:ReEncryptFrom", "kms:CreateGrant", "kms:ScheduleKeyDeletion"):
        assert not any(s.grants(action) for s in statements), f"{function} may {action}"


@pytest.mark.parametrize("function", ["TokenFetchFunction", "ProxyFunction"])
def test_token_fetch_and_the_proxy_may_unwrap_and_generate_data_keys_but_never_encrypt_or_re_encrypt(
    template: Template, function: str
) -> None:
    statements = template.role_statements(function)
    assert any(s.grants("kms:Decrypt") for s in statements)
    assert any(s.grants("kms:GenerateDataKey") for s in statements)
    for action in ("kms:GenerateDataKeyWithoutPlaintext", "kms:Encrypt", "kms:ReEncryptTo", "kms:ReEncryptFrom"):
        assert not any(s.grants(action) for s in statements), action


def test_kms_use_is_bound_to_the_key_and_to_a_tenant_encryption_context(template: Template) -> None:
    key = {"Fn::If": ["CreateKmsKey", {"Fn::GetAtt": ["KmsKey", "Arn"]}, {"Ref": "ExistingKmsKeyArn"}]}
    kms = [s for s in template.iam_statements() if any(a.startswith("kms:") for a in s.actions)]
    assert kms
    for statement in kms:
        assert statement.resources == tuple(branches(key)), statement.source
        keys = statement.condition["ForAllValues:StringEquals"]["kms:EncryptionContextKeys"]
        assert "tenant_id" in keys
        assert statement.condition["Null"] == {"kms:EncryptionContext:tenant_id": "false"}


def test_the_key_policy_lets_the_account_administer_and_only_the_functions_use_the_key(
    template: Template,
) -> None:
    key = template.resources["KmsKey"]
    assert key["Properties"]["EnableKeyRotation"] is True
    assert key["Condition"] == "CreateKmsKey"
    statements = key["Properties"]["KeyPolicy"]["Statement"]
    crypto = {"kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:ReEncrypt*", "kms:*"}
    users: dict[str, set[str]] = {}
    for statement in statements:
        actions = set(as_list(statement["Action"]))
        condition = statement.get("Condition", {})
        if "ArnEquals" not in condition:
            assert not actions & crypto, f"{statement['Sid']} lets the whole account use the key"
            continue
        principals = condition["ArnEquals"]["aws:PrincipalArn"]
        roles = {arn["Fn::GetAtt"][0] for entry in principals for arn in branches(entry)}
        for action in actions:
            users.setdefault(action, set()).update(roles)
    assert users == {
        "kms:Decrypt": {f"{f}Role" for f in KMS_DECRYPT},
        "kms:GenerateDataKey": {f"{f}Role" for f in KMS_GENERATE},
    }
    assert template.resources["KmsKeyAlias"]["Condition"] == "CreateKmsKey"


@pytest.mark.parametrize("function", _FUNCTIONS)
def test_each_function_may_read_the_one_database_secret_and_no_other(template: Template, function: str) -> None:
    secret = [s for s in template.role_statements(function) if s.grants("secretsmanager:GetSecretValue")]
    assert len(secret) == 1, function
    assert secret[0].actions == {"secretsmanager:GetSecretValue"}
    assert secret[0].resources == (
        {"Fn::GetAtt": ["DatabaseCluster", "MasterUserSecret.SecretArn"]},
        {"Fn::Sub": "${DbSecretArn}"},
    )


def test_functions_run_python312_on_the_architecture_parameter_with_active_tracing(template: Template) -> None:
    assert template.parameters["Architecture"]["Default"] == "arm64"
    assert set(template.parameters["Architecture"]["AllowedValues"]) == {"arm64", "x86_64"}
    for function in template.functions:
        assert template.function_property(function, "Runtime") == "python3.12", function
        assert template.function_property(function, "Architectures") == [{"Ref": "Architecture"}], function
        assert template.function_property(function, "Tracing") == "Active", function
        assert template.function_property(function, "Layers") == [{"Ref": "CommonLayer"}], function
    layer = template.resources["CommonLayer"]
    assert layer["Properties"]["ContentUri"] == "layers/common/"
    assert layer["Metadata"] == {"BuildMethod": "python3.12", "BuildArchitecture": {"Ref": "Architecture"}}


@pytest.mark.parametrize("function", _FUNCTIONS)
def test_each_function_keeps_tokens_out_of_logs_and_traces(template: Template, function: str) -> None:
    env = template.environment(function)
    assert env["POWERTOOLS_TRACER_CAPTURE_RESPONSE"] == "false"
    assert env["POWERTOOLS_TRACER_CAPTURE_ERROR"] == "false"
    assert env["POWERTOOLS_LOGGER_LOG_EVENT"] == "false"
    assert env["POWERTOOLS_SERVICE_NAME"] == "connvault"
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == "connvault"


def test_functions_find_the_database_key_and_callback_in_their_environment(template: Template) -> None:
    env = template.environment("ApiFunction")
    for name in (
        "CONNVAULT_DB_HOST",
        "CONNVAULT_DB_PORT",
        "CONNVAULT_DB_NAME",
        "CONNVAULT_DB_SECRET_ARN",
        "CONNVAULT_DB_APP_ROLE",
        "CONNVAULT_KMS_KEY_ID",
        "CONNVAULT_CALLBACK_URL",
        "LOG_LEVEL",
    ):
        assert name in env, name
    assert template.parameters["DbAppRole"]["Default"] == "connvault_app"
    assert template.parameters["CallbackUrl"]["Default"] == ""
    # The callback URL is a parameter, not a reference to the API: that would be a dependency cycle.
    assert env["CONNVAULT_CALLBACK_URL"] == {"Ref": "CallbackUrl"}


def test_the_refresh_fan_out_exists_only_when_switched_on(template: Template) -> None:
    assert template.parameters["RefreshFanOut"]["Default"] == "false"
    for name in ("RefreshWorkerFunction", "RefreshQueue", "RefreshDeadLetterQueue", "RefreshWorkerLogGroup"):
        assert template.resources[name]["Condition"] == "FanOut", name
    queue = template.resources["RefreshQueue"]["Properties"]
    assert queue["SqsManagedSseEnabled"] is True
    assert template.resources["RefreshDeadLetterQueue"]["Properties"]["SqsManagedSseEnabled"] is True
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["RefreshDeadLetterQueue", "Arn"]}
    worker_timeout = template.function_property("RefreshWorkerFunction", "Timeout")
    assert queue["VisibilityTimeout"] >= 6 * worker_timeout
    (event,) = template.functions["RefreshWorkerFunction"]["Properties"]["Events"].values()
    assert event["Type"] == "SQS"
    assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    env = template.environment("ScheduledRefreshFunction")
    assert env["CONNVAULT_REFRESH_QUEUE_URL"] == {"Fn::If": ["FanOut", {"Ref": "RefreshQueue"}, ""]}


def test_the_refresh_scan_runs_on_the_schedule_parameter(template: Template) -> None:
    assert template.parameters["RefreshSchedule"]["Default"] == "rate(5 minutes)"
    (event,) = template.functions["ScheduledRefreshFunction"]["Properties"]["Events"].values()
    assert event["Type"] == "Schedule"
    assert event["Properties"]["Schedule"] == {"Ref": "RefreshSchedule"}
    assert 240 <= template.function_property("ScheduledRefreshFunction", "Timeout") <= 900


def test_request_functions_answer_within_the_http_api_integration_limit(template: Template) -> None:
    for function in {r.function for r in template.routes()} | {"AuthorizerFunction"}:
        assert template.function_property(function, "Timeout") < 30, function


def test_migrations_run_on_every_layer_change_before_the_serving_code_goes_live(template: Template) -> None:
    migrations = template.resources["DatabaseMigrations"]
    assert migrations["Type"] == "Custom::DatabaseMigrations"
    assert migrations["Properties"]["ServiceToken"] == {"Fn::GetAtt": ["MigrationsFunction", "Arn"]}
    # The schema ships in the layer, whose version ARN changes exactly when its content does.
    assert migrations["Properties"]["SchemaHash"] == {"Ref": "CommonLayer"}
    assert migrations["Properties"]["DatabaseInstance"] == {
        "Fn::If": ["CreateDatabase", {"Ref": "DatabaseInstance"}, {"Ref": "AWS::NoValue"}]
    }
    assert migrations["DependsOn"] == "DatabaseSecretReadPolicy"
    for function in set(JOBS) - {"MigrationsFunction", "AuthorizerFunction"}:
        assert template.functions[function].get("DependsOn") == "DatabaseMigrations", function


def test_the_created_database_is_aurora_serverless_v2_with_a_managed_secret(template: Template) -> None:
    for name in ("DatabaseCluster", "DatabaseInstance", "DatabaseSubnetGroup", "DatabaseSecurityGroup"):
        assert template.resources[name]["Condition"] == "CreateDatabase", name
    cluster = template.resources["DatabaseCluster"]["Properties"]
    assert cluster["Engine"] == "aurora-postgresql"
    assert cluster["ManageMasterUserPassword"] is True
    assert "MasterUserPassword" not in cluster
    assert cluster["StorageEncrypted"] is True
    assert "ServerlessV2ScalingConfiguration" in cluster
    assert template.resources["DatabaseInstance"]["Properties"]["DBInstanceClass"] == "db.serverless"


def test_the_outputs_give_the_api_and_the_callback_to_register(template: Template) -> None:
    outputs = template.document["Outputs"]
    assert {"ApiUrl", "CallbackUrl", "KmsKeyArn", "RefreshQueueUrl"} <= set(outputs)
    assert outputs["RefreshQueueUrl"]["Condition"] == "FanOut"
    derived = outputs["CallbackUrl"]["Value"]["Fn::If"][2]
    assert derived == {"Fn::Sub": "${HttpApi.ApiEndpoint}/oauth/callback"}


def _overrides(entries: Any) -> dict[str, str]:
    return dict(entry.split("=", 1) for entry in as_list(entries))


@pytest.mark.parametrize("environment", ["default", "prod"])
def test_each_samconfig_environment_deploys_valid_parameters(template: Template, environment: str) -> None:
    config = tomllib.loads((REPO / "samconfig.toml").read_text(encoding="utf-8"))[environment]
    assert config["global"]["parameters"]["stack_name"].startswith("connvault-")
    deploy = config["deploy"]["parameters"]
    assert deploy["capabilities"] == "CAPABILITY_IAM"
    assert deploy["resolve_s3"] is True
    assert deploy["confirm_changeset"] is (environment == "prod")
    for name, value in _overrides(config["global"]["parameters"]["parameter_overrides"]).items():
        parameter = template.parameters[name]
        if "AllowedValues" in parameter:
            assert value in {str(v) for v in parameter["AllowedValues"]}, name
        if "AllowedPattern" in parameter:
            assert re.fullmatch(parameter["AllowedPattern"], value), name


def test_make_validate_passes_sam_validate_lint_and_cfn_lint() -> None:
    # Builds .venv-sam first when it is missing (about 50 s here), then runs both linters (about 6 s).
    result = subprocess.run(
        ["make", "--no-print-directory", "validate"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
