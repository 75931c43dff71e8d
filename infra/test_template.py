"""Assertions on template.yaml, so that a careless edit fails loudly.

Each test reads the template through template_model.Rendered, which evaluates it for a
given set of parameter values as CloudFormation would (Conditions, Fn::If, Ref to
parameters, Fn::Sub), so both modes and every optional part are checked.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from template_model import TEMPLATE, Rendered, arn_of, as_list, ref

REPO = TEMPLATE.parent
CLOUDWATCH_RETENTION_DAYS = [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545,
                             731, 1096, 1827, 2192, 2557, 2922, 3288, 3653]
FOURTEEN_DAYS = 14 * 24 * 3600
SQL_DIRECT = "SELECT encode(*, 'base64') AS data, topic() AS topic FROM '{}'"
SQL_CLIENT_ID = ("SELECT encode(*, 'base64') AS data, topic() AS topic, "
                 "clientid() AS device_serial FROM '{}'")
THING = "${iot:Connection.Thing.ThingName}"
MODES = ("Direct", "Queued", "Stream")


def queue_arns(template: Rendered, resources: list[Any]) -> list[str]:
    names = []
    for resource in resources:
        assert isinstance(resource, dict) and list(resource) == ["Fn::GetAtt"], resource
        name, attribute = resource["Fn::GetAtt"]
        assert attribute == "Arn"
        names.append(name)
    return sorted(names)


# --- function -------------------------------------------------------------------


def test_transform_is_sam(raw):
    assert raw["Transform"] == "AWS::Serverless-2016-10-31"


def test_function_runtime_handler_and_build(direct):
    fn = direct.function()
    p = fn["Properties"]
    assert p["Runtime"] == "provided.al2023"
    assert p["Handler"] == "bootstrap"
    assert p["CodeUri"] == "."
    assert fn["Metadata"]["BuildMethod"] == "rust-cargolambda"
    assert fn["Metadata"]["BuildProperties"]["Binary"] == "memfault-chunk-proxy"
    assert p["MemorySize"] == 128
    assert 10 < p["Timeout"] <= 60


def test_build_binary_is_a_cargo_bin_target(direct):
    cargo_toml = REPO / "Cargo.toml"
    if not cargo_toml.exists():
        pytest.skip("no Cargo.toml")
    manifest = tomllib.loads(cargo_toml.read_text())
    bins = [b["name"] for b in manifest.get("bin", [])] or [manifest["package"]["name"]]
    assert direct.function()["Metadata"]["BuildProperties"]["Binary"] in bins


def test_architecture_parameter(raw, direct):
    spec = raw["Parameters"]["Architecture"]
    assert spec["Default"] == "arm64"
    assert sorted(spec["AllowedValues"]) == ["arm64", "x86_64"]
    assert raw["Resources"]["ProxyFunction"]["Properties"]["Architectures"] == [ref("Architecture")]
    assert direct.function()["Properties"]["Architectures"] == ["arm64"]
    x86 = Rendered(raw, Architecture="x86_64")
    assert x86.function()["Properties"]["Architectures"] == ["x86_64"]


EXPECTED_ENVIRONMENT = {
    "MEMFAULT_CHUNKS_URL": ("MemfaultChunksUrl", "https://chunks.memfault.com"),
    "MEMFAULT_MAX_ATTEMPTS": ("MaxAttempts", 4),
    "MEMFAULT_METRICS_NAMESPACE": ("MetricsNamespace", "MemfaultChunkProxy"),
    "MEMFAULT_BATCH_MAX_CHUNKS": ("BatchMaxChunks", 500),
    "MEMFAULT_UPLOAD_CONCURRENCY": ("UploadConcurrency", 64),
    "MEMFAULT_STALL_LIMIT_SECONDS": ("StallLimitSeconds", 300),
}


def test_environment_wired_from_parameters(raw, direct):
    variables = raw["Resources"]["ProxyFunction"]["Properties"]["Environment"]["Variables"]
    for variable, (parameter, default) in EXPECTED_ENVIRONMENT.items():
        assert variables[variable] == ref(parameter), variable
        assert raw["Parameters"][parameter]["Default"] == default, parameter
    rendered = direct.function()["Properties"]["Environment"]["Variables"]
    # The pattern follows TopicLayout (infra/test_layouts.py); by default the Legacy one.
    # The failure queue is the quarantine queue, in every mode.
    assert rendered == {v: d for v, (_, d) in EXPECTED_ENVIRONMENT.items()} | {
        "MEMFAULT_TOPIC_PATTERN": "prod/+/{device_serial}/memfault/{project_key}/chunk",
        "MEMFAULT_FAILURE_QUEUE_URL": ref("QuarantineQueue")}
    # The function rejects variables set to "": every value must be non-empty.
    assert all(str(value) for value in rendered.values())


def test_parameter_ranges_match_the_function(raw):
    """The function refuses values outside these ranges at init (src/config.rs)."""
    ranges = {"MaxAttempts": (1, 20), "BatchMaxChunks": (1, 10000), "UploadConcurrency": (1, 256),
              "StallLimitSeconds": (1, 604800)}
    for name, (low, high) in ranges.items():
        spec = raw["Parameters"][name]
        assert (spec["MinValue"], spec["MaxValue"]) == (low, high), name
    namespace = raw["Parameters"]["MetricsNamespace"]["AllowedPattern"]
    for ok in ("MemfaultChunkProxy", "Fleet/Chunks", ""):
        assert re.fullmatch(namespace, ok), ok
    for bad in (":Chunks", "a" * 256, "semi;colon"):
        assert not re.fullmatch(namespace, bad), bad


def test_project_key_only_set_when_given(raw, direct):
    spec = raw["Parameters"]["MemfaultProjectKey"]
    assert spec["NoEcho"] is True
    assert spec["Default"] == ""
    variables = direct.function()["Properties"]["Environment"]["Variables"]
    assert "MEMFAULT_PROJECT_KEY" not in variables and "MEMFAULT_PROJECT_KEYS" not in variables
    keyed = Rendered(raw, MemfaultProjectKey="abc123")
    assert keyed.function()["Properties"]["Environment"]["Variables"]["MEMFAULT_PROJECT_KEY"] == "abc123"
    mapped = Rendered(raw, TopicLayout="MemfaultGuide", ProjectKeys="a=k1,b=k2")
    variables = mapped.function()["Properties"]["Environment"]["Variables"]
    assert variables["MEMFAULT_PROJECT_KEYS"] == "a=k1,b=k2"
    assert "MEMFAULT_PROJECT_KEY" not in variables


def test_logging_config_and_log_group(raw, direct):
    logging = direct.function()["Properties"]["LoggingConfig"]
    assert logging["LogFormat"] == "JSON"
    assert logging["SystemLogLevel"] == "WARN"
    assert logging["ApplicationLogLevel"] == "INFO"
    assert logging["LogGroup"] == ref("ProxyLogGroup")
    level = raw["Parameters"]["LogLevel"]
    assert level["AllowedValues"] == ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"]
    assert raw["Resources"]["ProxyFunction"]["Properties"]["LoggingConfig"]["ApplicationLogLevel"] == ref("LogLevel")

    group = direct.resources["ProxyLogGroup"]
    assert group["Type"] == "AWS::Logs::LogGroup"
    assert raw["Resources"]["ProxyLogGroup"]["Properties"]["RetentionInDays"] == ref("LogRetentionInDays")
    retention = raw["Parameters"]["LogRetentionInDays"]
    assert retention["Default"] == 30
    assert retention["AllowedValues"] == CLOUDWATCH_RETENTION_DAYS
    assert Rendered(raw, LogRetentionInDays="365").props("ProxyLogGroup")["RetentionInDays"] == 365


def test_retention_values_match_cloudformation_schema(raw):
    """The allowed list is CloudWatch's, as cfn-lint's resource schema has it."""
    from cfnlint.schema import PROVIDER_SCHEMA_MANAGER

    schema = PROVIDER_SCHEMA_MANAGER.get_resource_schema("us-east-1", "AWS::Logs::LogGroup")
    enum = schema.schema["properties"]["RetentionInDays"]["enum"]
    assert raw["Parameters"]["LogRetentionInDays"]["AllowedValues"] == enum


# --- asynchronous invocation, failure queue, replay -------------------------------


def test_on_failure_destination_is_encrypted_fourteen_day_queue(raw, direct):
    (config,) = direct.of_type("AWS::Lambda::EventInvokeConfig").values()
    p = config["Properties"]
    assert p["FunctionName"] == ref("ProxyFunction")
    assert p["Qualifier"] == "$LATEST"
    assert p["DestinationConfig"]["OnFailure"]["Destination"] == arn_of("FailureQueue")
    queue = direct.props("FailureQueue")
    assert queue["MessageRetentionPeriod"] == FOURTEEN_DAYS
    assert queue["SqsManagedSseEnabled"] is True


def test_async_retries_and_event_age_are_bounded(raw, direct):
    raw_config = raw["Resources"]["ProxyFunctionEventInvokeConfig"]["Properties"]
    assert raw_config["MaximumRetryAttempts"] == ref("AsyncMaxRetryAttempts")
    assert raw_config["MaximumEventAgeInSeconds"] == ref("AsyncMaxEventAgeSeconds")
    retries = raw["Parameters"]["AsyncMaxRetryAttempts"]
    age = raw["Parameters"]["AsyncMaxEventAgeSeconds"]
    assert (retries["Default"], retries["MinValue"], retries["MaxValue"]) == (2, 0, 2)
    assert age["Default"] == 21600 and age["MinValue"] >= 60 and age["MaxValue"] <= 21600
    p = direct.props("ProxyFunctionEventInvokeConfig")
    assert (p["MaximumRetryAttempts"], p["MaximumEventAgeInSeconds"]) == (2, 21600)


def test_failure_queue_redrives_to_its_own_dead_letter_queue(direct):
    queue = direct.props("FailureQueue")
    redrive = queue["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == arn_of("ReplayDeadLetterQueue")
    assert redrive["maxReceiveCount"] == 5
    dlq = direct.props("ReplayDeadLetterQueue")
    assert dlq["MessageRetentionPeriod"] == FOURTEEN_DAYS
    assert dlq["SqsManagedSseEnabled"] is True


def test_replay_mapping_disabled_by_default(raw, direct, queued, stream):
    for template in (direct, queued, stream):
        mapping = template.props("ReplayEventSourceMapping")
        assert mapping["Enabled"] is False
        assert mapping["EventSourceArn"] == arn_of("FailureQueue")
        assert mapping["FunctionName"] == ref("ProxyFunction")
        assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert raw["Parameters"]["ReplayFailedChunks"]["Default"] == "false"
    enabled = Rendered(raw, ReplayFailedChunks="true")
    assert enabled.props("ReplayEventSourceMapping")["Enabled"] is True


def test_consumed_queues_hide_messages_for_six_function_timeouts(direct, queued):
    timeout = direct.function()["Properties"]["Timeout"]
    assert direct.props("FailureQueue")["VisibilityTimeout"] >= 6 * timeout
    assert queued.props("IngestQueue")["VisibilityTimeout"] >= 6 * timeout


# --- topic rule -------------------------------------------------------------------


def rule(template: Rendered) -> dict[str, Any]:
    return template.props("TopicRule")["TopicRulePayload"]


def test_rule_sql_reads_the_layouts_topic_filter(raw, direct):
    payload = rule(direct)
    assert payload["AwsIotSqlVersion"] == "2016-03-23"
    assert payload["Sql"] == SQL_DIRECT.format("prod/+/+/memfault/#")
    custom = Rendered(raw, TopicLayout="Custom", TopicPattern="fleet/+/{device_serial}/chunks/#",
                      TopicFilter="fleet/+/+/chunks/#")
    assert rule(custom)["Sql"] == SQL_DIRECT.format("fleet/+/+/chunks/#")


def test_rule_sql_with_client_id_as_device_serial(raw):
    assert raw["Parameters"]["DeviceSerialFromClientId"]["Default"] == "false"
    with_client_id = Rendered(raw, DeviceSerialFromClientId="true", TopicLayout="MemfaultGuide",
                              ProjectKeys="a=k")
    assert rule(with_client_id)["Sql"] == SQL_CLIENT_ID.format("memfault/+/+/chunks")
    queued = Rendered(raw, DeviceSerialFromClientId="true", Mode="Queued")
    assert rule(queued)["Sql"] == SQL_CLIENT_ID.format("prod/+/+/memfault/#")


def test_topic_filter_cannot_break_out_of_sql_quotes(raw):
    pattern = raw["Parameters"]["TopicFilter"]["AllowedPattern"]
    assert re.fullmatch(pattern, "prod/+/+/memfault/#")
    assert not re.fullmatch(pattern, "x' OR 1=1 --")


def test_direct_mode_rule_invokes_function_with_scoped_permission(direct):
    assert rule(direct)["Actions"] == [{"Lambda": {"FunctionArn": arn_of("ProxyFunction")}}]
    (permission,) = direct.of_type("AWS::Lambda::Permission").values()
    p = permission["Properties"]
    assert p["Action"] == "lambda:InvokeFunction"
    assert p["Principal"] == "iot.amazonaws.com"
    assert p["SourceArn"] == arn_of("TopicRule")
    assert p["SourceAccount"] == ref("AWS::AccountId")
    assert p["FunctionName"] == arn_of("ProxyFunction")
    assert "IngestQueue" not in direct.resources
    assert "IngestEventSourceMapping" not in direct.resources


def test_queued_mode_rule_sends_event_json_unencoded_to_ingest_queue(queued):
    assert rule(queued)["Actions"] == [{
        "Sqs": {"QueueUrl": ref("IngestQueue"), "RoleArn": arn_of("TopicRuleRole"), "UseBase64": False}
    }]
    assert not queued.of_type("AWS::Lambda::Permission")


def test_queued_mode_ingest_queue_and_mapping(queued):
    ingest = queued.props("IngestQueue")
    assert ingest["SqsManagedSseEnabled"] is True
    assert ingest["RedrivePolicy"]["deadLetterTargetArn"] == arn_of("IngestDeadLetterQueue")
    assert ingest["RedrivePolicy"]["maxReceiveCount"] == 5
    dlq = queued.props("IngestDeadLetterQueue")
    assert dlq["SqsManagedSseEnabled"] is True
    assert dlq["MessageRetentionPeriod"] == FOURTEEN_DAYS
    mapping = queued.props("IngestEventSourceMapping")
    assert mapping["EventSourceArn"] == arn_of("IngestQueue")
    assert mapping["FunctionName"] == ref("ProxyFunction")
    assert mapping["Enabled"] is True
    assert mapping["BatchSize"] == 100
    assert mapping["MaximumBatchingWindowInSeconds"] == 5
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["ScalingConfig"]["MaximumConcurrency"] == 10


def test_rule_error_action_goes_to_encrypted_queue(direct, queued, stream):
    for template in (direct, queued, stream):
        error_action = rule(template)["ErrorAction"]
        assert error_action == {"Sqs": {
            "QueueUrl": ref("RuleErrorQueue"), "RoleArn": arn_of("TopicRuleRole"), "UseBase64": False}}
        queue = template.props("RuleErrorQueue")
        assert queue["SqsManagedSseEnabled"] is True
        assert queue["MessageRetentionPeriod"] == FOURTEEN_DAYS


def test_rule_role_is_assumable_only_by_this_rule(direct):
    (statement,) = direct.props("TopicRuleRole")["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "iot.amazonaws.com"}
    assert statement["Action"] == "sts:AssumeRole"
    assert statement["Condition"]["StringEquals"]["aws:SourceAccount"] == ref("AWS::AccountId")
    source_arn = statement["Condition"]["ArnEquals"]["aws:SourceArn"]
    assert source_arn == "arn:${AWS::Partition}:iot:${AWS::Region}:${AWS::AccountId}:rule/memfault_chunk_proxy"
    assert direct.props("TopicRule")["RuleName"] == "memfault_chunk_proxy"


def test_rule_role_sends_only_to_rule_queues(direct, queued, stream):
    assert set(direct.grants("TopicRuleRole")) == {"sqs:SendMessage"}
    assert queue_arns(direct, direct.grants("TopicRuleRole")["sqs:SendMessage"]) == ["RuleErrorQueue"]
    assert queue_arns(stream, stream.grants("TopicRuleRole")["sqs:SendMessage"]) == ["RuleErrorQueue"]
    assert queue_arns(queued, queued.grants("TopicRuleRole")["sqs:SendMessage"]) == [
        "IngestQueue", "RuleErrorQueue"]


def test_without_topic_rule(raw):
    for mode in MODES:
        own = Rendered(raw, CreateTopicRule="false", Mode=mode)
        for absent in ("TopicRule", "TopicRuleRole", "TopicRuleInvokePermission", "RuleErrorQueue"):
            assert absent not in own.resources, absent
        assert "TopicRuleName" not in own.outputs
        assert own.function()
    assert "IngestQueue" in Rendered(raw, CreateTopicRule="false", Mode="Queued").resources
    assert "IngestStream" in Rendered(raw, CreateTopicRule="false", Mode="Stream").resources
    assert raw["Parameters"]["CreateTopicRule"]["Default"] == "true"


# --- IAM --------------------------------------------------------------------------


def all_variants(raw) -> list[Rendered]:
    return [Rendered(raw, Mode=mode, CreateDevicePolicy="true", ReplayFailedChunks=replay)
            for mode in MODES for replay in ("false", "true")]


def test_roles_have_no_managed_policies_or_wildcards(raw):
    for template in all_variants(raw):
        roles = template.of_type("AWS::IAM::Role")
        assert set(roles) == {"ProxyFunctionRole", "TopicRuleRole"}
        for name, role in roles.items():
            p = role["Properties"]
            assert "ManagedPolicyArns" not in p, name
            assert p["Policies"], name
            for statement in template.statements(name):
                assert statement["Effect"] == "Allow"
                assert "NotAction" not in statement and "NotResource" not in statement
                for action in as_list(statement["Action"]):
                    assert "*" not in action, (name, action)
                for resource in as_list(statement["Resource"]):
                    assert resource != "*", (name, statement)
                    assert not (isinstance(resource, str) and resource.endswith(":*")), resource
        assert not template.of_type("AWS::IAM::Policy")
        assert not template.of_type("AWS::IAM::ManagedPolicy")


def test_sam_function_uses_the_explicit_role(raw):
    p = raw["Resources"]["ProxyFunction"]["Properties"]
    assert p["Role"] == arn_of("ProxyFunctionRole")
    assert "Policies" not in p


def test_function_role_least_privilege(direct, queued):
    trust = direct.props("ProxyFunctionRole")["AssumeRolePolicyDocument"]["Statement"]
    assert trust == [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                      "Action": "sts:AssumeRole"}]
    consume = ["sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:GetQueueAttributes",
               "sqs:ReceiveMessage"]
    replayed = ["FailureQueue", "QuarantineQueue"]
    for template, consumed in ((direct, replayed), (queued, sorted([*replayed, "IngestQueue"]))):
        table = template.grants("ProxyFunctionRole")
        assert sorted(table) == sorted(["logs:CreateLogStream", "logs:PutLogEvents", "sqs:SendMessage",
                                        *consume])
        assert table["logs:CreateLogStream"] == [arn_of("ProxyLogGroup")]
        assert table["logs:PutLogEvents"] == [arn_of("ProxyLogGroup")]
        # Lambda's asynchronous destination, and the function's own quarantine writes.
        assert queue_arns(template, table["sqs:SendMessage"]) == replayed
        for action in consume:
            assert queue_arns(template, table[action]) == consumed, action


def test_kms_permissions_only_with_customer_managed_keys(raw):
    for template in all_variants(raw):
        queues = template.of_type("AWS::SQS::Queue").values()
        uses_kms = any("KmsMasterKeyId" in q["Properties"] for q in queues)
        kms_actions = [a for role in template.of_type("AWS::IAM::Role")
                       for a in template.grants(role) if a.startswith("kms:")]
        assert uses_kms == bool(kms_actions)
        for queue in queues:
            assert queue["Properties"].get("SqsManagedSseEnabled") is True or "KmsMasterKeyId" in queue["Properties"]


# --- device policy ----------------------------------------------------------------


def test_device_policy_is_optional(raw, direct):
    assert raw["Parameters"]["CreateDevicePolicy"]["Default"] == "false"
    assert not direct.of_type("AWS::IoT::Policy")


def test_device_policy_scoped_to_thing_name(raw):
    template = Rendered(raw, CreateDevicePolicy="true")
    (policy,) = template.of_type("AWS::IoT::Policy").values()
    document = policy["Properties"]["PolicyDocument"]
    by_action = {s["Action"]: s for s in document["Statement"]}
    assert set(by_action) == {"iot:Connect", "iot:Publish"}
    assert all(s["Effect"] == "Allow" for s in by_action.values())
    prefix = "arn:${AWS::Partition}:iot:${AWS::Region}:${AWS::AccountId}:"
    connect = by_action["iot:Connect"]
    assert connect["Resource"] == f"{prefix}client/{THING}"
    assert connect["Condition"]["Bool"]["iot:Connection.Thing.IsAttached"] == "true"
    assert by_action["iot:Publish"]["Resource"] == f"{prefix}topic/prod/*/{THING}/memfault/*/chunk"
    # The raw template must escape the policy variable where Fn::Sub parses it, and nowhere
    # else: the publish resource gets it from a Join, inserted into its Sub as a value.
    raw_statements = raw["Resources"]["DevicePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    subs = [s for statement in raw_statements for s in sub_strings(statement["Resource"])]
    assert [s for s in subs if "iot:Connection" in s] == [
        "arn:${AWS::Partition}:iot:${AWS::Region}:${AWS::AccountId}:client/${!iot:Connection.Thing.ThingName}"]


def sub_strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        if "Fn::Sub" in node:
            return [node["Fn::Sub"]]
        return [s for value in node.values() for s in sub_strings(value)]
    if isinstance(node, list):
        return [s for item in node for s in sub_strings(item)]
    return []


# --- outputs and audit trail --------------------------------------------------------


def test_outputs(direct, queued, raw):
    expected_always = {
        "FunctionArn": arn_of("ProxyFunction"),
        "FunctionName": ref("ProxyFunction"),
        "LogGroupName": ref("ProxyLogGroup"),
        "FailureQueueUrl": ref("FailureQueue"),
        "FailureQueueArn": arn_of("FailureQueue"),
        "TopicRuleName": ref("TopicRule"),
        "ReplayEventSourceMappingId": ref("ReplayEventSourceMapping"),
    }
    expected_queued = {
        "IngestQueueUrl": ref("IngestQueue"),
        "IngestQueueArn": arn_of("IngestQueue"),
        "IngestDeadLetterQueueUrl": ref("IngestDeadLetterQueue"),
        "IngestDeadLetterQueueArn": arn_of("IngestDeadLetterQueue"),
    }
    for name, value in expected_always.items():
        assert direct.outputs[name]["Value"] == value, name
        assert queued.outputs[name]["Value"] == value, name
    for name, value in expected_queued.items():
        assert queued.outputs[name]["Value"] == value, name
        assert name not in direct.outputs
    stream_only = {"IngestStreamName", "IngestStreamArn", "StreamEventSourceMappingId",
                   "StreamFailureBucketName"}
    assert not stream_only & (set(direct.outputs) | set(queued.outputs))
    assert raw["Outputs"]["TopicRuleName"]["Condition"] == "CreateRule"


def checkov_skips(raw) -> list[tuple[str, str, dict[str, str]]]:
    found = []
    for name, resource in raw["Resources"].items():
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
            found.append((name, resource["Type"], skip))
    return found


# Every checkov finding the template suppresses. Adding one means adding it here too.
ALLOWED_SKIPS = {
    ("ProxyFunction", "CKV_AWS_115"),  # no reserved concurrency
    ("ProxyFunction", "CKV_AWS_116"),  # on-failure destination instead of a DLQ
    ("ProxyFunction", "CKV_AWS_117"),  # not in a VPC
    ("ProxyFunction", "CKV_AWS_173"),  # environment not encrypted with a CMK
    ("ProxyLogGroup", "CKV_AWS_158"),  # logs not encrypted with a CMK
    ("FailureQueue", "CKV_AWS_27"),  # SSE-SQS rather than SSE-KMS
    ("ReplayDeadLetterQueue", "CKV_AWS_27"),
    ("QuarantineQueue", "CKV_AWS_27"),
    ("QuarantineDeadLetterQueue", "CKV_AWS_27"),
    ("IngestQueue", "CKV_AWS_27"),
    ("IngestDeadLetterQueue", "CKV_AWS_27"),
    ("RuleErrorQueue", "CKV_AWS_27"),
    ("StreamFailureBucket", "CKV_AWS_18"),  # no server access logs
}


def test_checkov_skips_are_known_and_explained(raw):
    skips = checkov_skips(raw)
    assert {(name, skip["id"]) for name, _, skip in skips} == ALLOWED_SKIPS
    for name, _, skip in skips:
        assert len(skip.get("comment", "").split()) >= 15, (name, skip["id"])


def test_sse_sqs_skips_only_on_sse_sqs_queues(raw):
    for name, resource_type, skip in checkov_skips(raw):
        if skip["id"] == "CKV_AWS_27":
            assert resource_type == "AWS::SQS::Queue"
            assert raw["Resources"][name]["Properties"]["SqsManagedSseEnabled"] is True


def test_sam_transform_keeps_function_settings():
    """The template survives the SAM transform with the settings intact."""
    import render_template

    template = render_template.load()
    render_template.override_defaults(template, {"Mode": "Queued"})
    processed = render_template.sam_transform(template)
    resources = processed["Resources"]
    fn = resources["ProxyFunction"]
    assert fn["Type"] == "AWS::Lambda::Function"
    p = fn["Properties"]
    assert p["Runtime"] == "provided.al2023"
    assert p["Role"] == arn_of("ProxyFunctionRole")
    assert p["LoggingConfig"]["LogGroup"] == ref("ProxyLogGroup")
    assert p["Architectures"] == [ref("Architecture")]
    # With an explicit role, SAM must not generate one of its own.
    assert sorted(n for n, r in resources.items() if r["Type"] == "AWS::IAM::Role") == [
        "ProxyFunctionRole", "TopicRuleRole"]
