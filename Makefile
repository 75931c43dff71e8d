# memfault-chunk-proxy: every command a user or CI needs. `make help` lists them.

SHELL := /bin/bash
.DEFAULT_GOAL := help

CARGO ?= cargo
EVENT ?= events/heartbeat.json
STACK ?= memfault-chunk-proxy
# For `make deploy-cargo-lambda`: an existing execution role (see docs/deploy.md).
LAMBDA_ROLE_ARN ?=
# Lambda architecture of `lambda-build`, `sam-build` and the deploys: arm64 or x86_64.
ARCH ?= arm64
# Where `make watch` listens and `make invoke` sends: loopback only.
LAMBDA_ADDRESS ?= 127.0.0.1
LAMBDA_PORT ?= 9000
# cargo-lambda, and the zig it links with, live in .venv (infra/requirements-lambda.txt).
WITH_VENV := PATH="$(CURDIR)/.venv/bin:$$PATH"

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-22s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: local
local: ## Run the function on $(EVENT) locally (loopback receiver unless MEMFAULT_CHUNKS_URL is set)
	@echo "==> Building the function and its local runner (a minute or two the first time)"
	$(CARGO) run --locked --example local -- $(EVENT)

.PHONY: test
test: lint unit validate emulator wire esm ## Every check CI runs: format, clippy, tests, template validation, events through the emulator, wire format, event source mapping scenarios

.PHONY: lint
lint: ## cargo fmt --check and clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

.PHONY: unit
unit: ## Unit and integration tests (mock Memfault on loopback)
	$(CARGO) test --locked

.PHONY: validate
validate: ## Validate template.yaml offline: cfn-lint, sam validate --lint, checkov, template tests
	bash infra/validate.sh

.PHONY: emulator
emulator: cargo-lambda ## Every sample event through cargo lambda's Runtime API emulator (tests/emulator)
	$(WITH_VENV) python -m pytest -p no:cacheprovider tests/emulator

.PHONY: wire
wire: ## memfault-cli (Memfault's own client) and the function frame a multipart upload byte for byte alike
	INFRA_VENV="$(CURDIR)/.venv-wire" bash -c 'source infra/venv.sh && infra_venv infra/requirements-wire.txt && python tests/memfault_cli_framing.py'

.PHONY: esm
esm: ## The function binary behind simulated Kinesis and SQS event source mappings, with faults (tests/esm)
	$(CARGO) build --locked
	INFRA_VENV="$(CURDIR)/.venv-esm" bash -c 'source infra/venv.sh && infra_venv tests/esm/requirements.txt && python -m pytest -p no:cacheprovider tests/esm'

.PHONY: build
build: ## Release build of the Lambda binary for this machine
	$(CARGO) build --locked --release

.PHONY: bench
bench: ## Benchmark the release binary (built into target/bench-release) through a mock Lambda Runtime API
	$(CARGO) bench --locked --bench runtime_api

.PHONY: cargo-lambda
cargo-lambda: ## Install cargo-lambda and zig (pinned, from PyPI) into .venv
	bash infra/install-cargo-lambda.sh

.PHONY: watch
watch: cargo-lambda ## Run the function under cargo lambda's emulator on $(LAMBDA_ADDRESS):$(LAMBDA_PORT) (then `make invoke`)
	$(WITH_VENV) cargo lambda watch --invoke-address $(LAMBDA_ADDRESS) --invoke-port $(LAMBDA_PORT)

.PHONY: invoke
invoke: cargo-lambda ## Send $(EVENT) to the running `make watch`
	$(WITH_VENV) cargo lambda invoke --invoke-address $(LAMBDA_ADDRESS) --invoke-port $(LAMBDA_PORT) \
	  --data-file $(EVENT) memfault-chunk-proxy

.PHONY: lambda-build
lambda-build: ## Release build for Lambda, ARCH=arm64|x86_64, into target/lambda/$(ARCH)/memfault-chunk-proxy/bootstrap
	bash infra/install-cargo-lambda.sh $(ARCH)
	$(WITH_VENV) cargo lambda build --locked --release $(if $(filter x86_64,$(ARCH)),--x86-64,--arm64) \
	  --lambda-dir target/lambda/$(ARCH)

.PHONY: sam-build
sam-build: ## sam build for ARCH=arm64|x86_64 into .aws-sam/build-$(ARCH)
	ARCH=$(ARCH) bash infra/sam-build.sh

.PHONY: deploy
deploy: sam-build ## sam deploy of .aws-sam/build-$(ARCH) with samconfig.toml (first time: see docs/deploy.md)
	@grep -q '"Architecture=$(ARCH)"' <(sed -n '/^\[default.deploy.parameters\]/,/^\[/p' samconfig.toml) || \
	  { echo "samconfig.toml deploys another Architecture: set \"Architecture=$(ARCH)\" in [default.deploy.parameters]"; exit 1; }
	$(WITH_VENV) sam deploy --template-file .aws-sam/build-$(ARCH)/template.yaml

.PHONY: deploy-cargo-lambda
deploy-cargo-lambda: lambda-build ## cargo lambda deploy of target/lambda/$(ARCH) with LAMBDA_ROLE_ARN and MEMFAULT_* from the environment
	@test -n "$(LAMBDA_ROLE_ARN)" || { echo "Set LAMBDA_ROLE_ARN to the function's execution role"; exit 1; }
	$(WITH_VENV) cargo lambda deploy --lambda-dir target/lambda/$(ARCH) --iam-role "$(LAMBDA_ROLE_ARN)" \
	  --env-var MEMFAULT_CHUNKS_URL=$${MEMFAULT_CHUNKS_URL:-https://chunks.memfault.com} \
	  --env-var MEMFAULT_PROJECT_KEY=$${MEMFAULT_PROJECT_KEY:-} \
	  --env-var "MEMFAULT_TOPIC_PATTERN=$${MEMFAULT_TOPIC_PATTERN:-prod/+/{device_serial}/memfault/{project_key}/chunk}" \
	  --memory 128 --timeout 30 --tag project=$(STACK) \
	  memfault-chunk-proxy

.PHONY: replay-stream
replay-stream: ## Stream mode: replay the batches in the stream failure bucket of $(STACK) (AWS CLI)
	bash infra/replay-stream-failures.sh "$(STACK)"

.PHONY: clean
clean: ## Remove build output, the tool venv and SAM's build folder
	$(CARGO) clean
	rm -rf .venv .venv-wire .aws-sam
