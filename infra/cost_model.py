"""The cost and concurrency model of docs/cost-model.md, as arithmetic anyone can rerun.

    python3 infra/cost_model.py            # prints the tables of docs/cost-model.md

Every price is an assumption (us-east-1 list prices; check them on the pages named in PRICES
before relying on a figure). Durations and log line sizes come from `make bench` and from the
function's own output, as noted where they are defined. Sizes and defaults (batch sizes, upload
concurrency) are read from template.yaml, so the model sizes what a stack deploys. The docs quote
no other dollar figure: tests/check_docs.py holds every `$` amount in README.md and docs/ to the
figures this file produces (figures()) and docs/cost-model.md's tables to fleet_tables().
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parents[1] / "template.yaml"


def template_number(name: str, template: Path = TEMPLATE) -> int:
    """A parameter's Default or a Tuning mapping value, from the template's text (the layout the
    template keeps: `Name:` then `Default: N` under it, or `Name: N`); standard library only."""
    text = template.read_text()
    found = (re.search(rf"^  {name}:\n(?:    .*\n)*?    Default: (-?\d+)$", text, re.MULTILINE)
             or re.search(rf"^ +{name}: (-?\d+)$", text, re.MULTILINE))
    if not found:
        raise LookupError(f"template.yaml has no number {name}")
    return int(found.group(1))

MILLION = 1_000_000
DAYS = 30
SECONDS = DAYS * 24 * 3600
HOURS = DAYS * 24

# Assumed list prices, us-east-1, in USD.
PRICES = {
    # https://aws.amazon.com/iot-core/pricing/ (messages metered in 5 KB increments; the first
    # billion a month at this rate). Basic Ingest messages are not charged for messaging.
    "iot_message": 1.00 / MILLION,
    "iot_rule": 0.15 / MILLION,
    "iot_action": 0.15 / MILLION,
    # https://aws.amazon.com/lambda/pricing/ (arm64, first 7.5 billion GB-s a month).
    "lambda_request": 0.20 / MILLION,
    "lambda_gb_second": 0.0000133334,
    # https://aws.amazon.com/sqs/pricing/ (standard queue, per 64 KB request).
    "sqs_request": 0.40 / MILLION,
    # https://aws.amazon.com/kinesis/data-streams/pricing/
    "kinesis_shard_hour": 0.015,
    "kinesis_put_unit": 0.014 / MILLION,  # 25 KB each
    "kinesis_on_demand_stream_hour": 0.04,
    "kinesis_on_demand_gb_in": 0.08,  # records rounded up to 1 KB
    "kinesis_on_demand_gb_out": 0.04,
    # https://aws.amazon.com/cloudwatch/pricing/ (Logs ingestion; 26 bytes counted per event).
    "logs_gb": 0.50,
    # https://aws.amazon.com/eventbridge/pricing/ (Pipes: per request, each 64 KB of payload one
    # request; API destinations: per invocation). For "Why a function" in docs/modes.md.
    "pipes_request": 0.40 / MILLION,
    "api_destination_invocation": 0.20 / MILLION,
    # https://aws.amazon.com/cloudwatch/pricing/ (a standard-resolution alarm metric, a dashboard)
    # and https://aws.amazon.com/kms/pricing/ (a customer managed key), per month: the stack's
    # fixed cost in docs/operations.md.
    "alarm_metric_month": 0.10,
    "dashboard_month": 3.00,
    "kms_key_month": 1.00,
}

MEMORY_GB = 128 / 1024
ROUND_TRIP_S = 0.050  # Memfault from the Lambda region: an assumption, the bench runs on loopback.
# Measured by `make bench` (stream rows): an invocation of 500 devices at a 50 ms upstream took
# 417 ms against an ideal of 8 round trips (400 ms) at the default concurrency of 64.
MEASURED_OVER_IDEAL = 417 / 400
# Measured: the function's own work per direct invocation (bench: warm overhead, p50 between
# 0.06 and 0.11 ms over runs; the upper end, rounded up).
DIRECT_OVERHEAD_S = 0.00014
# Measured from the function's JSON output (`AWS_LAMBDA_LOG_FORMAT=JSON make local`), plus the
# invocation's span (75 bytes) and CloudWatch's 26 bytes per event.
LOG_DELIVERED_LINE = 196 + 75 + 26
LOG_BATCH_LINE = 180 + 75 + 26
LOG_EMF_DOCUMENT = 640 + 26
GB = 1024**3
RECORD_KB = 1  # the rule's JSON for a chunk of up to about 600 bytes fits in 1 KB (and 5 KB, 25 KB)
# What a stack deploys: the defaults and fixed settings of template.yaml.
UPLOAD_CONCURRENCY = template_number("UploadConcurrency")
SQS_BATCH_SIZE = template_number("SqsBatchSize")
SQS_WINDOW_S = template_number("SqsMaxBatchingWindowSeconds")
STREAM_BATCH_SIZE = template_number("StreamBatchSize")
STREAM_WINDOW_S = template_number("StreamMaxBatchingWindowSeconds")


@dataclass
class Fleet:
    name: str
    devices: int
    chunks_per_hour: float

    @property
    def rate(self) -> float:
        return self.devices * self.chunks_per_hour / 3600

    @property
    def chunks(self) -> float:
        return self.rate * SECONDS


@dataclass
class Plan:
    """How one mode is sized for a fleet."""

    mode: str
    invocations_per_s: float
    seconds_per_invocation: float
    sqs_requests_per_chunk: float = 0.0
    shards: int = 0
    on_demand: bool = False
    concurrency_cap: str = ""
    note: str = ""
    # No function: EventBridge Pipes reads the stream and calls an API destination per record.
    pipes: bool = False


def billed_seconds(seconds: float) -> float:
    return math.ceil(seconds * 1000) / 1000


def round_trips(devices: int, upload_concurrency: int) -> float:
    return math.ceil(devices / upload_concurrency) * ROUND_TRIP_S * MEASURED_OVER_IDEAL


def plans(fleet: Fleet) -> list[Plan]:
    rate = fleet.rate
    direct = Plan("Direct", rate, billed_seconds(ROUND_TRIP_S + DIRECT_OVERHEAD_S),
                  concurrency_cap="none (account limit)")
    # Queued: batches of SqsBatchSize gathered for up to SqsMaxBatchingWindowSeconds, each device
    # once per batch at these rates; IoT's SendMessage per chunk, Lambda's ReceiveMessage and
    # DeleteMessageBatch per 10.
    queued_batch = min(SQS_BATCH_SIZE, max(1, rate * SQS_WINDOW_S))
    queued = Plan("Queued", rate / queued_batch,
                  billed_seconds(round_trips(round(queued_batch), UPLOAD_CONCURRENCY)),
                  sqs_requests_per_chunk=1 + 0.1 + 0.1, concurrency_cap="SqsMaxConcurrency",
                  note=f"batches of {queued_batch:,.0f}, UploadConcurrency {UPLOAD_CONCURRENCY}")
    # Stream: one shard per 1,000 records/s with a fifth spare; batches of up to StreamBatchSize
    # gathered for up to the batching window.
    shards = max(1, math.ceil(rate * 1.2 / 1000))
    per_shard = rate / shards
    batch = min(STREAM_BATCH_SIZE, max(1, per_shard * STREAM_WINDOW_S))
    stream_seconds = billed_seconds(round_trips(round(batch), UPLOAD_CONCURRENCY))
    stream = [
        Plan(f"Stream, {label}", per_shard / batch * shards, stream_seconds, shards=shards,
             on_demand=on_demand, concurrency_cap="shards × ParallelizationFactor",
             note=f"{shards} shard(s), batches of {batch:,.0f}, UploadConcurrency {UPLOAD_CONCURRENCY}")
        for label, on_demand in (("provisioned", False), ("on-demand", True))
    ]
    # The same stream read by a pipe whose target is an API destination, batch size 1 (the
    # chunks API takes one chunk per plain request): a Pipes request and an API destination
    # invocation per chunk, no function.
    pipes = [
        Plan(f"Pipes + API destination, {label}", 0.0, 0.0, shards=shards, on_demand=on_demand,
             concurrency_cap="none per device", pipes=True)
        for label, on_demand in (("provisioned", False), ("on-demand", True))
    ]
    return [direct, queued, *stream, *pipes]


def per_million(fleet: Fleet, plan: Plan, basic_ingest: bool, info_logs: bool) -> dict[str, float]:
    """Every charge on the path, per million chunks."""
    chunks = MILLION
    invocations = chunks * plan.invocations_per_s / fleet.rate
    cost = {
        "IoT messaging": 0.0 if basic_ingest else chunks * PRICES["iot_message"],
        "IoT rules + actions": chunks * (PRICES["iot_rule"] + PRICES["iot_action"]),
        "Lambda requests": invocations * PRICES["lambda_request"],
        "Lambda GB-s": invocations * plan.seconds_per_invocation * MEMORY_GB * PRICES["lambda_gb_second"],
        "SQS": chunks * plan.sqs_requests_per_chunk * PRICES["sqs_request"],
        "Kinesis": 0.0,
        "Pipes": chunks * (PRICES["pipes_request"] + PRICES["api_destination_invocation"])
                 if plan.pipes else 0.0,
    }
    if plan.shards:
        share = chunks / fleet.chunks  # this million's share of the month's fixed charges
        if plan.on_demand:
            gb = chunks * RECORD_KB * 1024 / GB
            cost["Kinesis"] = (gb * (PRICES["kinesis_on_demand_gb_in"] + PRICES["kinesis_on_demand_gb_out"])
                               + share * HOURS * PRICES["kinesis_on_demand_stream_hour"])
        else:
            cost["Kinesis"] = (chunks * PRICES["kinesis_put_unit"]
                               + share * plan.shards * HOURS * PRICES["kinesis_shard_hour"])
    # EMF documents are printed whatever the log level. At INFO a direct invocation logs its
    # delivery, a batch its summary line (its deliveries only at DEBUG).
    log_bytes = invocations * LOG_EMF_DOCUMENT  # none without a function
    if info_logs:
        log_bytes += invocations * (LOG_DELIVERED_LINE if plan.mode == "Direct" else LOG_BATCH_LINE)
    cost["CloudWatch Logs"] = log_bytes / GB * PRICES["logs_gb"]
    return cost


# A shard held by one failing device (docs/delivery.md, "Stalled devices and projects"): Lambda
# resends the batch at once; each invocation makes the failing device's MEMFAULT_MAX_ATTEMPTS
# attempts (4 by default) with full-jitter backoff between them (ceilings 200, 400, 800 ms: 700 ms
# expected). Probes go out only when nothing else showed Memfault up for a tenth of the stall
# limit (src/delivery/healthy_time.rs, PROBES_PER_STALL_LIMIT), each chunk at most once.
HELD_ATTEMPTS = 4
HELD_BACKOFF_S = (0.200 + 0.400 + 0.800) / 2
STALL_LIMIT_S = template_number("StallLimitSeconds")
PROBES_PER_STALL_LIMIT = 10
SETTLED_MEMORY = 50_000  # records each environment remembers (src/settled.rs)


def held_shard(fleet: Fleet) -> dict[str, float]:
    """What one held shard costs until its failing device is set aside, probes included, and
    how fast the resends come compared with how long the memory of settled records lasts."""
    seconds = billed_seconds(HELD_ATTEMPTS * ROUND_TRIP_S + HELD_BACKOFF_S)
    invocations = STALL_LIMIT_S / seconds
    # One more than the limit allows, for the probe that decides the stall.
    probes = PROBES_PER_STALL_LIMIT + 1
    # The busiest an environment can be: full batches of the fleet's stream plan back to back.
    stream = next(plan for plan in plans(fleet) if plan.mode.startswith("Stream"))
    settled_per_s = STREAM_BATCH_SIZE / stream.seconds_per_invocation
    return {
        "seconds": seconds,
        "invocations": invocations,
        "probes": probes,
        "device_requests": invocations * HELD_ATTEMPTS,
        "probe_gb_s_cost": probes * ROUND_TRIP_S * MEMORY_GB * PRICES["lambda_gb_second"],
        "lambda_cost": invocations * (PRICES["lambda_request"]
                                      + seconds * MEMORY_GB * PRICES["lambda_gb_second"])
                       + probes * ROUND_TRIP_S * MEMORY_GB * PRICES["lambda_gb_second"],
        "resent_per_s": STREAM_BATCH_SIZE / seconds,
        "memory_turnover_s": SETTLED_MEMORY / settled_per_s,
    }


def money(value: float) -> str:
    if value >= 100:
        return f"${value:,.0f}"
    return f"${value:,.2f}" if value >= 0.995 else f"${value:.3f}"


FLEETS = [Fleet("1,000,000 devices × 1 chunk/min", 1_000_000, 60),
          Fleet("100,000 devices × 1 chunk/hour", 100_000, 1)]


def rows(fleet: Fleet) -> list[dict[str, object]]:
    """One row per mode and topic of the per-million table, its values in dollars."""
    found = []
    for plan in plans(fleet):
        for basic_ingest in (False, True):
            info = per_million(fleet, plan, basic_ingest, True)
            warn = per_million(fleet, plan, basic_ingest, False)
            found.append({
                "mode": plan.mode, "topic": "Basic Ingest" if basic_ingest else "standard",
                "IoT": info["IoT messaging"] + info["IoT rules + actions"],
                "Lambda": info["Lambda requests"] + info["Lambda GB-s"], "SQS": info["SQS"],
                "Kinesis": info["Kinesis"], "Pipes": info["Pipes"],
                "logs": info["CloudWatch Logs"], "logs WARN": warn["CloudWatch Logs"],
                "total": sum(info.values()), "total WARN": sum(warn.values()),
                "month": sum(info.values()) * fleet.chunks / MILLION,
                "month WARN": sum(warn.values()) * fleet.chunks / MILLION})
    return found


def fleet_tables() -> str:
    """The tables docs/cost-model.md shows for each fleet, as it shows them."""
    out = []
    for fleet in FLEETS:
        out.append(f"### {fleet.name}: {fleet.rate:,.1f} chunks/s, {fleet.chunks / MILLION:,.0f} million chunks per 30 days\n")
        out.append("| mode | topic | IoT | Lambda | SQS | Kinesis | Pipes + API destination | logs at INFO (WARN) | per million chunks, INFO (WARN) | per 30 days, INFO (WARN) |")
        out.append("|---|---|---|---|---|---|---|---|---|---|")
        for r in rows(fleet):
            out.append(f"| {r['mode']} | {r['topic']} | {money(r['IoT'])} | {money(r['Lambda'])} | "
                       f"{money(r['SQS'])} | {money(r['Kinesis'])} | {money(r['Pipes'])} | {money(r['logs'])} "
                       f"({money(r['logs WARN'])}) | **{money(r['total'])}** ({money(r['total WARN'])}) | "
                       f"{money(r['month'])} ({money(r['month WARN'])}) |")
        out.append("\n| mode | sizing | invocations/s | time per invocation | Lambda concurrency (rate × time) | bounded by | requests in flight to Memfault (rate × round trip) |")
        out.append("|---|---|---|---|---|---|---|")
        for plan in plans(fleet):
            if plan.on_demand or plan.pipes:
                continue
            label = "Stream" if plan.mode.startswith("Stream") else plan.mode
            concurrency = plan.invocations_per_s * plan.seconds_per_invocation
            out.append(f"| {label} | {plan.note or '—'} | {plan.invocations_per_s:,.1f} | {plan.seconds_per_invocation * 1000:,.0f} ms | "
                       f"{concurrency:,.1f} | {plan.concurrency_cap} | {fleet.rate * ROUND_TRIP_S:,.0f} |")
        out.append("")
    return "\n".join(out)


def quoted() -> dict[str, float]:
    """Figures the docs' prose quotes beyond the tables and PRICES, by what they are."""
    small = FLEETS[1]
    direct = per_million(small, plans(small)[0], True, True)
    direct_warn = per_million(small, plans(small)[0], True, False)
    return {
        "a provisioned shard for 30 days": HOURS * PRICES["kinesis_shard_hour"],
        "an on-demand stream for 30 days": HOURS * PRICES["kinesis_on_demand_stream_hour"],
        "that, per million chunks of the small fleet":
            HOURS * PRICES["kinesis_on_demand_stream_hour"] / (small.chunks / MILLION),
        "Direct mode's logs, INFO over WARN, per million chunks":
            direct["CloudWatch Logs"] - direct_warn["CloudWatch Logs"],
        "Pipes and an API destination, per million chunks":
            MILLION * (PRICES["pipes_request"] + PRICES["api_destination_invocation"]),
    }


def figures() -> set[float]:
    """Every dollar amount this model produces: prices (per million for per-unit ones), table
    cells and quoted figures. A `$` amount in the docs must be one of them, as rounded there."""
    found = set(PRICES.values()) | {value * MILLION for value in PRICES.values() if value < 0.001}
    for fleet in FLEETS:
        for r in rows(fleet):
            found |= {v for v in r.values() if isinstance(v, float)}
    held = held_shard(FLEETS[0])
    found |= {held["lambda_cost"], held["probe_gb_s_cost"]}
    return found | set(quoted().values())


def main() -> None:
    print(fleet_tables())
    print("| figure | value |\n|---|---|")
    for name, value in quoted().items():
        print(f"| {name} | {money(value)} |")

    held = held_shard(FLEETS[0])
    print(f"\n### A shard held by one failing device, for StallLimitSeconds {STALL_LIMIT_S}\n")
    print("| time per held invocation | invocations | probes per environment (at most) | the failing device's requests | Lambda, all held invocations | of which probes | records resent per second | memory turnover in the busiest environment |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {held['seconds'] * 1000:,.0f} ms | {held['invocations']:,.0f} | {held['probes']:,.0f} | "
          f"{held['device_requests']:,.0f} | ${held['lambda_cost']:.4f} | ${held['probe_gb_s_cost']:.7f} | "
          f"{held['resent_per_s']:,.0f} | {held['memory_turnover_s']:,.0f} s |")


if __name__ == "__main__":
    main()
