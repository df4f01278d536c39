# Two commands for a fresh clone: `make run` and `make test`. Everything else they need is built here.
SHELL := /bin/bash
PY312 ?= $(shell if [ -n "$$PYTHON312" ]; then echo "$$PYTHON312"; elif PYENV_VERSION=3.12.1 python3.12 --version >/dev/null 2>&1; then echo "env PYENV_VERSION=3.12.1 python3.12"; else echo python3.12; fi)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv test test-long lint format run bench openapi clean

$(STAMP): requirements-dev.txt layers/common/requirements.txt
	$(PY312) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: $(STAMP) lint
	$(PY) -m pytest -n 2 -q

run: $(STAMP)
	$(PY) -m devserver

clean:
	rm -rf $(VENV) .aws-sam build
