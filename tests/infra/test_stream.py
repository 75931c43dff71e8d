"""Stream mode (topic rule -> Kinesis -> event source mapping) and Basic Ingest in template.yaml.

The names and defaults asserted here are the ones the function, the replay script and the
docs rely on; the ranges are checked against CloudFormation's own resource schemas, as
cfn-lint ships them, so a parameter cannot allow a value the service refuses.
"""

from __future__ import annotations

from typing import Any

import pytest

from template_model import Rendered, arn_of, ref

STREAM_RESOURCES = {"IngestStream", "StreamEventSourceMapping", "StreamFailureBucket",
                    "StreamFailureBucketPolicy"}
STREAM_OUTPUTS = {"IngestStreamName": ref("IngestStream"),
                  "IngestStreamArn": arn_of("IngestStream"),
                  "StreamEventSourceMappingId": ref("StreamEventSourceMapping"),
                  "StreamFailureBucketName": ref("StreamFailureBucket")}
BUCKET_OBJECTS = "${StreamFailureBucket.Arn}/*"
THING = "${iot:Connection.Thing.ThingName}"
ARN_PREFIX = "arn:${AWS::Partition}:iot:${AWS::Region}:${AWS::AccountId}:topic/"


def schema_property(resource_type: str, name: str) -> dict[str, Any]:
    from cfnlint.schema import PROVIDER_SCHEMA_MANAGER

    schema = PROVIDER_SCHEMA_MANAGER.get_resource_schema("us-east-1", resource_type).schema
    return schema["properties"][name]


def rule_actions(template: Rendered) -> list[dict[str, Any]]:
    return template.props("TopicRule")["TopicRulePayload"]["Actions"]


def partition_key(template: Rendered) -> str:
    (action,) = rule_actions(template)
    return action["Kinesis"]["PartitionKey"]


# --- parameters ---------------------------------------------------------------------


STREAM_PARAMETERS = {
    # name: (default, min, max)
    "StreamShardCount": (0, 0, 1000),
    "StreamBatchSize": (500, 1, 10000),
    "StreamParallelizationFactor": (1, 1, 10),
    "StreamMaxRecordAgeSeconds": (21600, -1, 86400),
    "DeviceSerialTopicLevel": (0, 0, 8),
}
# Folded into Mappings Tuning Stream: nobody needs to change them for Stream mode to work.
STREAM_TUNING = {"StreamRetentionHours": 24, "StreamMaxRetryAttempts": -1,
                 "StreamMaxBatchingWindowSeconds": 1, "StreamFailureRetentionDays": 30}


def test_mode_and_stream_parameters(raw):
    assert raw["Parameters"]["Mode"]["AllowedValues"] == ["Direct", "Queued", "Stream"]
    assert raw["Parameters"]["Mode"]["Default"] == "Direct"
    for name, (default, low, high) in STREAM_PARAMETERS.items():
        spec = raw["Parameters"][name]
        assert spec["Type"] == "Number", name
        assert (spec["Default"], spec["MinValue"], spec.get("MaxValue")) == (default, low, high), name
    assert raw["Mappings"]["Tuning"]["Stream"] == STREAM_TUNING


def test_stream_parameter_ranges_fit_the_services(raw):
    """Every value a parameter allows, and every constant, is one CloudFormation accepts for the
    property it feeds (a shard count of 0 stands for on-demand and sets none)."""
    parameters = raw["Parameters"]
    feeds = {
        "StreamBatchSize": ("AWS::Lambda::EventSourceMapping", "BatchSize"),
        "StreamParallelizationFactor": ("AWS::Lambda::EventSourceMapping", "ParallelizationFactor"),
        "StreamMaxRecordAgeSeconds": ("AWS::Lambda::EventSourceMapping", "MaximumRecordAgeInSeconds"),
    }
    for name, (resource_type, prop) in feeds.items():
        spec, limits = parameters[name], schema_property(resource_type, prop)
        assert spec["MinValue"] >= limits.get("minimum", spec["MinValue"]), name
        assert spec["MaxValue"] <= limits.get("maximum", spec["MaxValue"]), name
    shards = schema_property("AWS::Kinesis::Stream", "ShardCount")
    assert parameters["StreamShardCount"]["MaxValue"] <= shards.get("maximum", 1000)
    assert shards.get("minimum", 1) == 1
    constants = {
        "StreamMaxBatchingWindowSeconds": ("AWS::Lambda::EventSourceMapping", "MaximumBatchingWindowInSeconds"),
        "StreamMaxRetryAttempts": ("AWS::Lambda::EventSourceMapping", "MaximumRetryAttempts"),
        "StreamRetentionHours": ("AWS::Kinesis::Stream", "RetentionPeriodHours"),
    }
    for name, (resource_type, prop) in constants.items():
        limits = schema_property(resource_type, prop)
        value = STREAM_TUNING[name]
        assert limits.get("minimum", value) <= value <= limits.get("maximum", value), name


def test_record_age_never_outlasts_the_streams_retention(raw):
    """The mapping gives a record up to the stream failure bucket before the stream drops it:
    the largest age the parameter allows is the retention (-1 is refused by a Rule)."""
    retention_seconds = raw["Mappings"]["Tuning"]["Stream"]["StreamRetentionHours"] * 3600
    spec = raw["Parameters"]["StreamMaxRecordAgeSeconds"]
    assert spec["MaxValue"] == retention_seconds
    assert 60 <= spec["Default"] < retention_seconds


def test_each_preset_layout_keys_its_stream_by_the_level_of_its_serial(raw):
    for layout in raw["Mappings"]["TopicLayouts"].values():
        assert int(layout["SerialLevel"]) == layout["Pattern"].split("/").index("{device_serial}") + 1


@pytest.mark.parametrize("level", range(1, 9))
def test_a_custom_layout_keys_its_stream_by_the_serial_level_of_its_pattern(raw, level):
    """Read from the pattern: no second number to keep in line with it."""
    levels = [f"l{n}" for n in range(1, 9)]
    levels[level - 1] = "{device_serial}"
    for pattern in ("/".join(levels), "/".join(levels[:level]), "/".join(levels[:level] + ["#"])):
        custom = Rendered(raw, Mode="Stream", TopicLayout="Custom", TopicPattern=pattern)
        assert partition_key(custom) == f"${{topic({level})}}", pattern
        assert Rendered(raw, Mode="Stream", TopicLayout="Custom", TopicPattern=pattern,
                        DeviceSerialTopicLevel=str(level)).resources == custom.resources


# --- resources per mode -----------------------------------------------------------------


def test_stream_resources_exist_only_in_stream_mode(direct, queued, stream):
    assert STREAM_RESOURCES <= set(stream.resources)
    for template in (direct, queued):
        assert not STREAM_RESOURCES & set(template.resources)
    for absent in ("IngestQueue", "IngestDeadLetterQueue", "IngestEventSourceMapping",
                   "TopicRuleInvokePermission"):
        assert absent not in stream.resources, absent
    # The quarantine queue, its replay mapping and the rule's error queue stay in Stream mode;
    # Lambda's on-failure queue is Direct mode's.
    for present in ("QuarantineQueue", "QuarantineDeadLetterQueue", "QuarantineReplayMapping", "RuleErrorQueue"):
        assert present in stream.resources, present
    for absent in ("OnFailureQueue", "OnFailureDeadLetterQueue", "OnFailureReplayMapping"):
        assert absent not in stream.resources, absent


def test_on_demand_stream_is_encrypted_and_keyed_by_partition(raw, stream):
    p = stream.props("IngestStream")
    assert p["StreamModeDetails"] == {"StreamMode": "ON_DEMAND"}
    assert "ShardCount" not in p
    assert p["RecordDistributionStrategy"] == "USER_PARTITION_KEY"
    assert p["StreamEncryption"] == {"EncryptionType": "KMS", "KeyId": "alias/aws/kinesis"}
    assert p["RetentionPeriodHours"] == 24
    resource = raw["Resources"]["IngestStream"]
    assert (resource["DeletionPolicy"], resource["UpdateReplacePolicy"]) == ("Retain", "Retain")


def test_a_shard_count_makes_the_stream_provisioned(raw):
    template = Rendered(raw, Mode="Stream", StreamShardCount="4")
    p = template.props("IngestStream")
    assert p["StreamModeDetails"] == {"StreamMode": "PROVISIONED"}
    assert p["ShardCount"] == 4
    # Provisioned streams refuse the record distribution setting.
    assert "RecordDistributionStrategy" not in p
    assert p["RetentionPeriodHours"] == 24


def test_stream_mapping_defaults(stream):
    mapping = stream.props("StreamEventSourceMapping")
    assert mapping == {
        "EventSourceArn": arn_of("IngestStream"),
        "FunctionName": ref("ProxyFunction"),
        "Enabled": True,
        "StartingPosition": "TRIM_HORIZON",
        "BatchSize": 500,
        "MaximumBatchingWindowInSeconds": 1,
        "ParallelizationFactor": 1,
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
        "BisectBatchOnFunctionError": True,
        "MaximumRetryAttempts": -1,
        "MaximumRecordAgeInSeconds": 21600,
        "DestinationConfig": {"OnFailure": {"Destination": arn_of("StreamFailureBucket")}},
        "MetricsConfig": {"Metrics": ["EventCount"]},
    }


def test_stream_mapping_takes_its_parameters(raw):
    template = Rendered(raw, Mode="Stream", StreamBatchSize="1000", StreamParallelizationFactor="4",
                        StreamMaxRecordAgeSeconds="3600")
    mapping = template.props("StreamEventSourceMapping")
    assert (mapping["BatchSize"], mapping["ParallelizationFactor"], mapping["MaximumRecordAgeInSeconds"]) == (
        1000, 4, 3600)


def test_failure_bucket_is_private_encrypted_versioned_and_expiring(raw, stream):
    bucket = stream.props("StreamFailureBucket")
    (rule,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    assert bucket["PublicAccessBlockConfiguration"] == dict.fromkeys(
        ["BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"], True)
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    (lifecycle,) = bucket["LifecycleConfiguration"]["Rules"]
    assert lifecycle["Status"] == "Enabled"
    assert lifecycle["ExpirationInDays"] == 30
    assert lifecycle["NoncurrentVersionExpiration"] == {"NoncurrentDays": 30}
    resource = raw["Resources"]["StreamFailureBucket"]
    assert (resource["DeletionPolicy"], resource["UpdateReplacePolicy"]) == ("Retain", "Retain")


def test_failure_bucket_refuses_requests_without_tls(stream):
    policy = stream.props("StreamFailureBucketPolicy")
    assert policy["Bucket"] == ref("StreamFailureBucket")
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Principal"] == "*"
    assert statement["Action"] == "s3:*"
    assert statement["Resource"] == [arn_of("StreamFailureBucket"), BUCKET_OBJECTS]
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


# --- topic rule ----------------------------------------------------------------------


def test_rule_puts_records_keyed_by_the_serial_topic_level(raw, stream):
    (action,) = rule_actions(stream)
    assert action == {"Kinesis": {"StreamName": ref("IngestStream"), "PartitionKey": "${topic(3)}",
                                  "RoleArn": arn_of("TopicRuleRole")}}
    custom = Rendered(raw, Mode="Stream", TopicLayout="Custom",
                      TopicPattern="fleet/+/devices/{device_serial}/memfault")
    assert partition_key(custom) == "${topic(4)}"


def test_partition_key_is_the_client_id_when_the_serial_comes_from_it(raw):
    template = Rendered(raw, Mode="Stream", DeviceSerialFromClientId="true", TopicLayout="Custom",
                        TopicPattern="a/b/c/d/{device_serial}", DeviceSerialTopicLevel="5")
    assert partition_key(template) == "${clientid()}"
    sql = template.props("TopicRule")["TopicRulePayload"]["Sql"]
    assert "clientid() AS device_serial" in sql


def test_rule_role_may_put_records_only_on_the_stream(direct, queued, stream):
    table = stream.grants("TopicRuleRole")
    assert table["kinesis:PutRecord"] == [arn_of("IngestStream")]
    assert set(table) == {"sqs:SendMessage", "kinesis:PutRecord"}
    for template in (direct, queued):
        assert not [a for a in template.grants("TopicRuleRole") if a.startswith("kinesis:")]


# --- function -------------------------------------------------------------------------


def test_the_function_sets_aside_on_the_fifo_quarantine_queue_in_every_mode(direct, queued, stream):
    for template in (direct, queued, stream):
        variables = template.function()["Properties"]["Environment"]["Variables"]
        assert variables["MEMFAULT_QUARANTINE_QUEUE_URL"] == ref("QuarantineQueue")
        queue = template.props("QuarantineQueue")
        assert queue["FifoQueue"] is True and queue["ContentBasedDeduplication"] is False
        assert queue["RedrivePolicy"]["deadLetterTargetArn"] == arn_of("QuarantineDeadLetterQueue")
        assert template.props("QuarantineDeadLetterQueue")["FifoQueue"] is True
        bucket = variables.get("MEMFAULT_STREAM_FAILURE_BUCKET_URL")
        if template is stream:
            assert bucket == "https://${StreamFailureBucket.RegionalDomainName}"
        else:
            assert bucket is None
        mapping = template.props("QuarantineReplayMapping")
        assert mapping["EventSourceArn"] == arn_of("QuarantineQueue")
        assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


STREAM_READ = ["kinesis:DescribeStream", "kinesis:DescribeStreamSummary", "kinesis:GetRecords",
               "kinesis:GetShardIterator", "kinesis:ListShards"]
SQS_CONSUME = ["sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:GetQueueAttributes",
               "sqs:ReceiveMessage"]


def test_function_role_in_stream_mode_is_least_privilege(stream):
    table = stream.grants("ProxyFunctionRole")
    assert sorted(table) == sorted(["logs:CreateLogStream", "logs:PutLogEvents", "sqs:SendMessage",
                                    *SQS_CONSUME, *STREAM_READ, "s3:PutObject", "s3:ListBucket"])
    for action in STREAM_READ:
        assert table[action] == [arn_of("IngestStream")], action
    assert table["s3:PutObject"] == [BUCKET_OBJECTS]
    assert table["s3:ListBucket"] == [arn_of("StreamFailureBucket")]
    # Quarantine and its replay use only the quarantine queue: no ingest queue, no on-failure queue.
    queues = [arn_of("QuarantineQueue")]
    assert table["sqs:SendMessage"] == queues
    for action in SQS_CONSUME:
        assert table[action] == queues, action


def test_stream_and_bucket_permissions_only_in_stream_mode(direct, queued):
    for template in (direct, queued):
        assert not [a for a in template.grants("ProxyFunctionRole") if a.split(":")[0] in ("kinesis", "s3")]


def test_stream_outputs(direct, queued, stream):
    for name, value in STREAM_OUTPUTS.items():
        assert stream.outputs[name]["Value"] == value, name
        assert name not in direct.outputs and name not in queued.outputs, name


def test_sam_transform_keeps_the_stream_wiring():
    import render_template

    template = render_template.load()
    render_template.override_defaults(template, {"Mode": "Stream"})
    resources = render_template.sam_transform(template)["Resources"]
    variables = resources["ProxyFunction"]["Properties"]["Environment"]["Variables"]
    assert variables["MEMFAULT_QUARANTINE_QUEUE_URL"] == ref("QuarantineQueue")
    mapping = resources["StreamEventSourceMapping"]["Properties"]
    assert mapping["FunctionName"] == ref("ProxyFunction")
    assert mapping["DestinationConfig"] == {"OnFailure": {"Destination": arn_of("StreamFailureBucket")}}


# --- Basic Ingest ---------------------------------------------------------------------


def publish_resource(template: Rendered) -> str:
    (policy,) = template.of_type("AWS::IoT::Policy").values()
    (publish,) = [s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Action"] == "iot:Publish"]
    return publish["Resource"]


@pytest.mark.parametrize("mode", ["Direct", "Queued", "Stream"])
def test_basic_ingest_policy_allows_only_the_basic_ingest_form_of_the_device_topic(raw, mode):
    plain = Rendered(raw, Mode=mode, CreateDevicePolicy="true")
    assert publish_resource(plain) == f"{ARN_PREFIX}prod/*/{THING}/memfault/*/chunk"
    basic = Rendered(raw, Mode=mode, CreateDevicePolicy="true", BasicIngest="true")
    assert publish_resource(basic) == f"{ARN_PREFIX}$aws/rules/memfault_chunk_proxy/prod/*/{THING}/memfault/*/chunk"
    renamed = Rendered(raw, Mode=mode, CreateDevicePolicy="true", BasicIngest="true", TopicRuleName="fleet_chunks")
    assert publish_resource(renamed) == f"{ARN_PREFIX}$aws/rules/fleet_chunks/prod/*/{THING}/memfault/*/chunk"


def test_basic_ingest_output_names_the_topic_prefix(raw, direct):
    assert raw["Parameters"]["BasicIngest"]["Default"] == "false"
    assert "BasicIngestTopicPrefix" not in direct.outputs
    basic = Rendered(raw, BasicIngest="true", TopicRuleName="fleet_chunks")
    assert basic.outputs["BasicIngestTopicPrefix"]["Value"] == "$aws/rules/fleet_chunks/"
    # The prefix exists when devices use someone else's rule of that name too.
    own_rule = Rendered(raw, BasicIngest="true", CreateTopicRule="false")
    assert own_rule.outputs["BasicIngestTopicPrefix"]["Value"] == "$aws/rules/memfault_chunk_proxy/"


def test_basic_ingest_leaves_the_rule_unchanged(raw):
    for mode in ("Direct", "Queued", "Stream"):
        plain = Rendered(raw, Mode=mode).props("TopicRule")
        basic = Rendered(raw, Mode=mode, BasicIngest="true").props("TopicRule")
        assert basic == plain, mode
