"""The cost and concurrency model of docs/cost-model.md, as arithmetic anyone can rerun.

    python3 infra/cost_model.py            # prints the tables of docs/cost-model.md

Every price is an assumption (us-east-1 list prices; check them on the pages named in PRICES
before relying on a figure). Durations and log line sizes come from `make bench` and from the
function's own output, as noted where they are defined.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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


def billed_seconds(seconds: float) -> float:
    return math.ceil(seconds * 1000) / 1000


def round_trips(devices: int, upload_concurrency: int) -> float:
    return math.ceil(devices / upload_concurrency) * ROUND_TRIP_S * MEASURED_OVER_IDEAL


def plans(fleet: Fleet) -> list[Plan]:
    rate = fleet.rate
    direct = Plan("Direct", rate, billed_seconds(ROUND_TRIP_S + DIRECT_OVERHEAD_S),
                  concurrency_cap="none (account limit)")
    # Queued: batches of 100 (SqsBatchSize), each device once per batch at these rates;
    # IoT's SendMessage per chunk, Lambda's ReceiveMessage and DeleteMessageBatch per 10.
    queued_batch = min(100, max(1, rate * 5))
    queued = Plan("Queued", rate / queued_batch, billed_seconds(round_trips(round(queued_batch), 32)),
                  sqs_requests_per_chunk=1 + 0.1 + 0.1,
                  concurrency_cap="SqsMaxConcurrency", note="UploadConcurrency 32")
    # Stream: one shard per 1,000 records/s with a fifth spare; batches of up to 500 (StreamBatchSize)
    # gathered for up to 1 s; UploadConcurrency 64 when batches are full, 8 otherwise.
    shards = max(1, math.ceil(rate * 1.2 / 1000))
    per_shard = rate / shards
    batch = min(500, max(1, per_shard * 1))
    concurrency = 64 if batch >= 100 else 8
    stream_seconds = billed_seconds(round_trips(round(batch), concurrency))
    stream = [
        Plan(f"Stream, {label}", per_shard / batch * shards, stream_seconds, shards=shards,
             on_demand=on_demand, concurrency_cap="shards × ParallelizationFactor",
             note=f"{shards} shard(s), UploadConcurrency {concurrency}")
        for label, on_demand in (("provisioned", False), ("on-demand", True))
    ]
    return [direct, queued, *stream]


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
    log_bytes = invocations * LOG_EMF_DOCUMENT
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
STALL_LIMIT_S = 300  # StallLimitSeconds, the template's default
PROBES_PER_STALL_LIMIT = 10
STREAM_BATCH_SIZE = 500  # StreamBatchSize, the template's default
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


def main() -> None:
    fleets = [Fleet("1,000,000 devices × 1 chunk/min", 1_000_000, 60),
              Fleet("100,000 devices × 1 chunk/hour", 100_000, 1)]
    for fleet in fleets:
        print(f"\n### {fleet.name}: {fleet.rate:,.1f} chunks/s, {fleet.chunks / MILLION:,.0f} million chunks per 30 days\n")
        print("| mode | topic | IoT | Lambda | SQS | Kinesis | logs at INFO (WARN) | per million chunks, INFO (WARN) | per 30 days, INFO (WARN) |")
        print("|---|---|---|---|---|---|---|---|---|")
        for plan in plans(fleet):
            for basic_ingest in (False, True):
                info = per_million(fleet, plan, basic_ingest, True)
                warn = per_million(fleet, plan, basic_ingest, False)
                iot = info["IoT messaging"] + info["IoT rules + actions"]
                lam = info["Lambda requests"] + info["Lambda GB-s"]
                total_info, total_warn = sum(info.values()), sum(warn.values())
                month = fleet.chunks / MILLION
                print(f"| {plan.mode} | {'Basic Ingest' if basic_ingest else 'standard'} | {money(iot)} | {money(lam)} | "
                      f"{money(info['SQS'])} | {money(info['Kinesis'])} | {money(info['CloudWatch Logs'])} "
                      f"({money(warn['CloudWatch Logs'])}) | **{money(total_info)}** ({money(total_warn)}) | "
                      f"{money(total_info * month)} ({money(total_warn * month)}) |")
        print("\n| mode | sizing | invocations/s | time per invocation | Lambda concurrency (rate × time) | bounded by | requests in flight to Memfault (rate × round trip) |")
        print("|---|---|---|---|---|---|---|")
        for plan in plans(fleet):
            if plan.mode == "Stream, on-demand":
                continue
            label = "Stream" if plan.mode.startswith("Stream") else plan.mode
            concurrency = plan.invocations_per_s * plan.seconds_per_invocation
            print(f"| {label} | {plan.note or '—'} | {plan.invocations_per_s:,.1f} | {plan.seconds_per_invocation * 1000:,.0f} ms | "
                  f"{concurrency:,.1f} | {plan.concurrency_cap} | {fleet.rate * ROUND_TRIP_S:,.0f} |")

    held = held_shard(fleets[0])
    print(f"\n### A shard held by one failing device, for StallLimitSeconds {STALL_LIMIT_S}\n")
    print("| time per held invocation | invocations | probes per environment (at most) | the failing device's requests | Lambda, all held invocations | of which probes | records resent per second | memory turnover in the busiest environment |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {held['seconds'] * 1000:,.0f} ms | {held['invocations']:,.0f} | {held['probes']:,.0f} | "
          f"{held['device_requests']:,.0f} | ${held['lambda_cost']:.4f} | ${held['probe_gb_s_cost']:.7f} | "
          f"{held['resent_per_s']:,.0f} | {held['memory_turnover_s']:,.0f} s |")


if __name__ == "__main__":
    main()
