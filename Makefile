# memfault-chunk-proxy: every command a user or CI needs. `make help` lists them.

SHELL := /bin/bash
.DEFAULT_GOAL := help

CARGO ?= cargo
EVENT ?= events/heartbeat.json
STACK ?= memfault-chunk-proxy
# For `make deploy-cargo-lambda`: an existing execution role (see README, "Deploy with cargo lambda").
LAMBDA_ROLE_ARN ?=
ARCH ?= arm64

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-22s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: local
local: ## Run the function on $(EVENT) locally (loopback receiver unless MEMFAULT_CHUNKS_URL is set)
	$(CARGO) run --locked --quiet --example local -- $(EVENT)

.PHONY: test
test: lint unit validate ## Every check CI runs: format, clippy, unit and integration tests, template validation

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

.PHONY: build
build: ## Release build of the Lambda binary for this machine
	$(CARGO) build --locked --release

.PHONY: bench
bench: ## Benchmark the release binary (built into target/bench-release) through a mock Lambda Runtime API
	$(CARGO) bench --locked --bench runtime_api

.PHONY: cargo-lambda
cargo-lambda: ## Install cargo-lambda and zig (for cross builds) when missing
	bash infra/install-cargo-lambda.sh

.PHONY: watch
watch: cargo-lambda ## Start the cargo lambda emulator (then `make invoke` in another shell)
	cargo lambda watch

.PHONY: invoke
invoke: cargo-lambda ## Send $(EVENT) to the running `make watch` emulator
	cargo lambda invoke memfault-chunk-proxy --data-file $(EVENT)

.PHONY: lambda-build
lambda-build: cargo-lambda ## cargo lambda build --release for $(ARCH)
	CARGO_ZIGBUILD_PYTHON_PATH=$(CURDIR)/.venv/bin/python3 cargo lambda build --release --$(ARCH)

.PHONY: sam-build
sam-build: ## sam build (rust-cargolambda) into .aws-sam/
	bash infra/sam-build.sh

.PHONY: deploy
deploy: sam-build ## sam deploy with samconfig.toml (first time: .venv/bin/sam deploy --guided)
	.venv/bin/sam deploy

.PHONY: deploy-cargo-lambda
deploy-cargo-lambda: lambda-build ## cargo lambda deploy with LAMBDA_ROLE_ARN and MEMFAULT_* from the environment
	@test -n "$(LAMBDA_ROLE_ARN)" || { echo "Set LAMBDA_ROLE_ARN to the function's execution role"; exit 1; }
	cargo lambda deploy --iam-role "$(LAMBDA_ROLE_ARN)" \
	  --env-var MEMFAULT_CHUNKS_URL=$${MEMFAULT_CHUNKS_URL:-https://chunks.memfault.com} \
	  --env-var MEMFAULT_PROJECT_KEY=$${MEMFAULT_PROJECT_KEY:-} \
	  --env-var "MEMFAULT_TOPIC_PATTERN=$${MEMFAULT_TOPIC_PATTERN:-prod/+/{device_serial}/memfault/{project_key}/chunk}" \
	  --memory 128 --timeout 30 --tag project=$(STACK) \
	  memfault-chunk-proxy

.PHONY: clean
clean: ## Remove build output, the tool venv and SAM's build folder
	$(CARGO) clean
	rm -rf .venv .aws-sam
