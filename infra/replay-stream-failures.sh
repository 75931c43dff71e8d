#!/usr/bin/env bash
# Replays the batches that the stream's event source mapping gave up on (Stream mode).
#
# When a record stays undelivered longer than StreamMaxRecordAgeSeconds, the mapping writes the
# whole batch to the stream failure bucket (StreamFailureBucket): one S3 object per batch, holding
# the batch as escaped JSON in "payload". The function accepts such an object as its event and
# delivers the batch again (undeliverable records go to the quarantine queue as usual). This script
# invokes the function synchronously with each object, one at a time and oldest first, and deletes
# an object only when the function answered without an error and with no batchItemFailures.
# Anything else is kept and listed; run the script again once the cause is fixed.
#
# Usage: infra/replay-stream-failures.sh <stack name> [--dry-run]
# Needs the AWS CLI v2 with credentials for the stack's account and region, and python3.
set -euo pipefail

usage() {
  echo "usage: $0 <stack name> [--dry-run]" >&2
  exit 2
}
(($# >= 1 && $# <= 2)) || usage
stack="$1"
dry_run=false
if (($# == 2)); then
  [[ "$2" == "--dry-run" ]] || usage
  dry_run=true
fi

output() {
  aws cloudformation describe-stacks --stack-name "$stack" --output text \
    --query "Stacks[0].Outputs[?OutputKey=='$1'].OutputValue"
}

bucket="$(output StreamFailureBucketName)"
function="$(output FunctionName)"
if [[ -z "$bucket" || "$bucket" == "None" ]]; then
  echo "$stack has no StreamFailureBucketName output: is it deployed with Mode=Stream?" >&2
  exit 2
fi

work="$(mktemp -d)"
trap 'rm -rf -- "$work"' EXIT

# Object keys start with aws/lambda/<mapping id>/<shard id>/YYYY/MM/DD/<timestamp>-<uuid>: in key
# order, a shard's batches come oldest first.
aws s3api list-objects-v2 --bucket "$bucket" --prefix aws/lambda/ \
  --query 'Contents[].Key' --output text | tr '\t' '\n' | grep -v -e '^None$' -e '^$' |
  sort >"$work/keys" || true
total="$(wc -l <"$work/keys")"
echo "$total failure record(s) in s3://$bucket/aws/lambda/"

replayed=0
kept=0
while IFS= read -r key <&3; do
  if $dry_run; then
    echo "would replay s3://$bucket/$key"
    continue
  fi
  aws s3 cp --quiet "s3://$bucket/$key" "$work/record.json"
  if ! aws lambda invoke --function-name "$function" --cli-binary-format raw-in-base64-out \
    --payload "fileb://$work/record.json" "$work/answer.json" >"$work/invoke.json" 2>"$work/invoke.err"; then
    echo "KEPT $key: the invocation was not made: $(tr '\n' ' ' <"$work/invoke.err")"
    kept=$((kept + 1))
    continue
  fi
  verdict="$(python3 - "$work/invoke.json" "$work/answer.json" <<'EOF'
import json, sys
invoke = json.load(open(sys.argv[1]))
answer = json.load(open(sys.argv[2]))
if invoke.get("FunctionError"):
    print(f"function error {answer.get('errorType')}: {answer.get('errorMessage')}")
elif not isinstance(answer, dict) or "batchItemFailures" not in answer:
    print(f"unexpected answer {json.dumps(answer)[:200]}")
elif answer["batchItemFailures"]:
    ids = [f["itemIdentifier"] for f in answer["batchItemFailures"]]
    print(f"{len(ids)} record(s) not delivered, first {ids[0]}")
else:
    print("ok")
EOF
  )"
  if [[ "$verdict" == "ok" ]]; then
    aws s3 rm --quiet "s3://$bucket/$key"
    echo "replayed and deleted $key"
    replayed=$((replayed + 1))
  else
    echo "KEPT $key: $verdict"
    kept=$((kept + 1))
  fi
done 3<"$work/keys"

echo "replayed $replayed, kept $kept of $total"
((kept == 0))
