"""Alarms, notifications, dashboard and saved queries in template.yaml (docs/operations.md).

The metric names, dimensions, log fields and outcomes are the ones the function emits
(its EMF documents and JSON log lines); a typo here would give an alarm that never fires
or a query that finds nothing, so they are checked against that list.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest

from template_model import TEMPLATE, Refused, Rendered, arn_of, as_list, ref

RUNBOOK = TEMPLATE.parent / "docs" / "operations.md"

# What the function emits.
FUNCTION_METRICS = {"ChunksForwarded", "BytesForwarded", "UpstreamRequests", "Retries", "Refusals",
                    "ChunksUndelivered", "ChunksQuarantined", "ConfigurationRejected", "UpstreamLatency",
                    "UpstreamFailures"}
FAILURE_CLASSES = ["RateLimited", "ServerError", "Rejected", "Connect", "Connection", "Timeout", "Deadline"]
OUTCOMES = {"delivered", "refused", "upstream_unavailable", "upstream_rejected", "configuration_rejected",
            "quarantined", "stalled", "not_started", "batch"}
LOG_FIELDS = {"outcome", "device_serial", "project_key", "chunks", "bytes", "status", "attempts",
              "upstream_ms", "slowest_upstream_ms", "slowest_item_id", "slowest_device_serial",
              "upstream_time_ms", "device",
              "failure_class", "error_type", "error", "item_id",
              "chunks_forwarded", "undelivered", "refused", "quarantined", "configuration_rejected",
              "level", "message",
              "span.requestId"}

ALWAYS = {"FunctionErrorsAlarm", "FunctionThrottlesAlarm", "QuarantineQueueMessagesAlarm",
          "QuarantineDeadLetterQueueMessagesAlarm"}
RULE = {"RuleErrorQueueMessagesAlarm", "TopicRuleActionFailuresAlarm", "TopicRuleErrorActionFailuresAlarm",
        "TopicRuleMessagesDroppedAlarm"}
FUNCTION_METRIC_ALARMS = {"ChunksUndeliveredAlarm", "RefusalsAlarm", "UpstreamRejectedAlarm",
                          "ConfigurationRejectedAlarm"}
PER_MODE = {
    "Direct": {"AsyncEventAgeAlarm", "DestinationDeliveryFailuresAlarm", "OnFailureQueueMessagesAlarm",
               "OnFailureDeadLetterQueueMessagesAlarm"},
    "Queued": {"IngestQueueAgeAlarm", "IngestDeadLetterQueueMessagesAlarm"},
    "Stream": {"StreamIteratorAgeAlarm", "StreamRecordsDiscardedAlarm", "DestinationDeliveryFailuresAlarm"},
}
# Alarms on chunks lost or set aside for a replay: an OK notification would read as resolved.
NO_OK = {"TopicRuleErrorActionFailuresAlarm", "TopicRuleMessagesDroppedAlarm",
         "DestinationDeliveryFailuresAlarm", "StreamRecordsDiscardedAlarm"}
# Alarms on a rate, which wait AlarmEvaluationPeriods; the others fire on the first period.
RATE_ALARMS = {"FunctionErrorsAlarm", "FunctionThrottlesAlarm", "TopicRuleActionFailuresAlarm",
               "ChunksUndeliveredAlarm", "RefusalsAlarm", "UpstreamRejectedAlarm"}
MODES = ("Direct", "Queued", "Stream")
TOPIC = ref("AlarmTopic")


def alarms(template: Rendered) -> dict[str, dict[str, Any]]:
    return {name: r["Properties"] for name, r in template.of_type("AWS::CloudWatch::Alarm").items()}


def metric_stats(alarm: dict[str, Any]) -> list[dict[str, Any]]:
    """Each metric an alarm reads, as {Namespace, MetricName, Dimensions, Period, Stat}."""
    if "MetricName" in alarm:
        return [{"Namespace": alarm["Namespace"], "MetricName": alarm["MetricName"],
                 "Dimensions": alarm["Dimensions"], "Period": alarm["Period"], "Stat": alarm["Statistic"]}]
    found = []
    for query in alarm["Metrics"]:
        if "MetricStat" in query:
            stat = query["MetricStat"]
            found.append({**stat["Metric"], "Period": stat["Period"], "Stat": stat["Stat"]})
    return found


def dimensions(metric: dict[str, Any]) -> dict[str, Any]:
    return {d["Name"]: d["Value"] for d in metric["Dimensions"]}


def periods(alarm: dict[str, Any]) -> list[int]:
    if "Period" in alarm:
        return [alarm["Period"]]
    return [q["MetricStat"]["Period"] if "MetricStat" in q else q["Period"]
            for q in alarm["Metrics"] if "MetricStat" in q or "SELECT" in q.get("Expression", "")]


# --- which alarms exist ------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_alarm_set_of_each_mode(raw, mode):
    template = Rendered(raw, Mode=mode)
    assert set(alarms(template)) == ALWAYS | RULE | FUNCTION_METRIC_ALARMS | PER_MODE[mode]


@pytest.mark.parametrize("mode", MODES)
def test_alarms_without_a_metrics_namespace_are_refused(raw, mode):
    """Four alarms read the function's metrics, which an empty namespace turns off."""
    with pytest.raises(Refused) as refused:
        Rendered(raw, Mode=mode, MetricsNamespace="")
    assert [f.split(":")[0] for f in refused.value.failures] == ["AlarmsNeedMetrics"]
    assert "MetricsNamespace" in str(refused.value)
    assert not alarms(Rendered(raw, Mode=mode, MetricsNamespace="", CreateAlarms="false"))


def test_function_metric_alarms_read_the_namespace_and_mode(raw):
    template = Rendered(raw, Mode="Stream", MetricsNamespace="Fleet/Chunks")
    table = alarms(template)
    for name in FUNCTION_METRIC_ALARMS:
        (metric,) = metric_stats(table[name])
        assert metric["Namespace"] == "Fleet/Chunks", name
        assert metric["MetricName"] in FUNCTION_METRICS, name
        assert dimensions(metric)["Mode"] == "Stream", name
    (rejected,) = metric_stats(table["UpstreamRejectedAlarm"])
    assert dimensions(rejected) == {"Mode": "Stream", "FailureClass": "Rejected"}
    assert rejected["MetricName"] == "UpstreamFailures"


def test_no_rule_alarms_without_the_rule(raw):
    for mode in MODES:
        template = Rendered(raw, Mode=mode, CreateTopicRule="false")
        assert set(alarms(template)) == ALWAYS | FUNCTION_METRIC_ALARMS | PER_MODE[mode]


def test_nothing_when_alarms_are_off(raw):
    for mode in MODES:
        template = Rendered(raw, Mode=mode, CreateAlarms="false", AlarmEmail="ops@example.com")
        assert not alarms(template)
        for resource_type in ("AWS::SNS::Topic", "AWS::SNS::Subscription", "AWS::KMS::Key"):
            assert not template.of_type(resource_type), resource_type
        assert "AlarmNotificationTopicArn" not in template.outputs
    assert raw["Parameters"]["CreateAlarms"]["Default"] == "true"


# --- notifications -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_every_alarm_notifies_the_topic(raw, mode):
    for name, alarm in alarms(Rendered(raw, Mode=mode)).items():
        assert alarm["AlarmActions"] == [TOPIC], name
        if name in NO_OK:
            assert "OKActions" not in alarm, name
        else:
            assert alarm["OKActions"] == [TOPIC], name
        assert "InsufficientDataActions" not in alarm, name


def test_alarm_topic_is_encrypted_with_a_key_cloudwatch_may_use(direct):
    topic = direct.props("AlarmTopic")
    assert topic["KmsMasterKeyId"] == ref("AlarmTopicKey")
    key = direct.props("AlarmTopicKey")
    assert key["EnableKeyRotation"] is True
    statements = {s["Sid"]: s for s in key["KeyPolicy"]["Statement"]}
    assert set(statements) == {"AccountAdministersTheKey", "CloudWatchAlarmsPublish"}
    cloudwatch = statements["CloudWatchAlarmsPublish"]
    assert cloudwatch["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert sorted(cloudwatch["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey*"]
    admin = statements["AccountAdministersTheKey"]
    assert admin["Principal"] == {"AWS": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}
    assert direct.outputs["AlarmNotificationTopicArn"]["Value"] == TOPIC


def test_email_subscription_only_when_an_address_is_given(raw, direct):
    assert not direct.of_type("AWS::SNS::Subscription")
    template = Rendered(raw, AlarmEmail="ops@example.com")
    (subscription,) = template.of_type("AWS::SNS::Subscription").values()
    assert subscription["Properties"] == {"TopicArn": TOPIC, "Protocol": "email", "Endpoint": "ops@example.com"}
    pattern = raw["Parameters"]["AlarmEmail"]["AllowedPattern"]
    assert re.fullmatch(pattern, "") and re.fullmatch(pattern, "on-call+chunks@example.com")
    assert not re.fullmatch(pattern, "not an address")


def test_existing_topic_replaces_the_created_one(raw):
    arn = "arn:aws:sns:eu-west-1:123456789012:on-call"
    for mode in MODES:
        template = Rendered(raw, Mode=mode, AlarmTopicArn=arn, AlarmEmail="ops@example.com")
        for resource_type in ("AWS::SNS::Topic", "AWS::SNS::Subscription", "AWS::KMS::Key"):
            assert not template.of_type(resource_type), resource_type
        for name, alarm in alarms(template).items():
            assert alarm["AlarmActions"] == [arn], name
        assert template.outputs["AlarmNotificationTopicArn"]["Value"] == arn
    pattern = raw["Parameters"]["AlarmTopicArn"]["AllowedPattern"]
    assert re.fullmatch(pattern, arn) and re.fullmatch(pattern, "")
    # CloudWatch alarms cannot notify FIFO topics.
    assert not re.fullmatch(pattern, arn + ".fifo")


# --- what each alarm reads ---------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_alarms_are_well_formed(raw, mode):
    """One metric or one returned expression over ids that exist, always 'more than threshold'."""
    for name, alarm in alarms(Rendered(raw, Mode=mode)).items():
        assert alarm["ComparisonOperator"] == "GreaterThanThreshold", name
        assert alarm["TreatMissingData"] == "notBreaching", name
        assert "docs/operations.md" in alarm["AlarmDescription"] and name in alarm["AlarmDescription"], name
        if "Metrics" not in alarm:
            assert alarm["Statistic"] in ("Sum", "Maximum"), name
            continue
        assert not {"MetricName", "Namespace", "Statistic", "Period"} & set(alarm), name
        ids = [q["Id"] for q in alarm["Metrics"]]
        assert len(set(ids)) == len(ids), name
        (returned,) = [q for q in alarm["Metrics"] if q["ReturnData"]]
        assert "Expression" in returned, name
        inputs = {q["Id"] for q in alarm["Metrics"] if "MetricStat" in q}
        used = set(re.findall(r"\b[a-z]\w*\b", returned["Expression"])) - {"FILL"}
        if "SELECT" not in returned["Expression"]:
            assert used == inputs, (name, used, inputs)


@pytest.mark.parametrize("mode, queue_alarms", [
    ("Direct", {
        "OnFailureQueueMessagesAlarm": ("OnFailureQueue", "ApproximateNumberOfMessagesVisible", 0),
        "OnFailureDeadLetterQueueMessagesAlarm": (
            "OnFailureDeadLetterQueue", "ApproximateNumberOfMessagesVisible", 0),
        "QuarantineQueueMessagesAlarm": ("QuarantineQueue", "ApproximateNumberOfMessagesVisible", 0),
        "QuarantineDeadLetterQueueMessagesAlarm": (
            "QuarantineDeadLetterQueue", "ApproximateNumberOfMessagesVisible", 0),
    }),
    ("Queued", {
        "RuleErrorQueueMessagesAlarm": ("RuleErrorQueue", "ApproximateNumberOfMessagesVisible", 0),
        "IngestDeadLetterQueueMessagesAlarm": ("IngestDeadLetterQueue", "ApproximateNumberOfMessagesVisible", 0),
        "IngestQueueAgeAlarm": ("IngestQueue", "ApproximateAgeOfOldestMessage", 600),
    }),
])
def test_queue_alarms_watch_their_queue(raw, mode, queue_alarms):
    table = alarms(Rendered(raw, Mode=mode))
    for name, (queue, metric_name, threshold) in queue_alarms.items():
        (metric,) = metric_stats(table[name])
        assert (metric["Namespace"], metric["MetricName"], metric["Stat"]) == ("AWS/SQS", metric_name, "Maximum")
        assert dimensions(metric) == {"QueueName": {"Fn::GetAtt": [queue, "QueueName"]}}, name
        assert table[name]["Threshold"] == threshold, name


def test_function_alarms_watch_the_function(raw):
    expected = {
        "FunctionErrorsAlarm": ("Errors", "Direct"),
        "FunctionThrottlesAlarm": ("Throttles", "Direct"),
        "DestinationDeliveryFailuresAlarm": ("DestinationDeliveryFailures", "Direct"),
        "AsyncEventAgeAlarm": ("AsyncEventAge", "Direct"),
        "StreamIteratorAgeAlarm": ("IteratorAge", "Stream"),
    }
    for name, (metric_name, mode) in expected.items():
        (metric,) = metric_stats(alarms(Rendered(raw, Mode=mode))[name])
        assert (metric["Namespace"], metric["MetricName"]) == ("AWS/Lambda", metric_name), name
        assert dimensions(metric) == {"FunctionName": ref("ProxyFunction")}, name


@pytest.mark.parametrize("name,mode", [("AsyncEventAgeAlarm", "Direct"), ("StreamIteratorAgeAlarm", "Stream")])
def test_millisecond_ages_are_compared_in_seconds(raw, name, mode):
    alarm = alarms(Rendered(raw, Mode=mode))[name]
    (returned,) = [q for q in alarm["Metrics"] if q["ReturnData"]]
    assert returned["Expression"] == "age / 1000"
    assert metric_stats(alarm)[0]["Stat"] == "Maximum"
    assert alarm["Threshold"] == raw["Mappings"]["Tuning"]["Alarms"]["BacklogAgeAlarmSeconds"] == 600


def test_stream_discard_alarm_reads_the_mapping_metrics(stream):
    alarm = alarms(stream)["StreamRecordsDiscardedAlarm"]
    read = {m["MetricName"]: dimensions(m) for m in metric_stats(alarm)}
    assert read == {name: {"EventSourceMappingUUID": ref("StreamEventSourceMapping")}
                    for name in ("OnFailureDestinationDeliveredEventCount", "DroppedEventCount")}
    # Those metrics exist only with the mapping's EventCount metrics turned on.
    assert stream.props("StreamEventSourceMapping")["MetricsConfig"] == {"Metrics": ["EventCount"]}


def test_rule_alarms_read_this_rule(direct):
    table = alarms(direct)
    for name, metric_name in (("TopicRuleActionFailuresAlarm", "Failure"),
                              ("TopicRuleErrorActionFailuresAlarm", "ErrorActionFailure")):
        (query,) = table[name]["Metrics"]
        assert query["Expression"] == (f'SELECT SUM({metric_name}) FROM SCHEMA("AWS/IoT", ActionType, RuleName) '
                                       "WHERE RuleName = '${TopicRule}'"), name
    read = {m["MetricName"]: dimensions(m) for m in metric_stats(table["TopicRuleMessagesDroppedAlarm"])}
    assert read == {"RuleMessageThrottled": {"RuleName": ref("TopicRule")},
                    "RuleNotFound": {"RuleName": ref("TopicRule")}}


def test_thresholds_and_periods_come_from_tuning(raw):
    """Every alarm reads its period and thresholds from Mappings Tuning: changed there, they change."""
    tuned = copy.deepcopy(raw)
    tuned["Mappings"]["Tuning"]["Alarms"] = {
        "AlarmPeriodSeconds": 60, "AlarmEvaluationPeriods": 3, "FunctionErrorsAlarmThreshold": 5,
        "UndeliveredChunksAlarmThreshold": 7, "RefusalsAlarmThreshold": 11, "BacklogAgeAlarmSeconds": 900}
    for mode in MODES:
        table = alarms(Rendered(tuned, Mode=mode))
        for name, alarm in table.items():
            assert periods(alarm) and set(periods(alarm)) == {60}, name
            assert alarm["EvaluationPeriods"] == (3 if name in RATE_ALARMS else 1), name
        assert table["FunctionErrorsAlarm"]["Threshold"] == 5
        assert table["ChunksUndeliveredAlarm"]["Threshold"] == 7
        assert table["RefusalsAlarm"]["Threshold"] == 11
        backlog = {"Direct": "AsyncEventAgeAlarm", "Queued": "IngestQueueAgeAlarm",
                   "Stream": "StreamIteratorAgeAlarm"}[mode]
        assert table[backlog]["Threshold"] == 900


def test_alarm_defaults_are_ones_cloudwatch_accepts(raw, direct):
    # Standard resolution alarms take 60 s or a multiple of it.
    tuning = raw["Mappings"]["Tuning"]["Alarms"]
    assert tuning["AlarmPeriodSeconds"] == 300 and tuning["AlarmPeriodSeconds"] % 60 == 0
    assert tuning["AlarmEvaluationPeriods"] == 1
    for name, alarm in alarms(direct).items():
        assert set(periods(alarm)) == {300}, name
        assert alarm["EvaluationPeriods"] == 1, name


# --- runbook ------------------------------------------------------------------------------


def test_runbook_has_a_section_for_every_alarm(raw):
    text = RUNBOOK.read_text()
    headings = set(re.findall(r"^### (\w+Alarm)$", text, re.MULTILINE))
    declared = {name for name, r in raw["Resources"].items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    assert headings == declared
    sections = re.split(r"^### ", text, flags=re.MULTILINE)[1:]
    for section in sections:
        name = section.split("\n", 1)[0]
        if name in declared:
            for part in ("**Means**", "**First look**", "**Usual causes**", "**Fix**", "**Replay**"):
                assert part in section, (name, part)


# --- dashboard ------------------------------------------------------------------------------


def dashboard(template: Rendered) -> dict[str, Any]:
    body = template.props("Dashboard")["DashboardBody"]
    assert isinstance(body, str), "the dashboard body did not resolve to one string"
    return json.loads(body)


def metric_rows(board: dict[str, Any]) -> list[list[Any]]:
    return [row for w in board["widgets"] if w["type"] == "metric" for row in w["properties"]["metrics"]]


def plotted(board: dict[str, Any]) -> set[tuple[str, str]]:
    return {(row[0], row[1]) for row in metric_rows(board) if isinstance(row[0], str)}


VARIANTS = [dict(Mode=m) for m in MODES] + [
    dict(Mode=m, CreateTopicRule="false", MetricsNamespace="", CreateAlarms="false") for m in MODES]


@pytest.mark.parametrize("overrides", VARIANTS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_dashboard_refers_only_to_what_the_deployment_has(raw, overrides):
    template = Rendered(raw, **overrides)
    board = dashboard(template)
    for widget in board["widgets"]:
        assert {"type", "width", "height", "properties"} <= set(widget)
        if widget["type"] == "metric":
            assert widget["properties"]["region"] == "${AWS::Region}"
    pairs = plotted(board)
    mode = overrides["Mode"]
    assert (("AWS/SQS", "ApproximateAgeOfOldestMessage") in pairs)
    assert (("AWS/Lambda", "IteratorAge") in pairs) == (mode == "Stream")
    assert (("AWS/Kinesis", "IncomingRecords") in pairs) == (mode == "Stream")
    assert (("AWS/IoT", "TopicMatch") in pairs) == ("CreateTopicRule" not in overrides)
    namespace = template.parameters["MetricsNamespace"]
    assert bool({m for ns, m in pairs if ns == namespace}) == bool(namespace)
    for metric in ("Invocations", "Errors", "Throttles", "Duration", "ConcurrentExecutions"):
        assert ("AWS/Lambda", metric) in pairs, metric


def test_dashboard_plots_the_function_metrics(direct):
    board = dashboard(direct)
    rows = [r for r in metric_rows(board) if r[0] == "MemfaultChunkProxy"]
    assert {r[1] for r in rows} == FUNCTION_METRICS
    assert all(r[2:4] == ["Mode", "Direct"] for r in rows)
    classes = [r[5] for r in rows if r[1] == "UpstreamFailures"]
    assert classes == FAILURE_CLASSES
    latency = [r[4]["stat"] for r in rows if r[1] == "UpstreamLatency"]
    assert latency == ["p50", "p99"]


def test_dashboard_plots_the_queues_of_the_mode(raw):
    def queues(template: Rendered) -> set[str]:
        rows = [r for r in metric_rows(dashboard(template)) if r[0] == "AWS/SQS"]
        assert all(re.fullmatch(r"\$\{\w+\.QueueName\}", r[3]) for r in rows)
        return {r[3][2:].split(".")[0] for r in rows}

    quarantine = {"QuarantineQueue", "QuarantineDeadLetterQueue"}
    on_failure = {"OnFailureQueue", "OnFailureDeadLetterQueue"}
    assert queues(Rendered(raw)) == quarantine | on_failure | {"RuleErrorQueue"}
    assert queues(Rendered(raw, Mode="Queued")) == quarantine | {"RuleErrorQueue", "IngestQueue",
                                                                 "IngestDeadLetterQueue"}
    assert queues(Rendered(raw, Mode="Stream")) == quarantine | {"RuleErrorQueue"}
    assert queues(Rendered(raw, CreateTopicRule="false")) == quarantine | on_failure


def test_dashboard_is_optional(raw):
    template = Rendered(raw, CreateDashboard="false")
    assert not template.of_type("AWS::CloudWatch::Dashboard")
    assert "DashboardName" not in template.outputs and "DashboardUrl" not in template.outputs
    assert raw["Parameters"]["CreateDashboard"]["Default"] == "true"


# --- saved Logs Insights queries ------------------------------------------------------------


def queries(template: Rendered) -> dict[str, dict[str, Any]]:
    return {r["Properties"]["Name"]: r["Properties"] for r in template.of_type("AWS::Logs::QueryDefinition").values()}


def test_saved_queries_in_every_mode(raw):
    for mode in MODES:
        found = queries(Rendered(raw, Mode=mode, CreateAlarms="false", CreateDashboard="false"))
        assert set(found) == {"${AWS::StackName}/undelivered-chunks-by-device",
                              "${AWS::StackName}/refusals-by-error-type", "${AWS::StackName}/slowest-uploads"}
        for query in found.values():
            assert query["LogGroupNames"] == [ref("ProxyLogGroup")]


def test_saved_queries_use_the_function_log_fields(direct):
    for name, query in queries(direct).items():
        text = query["QueryString"]
        for values in re.findall(r"outcome in \[([^\]]*)\]", text):
            assert set(re.findall(r'"(\w+)"', values)) <= OUTCOMES, name
        for fields in re.findall(r"^fields (.*)$", text, re.MULTILINE):
            # Field names, also inside functions such as coalesce(a, b) as c.
            words = re.finditer(r"@?[A-Za-z_][\w.]*(\()?", fields)
            names = {w.group(0) for w in words if not w.group(1)} - {"as", "@timestamp"}
            assert names <= LOG_FIELDS, (name, names - LOG_FIELDS)
        for by in re.findall(r" by ([\w., ]+)$", text, re.MULTILINE):
            assert {f.strip() for f in by.split(",")} <= LOG_FIELDS, name


def test_undelivered_query_counts_every_undelivered_outcome(direct):
    text = queries(direct)["${AWS::StackName}/undelivered-chunks-by-device"]["QueryString"]
    (values,) = re.findall(r"outcome in \[([^\]]*)\]", text)
    assert set(re.findall(r'"(\w+)"', values)) == {"upstream_unavailable", "upstream_rejected", "quarantined"}
    assert "by device_serial" in text


def test_slowest_uploads_sorts_by_upstream_time(direct):
    text = queries(direct)["${AWS::StackName}/slowest-uploads"]["QueryString"]
    assert "coalesce(upstream_ms, slowest_upstream_ms) as upstream_time_ms" in text
    assert "sort upstream_time_ms desc" in text


# --- outputs ------------------------------------------------------------------------------


def test_operations_outputs(direct):
    assert direct.outputs["DashboardName"]["Value"] == ref("Dashboard")
    url = direct.outputs["DashboardUrl"]["Value"]
    assert url.endswith("#dashboards:name=${Dashboard}") and "${AWS::Region}" in url


def test_no_reference_to_an_absent_resource(raw):
    """A Ref, GetAtt or Sub of a resource the variant does not create fails the deployment."""
    def refs(node: Any) -> set[str]:
        if isinstance(node, dict):
            if set(node) == {"Ref"}:
                return {node["Ref"]}
            if set(node) == {"Fn::GetAtt"}:
                return {node["Fn::GetAtt"][0]}
            return set().union(*(refs(v) for v in node.values())) if node else set()
        if isinstance(node, list):
            return set().union(*(refs(v) for v in node)) if node else set()
        if isinstance(node, str):
            # What Fn::Sub left: logical ids, not IoT substitutions such as ${topic(3)}.
            return set(re.findall(r"\$\{([A-Za-z0-9]+)(?:\.[\w.]+)?\}", node))
        return set()

    for overrides in VARIANTS + [dict(Mode=m, AlarmTopicArn="arn:aws:sns:us-east-1:123456789012:x") for m in MODES]:
        template = Rendered(raw, **overrides)
        for name, resource in template.resources.items():
            for target in refs(resource):
                assert target.startswith("AWS::") or target in template.resources, (overrides, name, target)
        for name, output in template.outputs.items():
            for target in refs(output["Value"]):
                assert target.startswith("AWS::") or target in template.resources, (overrides, name, target)


def test_sam_transform_keeps_alarm_and_dashboard_references():
    import render_template

    template = render_template.load()
    render_template.override_defaults(template, {"Mode": "Stream"})
    resources = render_template.sam_transform(template)["Resources"]
    assert resources["FunctionErrorsAlarm"]["Properties"]["Dimensions"] == [
        {"Name": "FunctionName", "Value": ref("ProxyFunction")}]
    assert resources["ProxyFunction"]["Type"] == "AWS::Lambda::Function"
    assert as_list(resources["Dashboard"]["Properties"]["DashboardBody"]["Fn::Join"][1])
    assert arn_of("IngestStream") == resources["StreamEventSourceMapping"]["Properties"]["EventSourceArn"]
