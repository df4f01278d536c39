# Two commands for a fresh clone: `make run` and `make test`. Everything else they need is built here.
# Layout note: ./schema is a symlink to layers/common/connvault/schema/, the numbered SQL migrations. Their one home
# is inside the package, because the layer (sam-build below) ships the package as it is; the link is for reading.
SHELL := /bin/bash
PY312 ?= $(shell if [ -n "$$PYTHON312" ]; then echo "$$PYTHON312"; elif PYENV_VERSION=3.12.1 python3.12 --version >/dev/null 2>&1; then echo "env PYENV_VERSION=3.12.1 python3.12"; else echo python3.12; fi)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv test test-long lint typecheck format run bench bench-multiplexer openapi clean browser-deps

$(STAMP): requirements-dev.txt layers/common/requirements.txt
	$(PY312) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# mypy --strict on the layer (package connvault), the handlers and demo_provider; the settings are in pyproject.toml.
typecheck: $(STAMP)
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# --dist loadgroup: tests marked with one xdist_group run on one worker (the browser tests, the timed soak, and
# the sam-local invocations, once).
test: $(STAMP) lint typecheck browser-deps
	$(PY) -m pytest -n 2 --dist loadgroup -q

# The browser tests (tests/browser) drive Debian's own chromium through its chromium-driver; nothing downloads a
# browser of its own. Installed here on a fresh machine (as root, through apt-get); where that cannot be done the
# tests are skipped, and both this target and pytest's summary say why.
CHROMIUM := /usr/bin/chromium
CHROMEDRIVER := /usr/bin/chromedriver
browser-deps:
	@if [ -x $(CHROMIUM) ] && [ -x $(CHROMEDRIVER) ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "browser-deps: installing chromium and chromium-driver (apt-get) for tests/browser"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			chromium chromium-driver >/dev/null) \
		|| echo "browser-deps: apt-get could not install chromium; tests/browser will be skipped"; \
	else \
		echo "browser-deps: no $(CHROMIUM) and no root apt-get here; tests/browser will be skipped"; \
	fi

run: $(STAMP)
	$(PY) -m devserver

clean:
	rm -rf $(VENV) .aws-sam build $(SAM_LOCAL_DIR)

# ---- SAM bundle -------------------------------------------------------------------------------------------
# aws-sam-cli and cfn-lint pin other versions of boto3, pydantic and friends than the runtime layer does, so
# they live in their own venv. The stamp is named after the pins: changing a pin reinstalls.
SAM_VENV := .venv-sam
SAM_CLI_VERSION := 1.170.0
CFN_LINT_VERSION := 1.58.0
SAM_STAMP := $(SAM_VENV)/.installed-$(SAM_CLI_VERSION)-$(CFN_LINT_VERSION)
# SAM looks for python3.12 on PATH to build the layer; the tool venv's own interpreter is one.
SAM := SAM_CLI_TELEMETRY=0 PATH="$(CURDIR)/$(SAM_VENV)/bin:$$PATH" $(SAM_VENV)/bin/sam
ENV ?= default
SAM_ARCH ?= arm64
SAM_BUILD_DIR ?= .aws-sam/build

.PHONY: sam-venv validate sam-build sam-smoke deploy

$(SAM_STAMP):
	$(PY312) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet --disable-pip-version-check \
		aws-sam-cli==$(SAM_CLI_VERSION) cfn-lint==$(CFN_LINT_VERSION)
	touch $(SAM_STAMP)

sam-venv: $(SAM_STAMP)

# Both must be clean: sam's translator-aware lint, and cfn-lint on its own (same rules, own exit status).
validate: $(SAM_STAMP)
	$(SAM) validate --lint --template-file template.yaml
	$(SAM_VENV)/bin/cfn-lint template.yaml

# Lambda's /opt is read-only, so a layer shipped without bytecode is compiled again on every cold start.
# unchecked-hash: the .pyc files stay valid whatever mtimes the zip round trip leaves on the sources.
PRECOMPILE = $(PY312) -m compileall -q -j 0 --invalidation-mode unchecked-hash

# e.g. `make sam-build SAM_ARCH=x86_64 SAM_BUILD_DIR=/tmp/connvault-build` on an x86 machine.
sam-build: $(SAM_STAMP)
	$(SAM) build --parameter-overrides Architecture=$(SAM_ARCH) --build-dir $(SAM_BUILD_DIR)
	$(PRECOMPILE) $(SAM_BUILD_DIR)

# The fallback for `sam local invoke` where Docker cannot run (`make sam-local`): builds into a temp dir, then runs
# each built function in a bare python3.12 with only its own directory and the layer on sys.path. Part of
# `make test` too.
sam-smoke: $(STAMP) $(SAM_STAMP)
	$(PY) -m pytest tests/artifact -q

# checkov scans template.yaml; it pins its own boto3, pydantic and more, so it lives in a venv of its own too.
CHECKOV_VENV := .venv-checkov
CHECKOV_VERSION := 3.3.30
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION)

.PHONY: checkov-venv checkov

$(CHECKOV_STAMP):
	rm -rf $(CHECKOV_VENV)
	$(PY312) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check checkov==$(CHECKOV_VERSION)
	touch $(CHECKOV_STAMP)

checkov-venv: $(CHECKOV_STAMP)

# 0 failed checks: every finding is fixed or skipped in the resource's own Metadata with its reason.
checkov: $(CHECKOV_STAMP)
	$(CHECKOV_VENV)/bin/checkov --file template.yaml --framework cloudformation --quiet --compact

# ---- sam local invoke, for real ----------------------------------------------------------------------------
# tests/sam_local runs every function of the built bundle with `sam local invoke` in Docker containers, against the
# tests' PostgreSQL and moto; part of `make test` wherever a Docker engine can run (elsewhere those tests skip and
# say why, and sam-smoke stands in). See docs/deploy.md.
SAM_LOCAL_DIR := .sam-local
# auto: the official Lambda image if this machine already has it, else the local stand-in; official: the official
# image (Docker pulls it); local: the stand-in only.
SAM_LOCAL_IMAGE ?= auto
export SAM_LOCAL_IMAGE

.PHONY: sam-local-docker sam-local-image sam-local

# A Docker engine that answers: started here (as root; docker.io installed first on a fresh machine) when none does.
sam-local-docker:
	@tests/sam_local/dockerd.sh

# The offline stand-in for the Lambda python3.12 image (tests/sam_local/base_image.sh), tagged by a content stamp
# and reused while the stamp holds; prints the tag. $(SAM_LOCAL_DIR) keeps debootstrap's package cache.
sam-local-image: sam-local-docker
	@tests/sam_local/base_image.sh $(SAM_LOCAL_DIR) $(PY312)

# Prints what each step took (.sam-local/timings.json, written by every run of tests/sam_local, make test's too).
sam-local: $(STAMP) $(SAM_STAMP)
	$(PY) -m pytest tests/sam_local -q -n 0
	@cat $(SAM_LOCAL_DIR)/timings.json

# `make deploy ENV=prod`: build and deploy with the parameters of that samconfig.toml environment.
deploy: $(SAM_STAMP)
	$(SAM) build --config-env $(ENV)
	$(PRECOMPILE) .aws-sam/build
	$(SAM) deploy --config-env $(ENV)

# The RDS Proxy question measured with a stand-in multiplexer (docs/deploy.md, "RDS Proxy: measured, not offered").
bench-multiplexer: $(STAMP)
	command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ] || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer)
	$(PY) bench/multiplexer_bench.py

openapi: $(STAMP)
	PYTHONPATH=layers/common $(PY) -m connvault.api.openapi > docs/openapi.json

# ---- Longer hardening run ------------------------------------------------------------------------------------
# `make test` already runs every hardening test, sized to keep the suite short; this runs them again with far
# more fuzzing examples per API operation and a two-minute concurrency soak.
test-long: $(STAMP)
	CONNVAULT_FUZZ_EXAMPLES=200 CONNVAULT_SOAK_SECONDS=120 $(PY) -m pytest -n 2 -q tests/hardening
