# Identity Mover — developer entry points. Every target installs what it needs.
SHELL := /bin/bash
PY := .venv/bin/python
VENV_STAMP := .venv/.installed
NODE_STAMP := node_modules/.installed
# IaC checkers in their own venv: checkov pins many packages that would clash with the app's.
TOOLS_STAMP := .venv-tools/.installed
CHECKOV_VERSION := 3.3.30
PYCEP_PARSER_VERSION := 0.5.1

.PHONY: help install install-app chromium test lint typecheck unit demo up bench clean

help:
	@echo "make demo   - start the local stack and run one complete move (the first thing to run)"
	@echo "make test   - lint, type-check and run the whole test suite"
	@echo "make up     - start Azurite + emulator + Functions host until Ctrl-C"
	@echo "make bench  - benchmarks (kept apart from the tests; results in bench/results/)"

# install-app: what running the mover needs (app venv + Azurite); install adds the IaC checkers for the tests.
install-app: $(VENV_STAMP) $(NODE_STAMP)

install: install-app $(TOOLS_STAMP)

$(VENV_STAMP): pyproject.toml requirements.txt
	@test -x .venv/bin/python || python3.11 -m venv .venv || python3 -m venv .venv
	@.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	@.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

$(TOOLS_STAMP): Makefile
	@test -x .venv-tools/bin/python || python3.11 -m venv .venv-tools || python3 -m venv .venv-tools
	@.venv-tools/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	@.venv-tools/bin/python -m pip install --quiet --disable-pip-version-check 'checkov==$(CHECKOV_VERSION)' 'pycep-parser==$(PYCEP_PARSER_VERSION)'
	@touch $@

$(NODE_STAMP): package.json package-lock.json
	@command -v npm >/dev/null || { echo "npm (Node.js 20) is needed for Azurite: install Node.js, then run make again" >&2; exit 1; }
	@npm ci --no-audit --no-fund --loglevel=error
	@touch $@

lint: install
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

typecheck: install
	.venv/bin/mypy

unit: install
	.venv/bin/pytest -q

# The suite runs on parallel workers (pytest-xdist), each with its own Azurite and emulator; the
# tests are I/O-bound, so more workers than the 2 cores of CI pay off. worksteal evens out long tests.
TEST_WORKERS ?= 4

# The dashboard's browser tests drive Debian's chromium through Playwright (never `playwright install`,
# which downloads a browser of its own). Checked on every run (cheap), installed only when missing.
chromium:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)

test: install chromium
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy
	.venv/bin/pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist worksteal

demo: install-app
	.venv/bin/idmove demo

up: install-app
	.venv/bin/idmove up

bench: install-app
	.venv/bin/python -m bench

clean:
	rm -rf .venv node_modules .pytest_cache .mypy_cache .ruff_cache
