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

from template_model import TEMPLATE, Refused, Rendered, arn_of, as_list, ref

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


# --- a first deploy: groups, labels, derived and folded settings, Rules ---------------

FIRST_GROUP = ["Mode", "TopicLayout", "ProjectKeys", "MemfaultProjectKey", "AlarmEmail"]


def interface(raw) -> dict[str, Any]:
    return raw["Metadata"]["AWS::CloudFormation::Interface"]


def test_at_most_thirty_parameters_each_in_one_labelled_group(raw):
    parameters = list(raw["Parameters"])
    assert len(parameters) <= 30
    groups = interface(raw)["ParameterGroups"]
    grouped = [name for group in groups for name in group["Parameters"]]
    assert sorted(grouped) == sorted(parameters), "every parameter in exactly one group"
    # `sam deploy --guided` asks in the template's order, the console in the groups' order:
    # both the same.
    assert grouped == parameters
    for group in groups:
        assert group["Label"]["default"].strip(), group
    labels = interface(raw)["ParameterLabels"]
    assert set(labels) == set(parameters)
    assert all(label["default"].strip() for label in labels.values())


def test_the_first_group_is_the_four_decisions_of_a_first_deploy(raw):
    first = interface(raw)["ParameterGroups"][0]
    assert first["Parameters"] == FIRST_GROUP
    for word in ("mode", "layout", "key", "alarm"):
        assert word in first["Label"]["default"].lower(), word
    # The key source is two parameters, one of them per layout, both secret.
    for name in ("ProjectKeys", "MemfaultProjectKey"):
        assert raw["Parameters"][name]["NoEcho"] is True, name
    # Direct's reordering is said where the mode is chosen.
    assert "out of order" in raw["Parameters"]["Mode"]["Description"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("first_group", [
    {"TopicLayout": "Legacy"},
    {"TopicLayout": "Legacy", "MemfaultProjectKey": "example-key"},
    {"TopicLayout": "MemfaultGuide", "ProjectKeys": "project-a=key-a,project-b=key-b"},
])
def test_the_first_group_alone_makes_a_working_deployment(raw, mode, first_group):
    """Every other group's defaults pass the Rules and create a rule, alarms and a dashboard."""
    template = Rendered(raw, Mode=mode, AlarmEmail="on-call@example.com", **first_group)
    assert "TopicRule" in template.resources
    assert "AlarmEmailSubscription" in template.resources
    assert "Dashboard" in template.resources


def test_tuning_names_no_parameter_and_every_entry_is_used(raw):
    """The folded settings keep their old parameter names as keys, so no key may also be a
    parameter (one name, two values), and each is read somewhere."""
    text = TEMPLATE.read_text()
    for section, entries in raw["Mappings"]["Tuning"].items():
        for key in entries:
            assert key not in raw["Parameters"], key
            assert f"!FindInMap [Tuning, {section}, {key}]" in text, key


REFUSED = [
    # StreamMaxRecordAgeSeconds: Lambda takes -1 or 60 and up; -1 outlasts the retention.
    ({"Mode": "Stream", "StreamMaxRecordAgeSeconds": "0"}, "StreamRecordAgeIsAMinuteOrMore"),
    ({"Mode": "Stream", "StreamMaxRecordAgeSeconds": "59"}, "StreamRecordAgeIsAMinuteOrMore"),
    ({"Mode": "Stream", "StreamMaxRecordAgeSeconds": "-1"}, "StreamRecordAgeWithinRetention"),
    ({"Mode": "Queued", "SqsBatchSize": "11", "SqsMaxBatchingWindowSeconds": "0"}, "SqsBatchOver10NeedsWindow"),
    ({"Mode": "Queued", "SqsBatchSize": "10000", "SqsMaxBatchingWindowSeconds": "0"},
     "SqsBatchOver10NeedsWindow"),
    ({"MetricsNamespace": ""}, "AlarmsNeedMetrics"),
    ({"MetricsNamespace": "", "CreateAlarms": "true", "Mode": "Stream"}, "AlarmsNeedMetrics"),
]
ACCEPTED = [
    {"Mode": "Stream", "StreamMaxRecordAgeSeconds": "60"},
    {"Mode": "Stream", "StreamMaxRecordAgeSeconds": "86400", "StreamShardCount": "2"},
    {"Mode": "Queued", "SqsBatchSize": "10", "SqsMaxBatchingWindowSeconds": "0"},
    {"Mode": "Queued", "SqsBatchSize": "1", "SqsMaxBatchingWindowSeconds": "0"},
    {"Mode": "Queued", "SqsBatchSize": "10000", "SqsMaxBatchingWindowSeconds": "1"},
    {"MetricsNamespace": "", "CreateAlarms": "false"},
]


@pytest.mark.parametrize("parameters, rule", REFUSED, ids=lambda v: "-".join(f"{k}={x}" for k, x in v.items())
                         if isinstance(v, dict) else v)
def test_each_combination_that_cannot_work_fails_with_its_reason(raw, parameters, rule):
    with pytest.raises(Refused) as refused:
        Rendered(raw, **parameters)
    (failure,) = refused.value.failures
    name, _, reason = failure.partition(": ")
    assert name == rule
    # The reason names the parameters to change.
    for parameter in parameters:
        if parameter != "Mode":
            assert parameter in reason or parameter == "CreateAlarms", (parameter, reason)


@pytest.mark.parametrize("parameters", ACCEPTED, ids=lambda v: "-".join(f"{k}={x}" for k, x in v.items()))
def test_the_edges_of_each_rule_are_accepted(raw, parameters):
    Rendered(raw, **parameters)


def test_every_rule_gives_its_reason(raw):
    for name, rule in raw["Rules"].items():
        for assertion in rule["Assertions"]:
            assert len(assertion["AssertDescription"].split()) >= 6, name


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
    "MEMFAULT_METRICS_NAMESPACE": ("MetricsNamespace", "MemfaultChunkProxy"),
    "MEMFAULT_STALL_LIMIT_SECONDS": ("StallLimitSeconds", 300),
}
# Set from Mappings Tuning, not parameters: (second-level key, value).
EXPECTED_TUNED_ENVIRONMENT = {
    "MEMFAULT_MAX_ATTEMPTS": ("MaxAttempts", 4),
    "MEMFAULT_BATCH_MAX_CHUNKS": ("BatchMaxChunks", 500),
    "MEMFAULT_UPLOAD_CONCURRENCY": ("UploadConcurrency", 64),
}


def test_environment_wired_from_parameters_and_tuning(raw, direct):
    variables = raw["Resources"]["ProxyFunction"]["Properties"]["Environment"]["Variables"]
    for variable, (parameter, default) in EXPECTED_ENVIRONMENT.items():
        assert variables[variable] == ref(parameter), variable
        assert raw["Parameters"][parameter]["Default"] == default, parameter
    for variable, (key, value) in EXPECTED_TUNED_ENVIRONMENT.items():
        assert variables[variable] == {"Fn::FindInMap": ["Tuning", "Delivery", key]}, variable
        assert raw["Mappings"]["Tuning"]["Delivery"][key] == value, key
    rendered = direct.function()["Properties"]["Environment"]["Variables"]
    # The pattern follows TopicLayout (tests/infra/test_layouts.py); by default the Legacy one.
    # The function sets chunks aside on the quarantine queue, in every mode.
    expected = {v: d for v, (_, d) in (EXPECTED_ENVIRONMENT | EXPECTED_TUNED_ENVIRONMENT).items()}
    assert rendered == expected | {
        "MEMFAULT_TOPIC_PATTERN": "prod/+/{device_serial}/memfault/{project_key}/chunk",
        "MEMFAULT_QUARANTINE_QUEUE_URL": ref("QuarantineQueue")}
    # The function rejects variables set to "": every value must be non-empty.
    assert all(str(value) for value in rendered.values())


def test_parameter_ranges_match_the_function(raw):
    """The function refuses values outside these ranges at init (src/config.rs)."""
    spec = raw["Parameters"]["StallLimitSeconds"]
    assert (spec["MinValue"], spec["MaxValue"]) == (1, 604800)
    tuned = {"MaxAttempts": (1, 20), "BatchMaxChunks": (1, 10000), "UploadConcurrency": (1, 256)}
    for name, (low, high) in tuned.items():
        assert low <= raw["Mappings"]["Tuning"]["Delivery"][name] <= high, name
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


# --- asynchronous invocation, on-failure queue, replay -----------------------------

# Lambda's on-failure destination and everything around it: asynchronous invocations
# happen in Direct mode only.
DIRECT_ONLY = {"ProxyFunctionEventInvokeConfig", "OnFailureQueue", "OnFailureDeadLetterQueue",
               "OnFailureReplayMapping", "OnFailureQueueMessagesAlarm",
               "OnFailureDeadLetterQueueMessagesAlarm", "AsyncEventAgeAlarm"}


def test_on_failure_destination_is_encrypted_fourteen_day_queue(raw, direct):
    (config,) = direct.of_type("AWS::Lambda::EventInvokeConfig").values()
    p = config["Properties"]
    assert p["FunctionName"] == ref("ProxyFunction")
    assert p["Qualifier"] == "$LATEST"
    assert p["DestinationConfig"]["OnFailure"]["Destination"] == arn_of("OnFailureQueue")
    queue = direct.props("OnFailureQueue")
    assert queue["MessageRetentionPeriod"] == FOURTEEN_DAYS
    assert queue["SqsManagedSseEnabled"] is True


def test_direct_only_resources_exist_only_in_direct_mode(raw, direct, queued, stream):
    assert DIRECT_ONLY <= set(direct.resources)
    for template in (queued, stream):
        assert not DIRECT_ONLY & set(template.resources)
        assert not {name for name in template.outputs if name.startswith("OnFailure")}
    for mode in ("Queued", "Stream"):
        own_rule = Rendered(raw, Mode=mode, CreateTopicRule="false", ReplayFailedChunks="true")
        assert not DIRECT_ONLY & set(own_rule.resources)


def test_async_retries_and_event_age_are_lambdas_maximum(raw, direct):
    raw_config = raw["Resources"]["ProxyFunctionEventInvokeConfig"]["Properties"]
    assert raw_config["MaximumRetryAttempts"] == {
        "Fn::FindInMap": ["Tuning", "Direct", "AsyncMaxRetryAttempts"]}
    assert raw_config["MaximumEventAgeInSeconds"] == {
        "Fn::FindInMap": ["Tuning", "Direct", "AsyncMaxEventAgeSeconds"]}
    p = direct.props("ProxyFunctionEventInvokeConfig")
    assert (p["MaximumRetryAttempts"], p["MaximumEventAgeInSeconds"]) == (2, 21600)


def test_on_failure_queue_redrives_to_its_own_dead_letter_queue(direct):
    queue = direct.props("OnFailureQueue")
    redrive = queue["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == arn_of("OnFailureDeadLetterQueue")
    assert redrive["maxReceiveCount"] == 5
    dlq = direct.props("OnFailureDeadLetterQueue")
    assert dlq["MessageRetentionPeriod"] == FOURTEEN_DAYS
    assert dlq["SqsManagedSseEnabled"] is True


def test_replay_mappings_disabled_by_default_and_enabled_together(raw, direct, queued, stream):
    for template in (direct, queued, stream):
        mapping = template.props("QuarantineReplayMapping")
        assert mapping["Enabled"] is False
        assert mapping["EventSourceArn"] == arn_of("QuarantineQueue")
    mapping = direct.props("OnFailureReplayMapping")
    assert mapping["Enabled"] is False
    assert mapping["EventSourceArn"] == arn_of("OnFailureQueue")
    for name in ("QuarantineReplayMapping", "OnFailureReplayMapping"):
        mapping = direct.props(name)
        assert mapping["FunctionName"] == ref("ProxyFunction")
        assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert raw["Parameters"]["ReplayFailedChunks"]["Default"] == "false"
    enabled = Rendered(raw, ReplayFailedChunks="true")
    assert enabled.props("OnFailureReplayMapping")["Enabled"] is True
    assert enabled.props("QuarantineReplayMapping")["Enabled"] is True


def test_consumed_queues_hide_messages_for_six_function_timeouts(direct, queued):
    timeout = direct.function()["Properties"]["Timeout"]
    for name in ("OnFailureQueue", "QuarantineQueue"):
        assert direct.props(name)["VisibilityTimeout"] >= 6 * timeout
    assert queued.props("IngestQueue")["VisibilityTimeout"] >= 6 * timeout


# --- topic rule -------------------------------------------------------------------


def rule(template: Rendered) -> dict[str, Any]:
    return template.props("TopicRule")["TopicRulePayload"]


def test_rule_sql_reads_the_layouts_topic_filter(raw, direct):
    payload = rule(direct)
    assert payload["AwsIotSqlVersion"] == "2016-03-23"
    assert payload["Sql"] == SQL_DIRECT.format("prod/+/+/memfault/#")
    custom = Rendered(raw, TopicLayout="Custom", TopicPattern="fleet/+/{device_serial}/chunks/#")
    assert rule(custom)["Sql"] == SQL_DIRECT.format("fleet/+/+/chunks/#")


@pytest.mark.parametrize("pattern, topic_filter", [
    ("fleet/{project_slug}/devices/{device_serial}/#", "fleet/+/devices/+/#"),
    ("acme/{device_serial}/memfault/{project_key}/chunk", "acme/+/memfault/+/chunk"),
    ("{device_serial}/chunks", "+/chunks"),
    ("a/+/{device_serial}", "a/+/+"),
])
def test_custom_layouts_filter_is_its_pattern_with_wildcards_for_captures(raw, pattern, topic_filter):
    keys = {"ProjectKeys": "a=k"} if "{project_slug}" in pattern else {}
    for mode in MODES:
        custom = Rendered(raw, TopicLayout="Custom", TopicPattern=pattern, Mode=mode, **keys)
        assert rule(custom)["Sql"] == SQL_DIRECT.format(topic_filter)


def test_rule_sql_with_client_id_as_device_serial(raw):
    assert raw["Parameters"]["DeviceSerialFromClientId"]["Default"] == "false"
    with_client_id = Rendered(raw, DeviceSerialFromClientId="true", TopicLayout="MemfaultGuide",
                              ProjectKeys="a=k")
    assert rule(with_client_id)["Sql"] == SQL_CLIENT_ID.format("memfault/+/+/chunks")
    queued = Rendered(raw, DeviceSerialFromClientId="true", Mode="Queued")
    assert rule(queued)["Sql"] == SQL_CLIENT_ID.format("prod/+/+/memfault/#")


def test_topic_pattern_cannot_break_out_of_sql_quotes(raw):
    """The rule's FROM filter is derived from TopicPattern, inside single quotes."""
    pattern = raw["Parameters"]["TopicPattern"]["AllowedPattern"]
    assert re.fullmatch(pattern, "fleet/{project_slug}/devices/{device_serial}/#")
    assert re.fullmatch(pattern, "")
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
    # Direct: Lambda's on-failure destination, and the function's own quarantine writes.
    direct_queues = ["OnFailureQueue", "QuarantineQueue"]
    for template, sent, consumed in ((direct, direct_queues, direct_queues),
                                     (queued, ["QuarantineQueue"], ["IngestQueue", "QuarantineQueue"])):
        table = template.grants("ProxyFunctionRole")
        assert sorted(table) == sorted(["logs:CreateLogStream", "logs:PutLogEvents", "sqs:SendMessage",
                                        *consume])
        assert table["logs:CreateLogStream"] == [arn_of("ProxyLogGroup")]
        assert table["logs:PutLogEvents"] == [arn_of("ProxyLogGroup")]
        assert queue_arns(template, table["sqs:SendMessage"]) == sent
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
        "QuarantineQueueUrl": ref("QuarantineQueue"),
        "QuarantineQueueArn": arn_of("QuarantineQueue"),
        "QuarantineDeadLetterQueueUrl": ref("QuarantineDeadLetterQueue"),
        "QuarantineDeadLetterQueueArn": arn_of("QuarantineDeadLetterQueue"),
        "QuarantineReplayMappingId": ref("QuarantineReplayMapping"),
        "TopicRuleName": ref("TopicRule"),
    }
    expected_direct = {
        "OnFailureQueueUrl": ref("OnFailureQueue"),
        "OnFailureQueueArn": arn_of("OnFailureQueue"),
        "OnFailureDeadLetterQueueUrl": ref("OnFailureDeadLetterQueue"),
        "OnFailureDeadLetterQueueArn": arn_of("OnFailureDeadLetterQueue"),
        "OnFailureReplayMappingId": ref("OnFailureReplayMapping"),
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
    for name, value in expected_direct.items():
        assert direct.outputs[name]["Value"] == value, name
        assert name not in queued.outputs
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
    ("OnFailureQueue", "CKV_AWS_27"),  # SSE-SQS rather than SSE-KMS
    ("OnFailureDeadLetterQueue", "CKV_AWS_27"),
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
