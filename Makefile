# Shrink. `make run`: install, migrate, start the API (127.0.0.1:8000) and a worker on the
# embedded default (SQLite, local disk, a broker that needs no server). `make test`: install and
# run every test.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install prefect-env run migrate test lint chromium firefox wrk bench bench-peers clean

$(STAMP): pyproject.toml requirements-nodeps.txt clients/python/pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch==2.13.0: pip resolves the CPU wheel where one is available locally (docs/operations.md, "Installing without the image").
	# The client first, so that the server's `shrink` (which adds the client's commands) is the one on PATH.
	$(PY) -m pip install -q -e clients/python
	$(PY) -m pip install -q -e '.[dev,examples]'
	$(PY) -m pip install -q --no-deps -r requirements-nodeps.txt
	# A test tool whose metadata asks typer<0.28 (it runs with the pinned 0.29.2): no resolver.
	$(PY) -m pip install -q --no-deps openapi-python-client==0.29.1 ruamel.yaml==0.19.1
	touch $(STAMP)

install: $(STAMP)

# The Prefect example (examples/prefect_flow.py) runs in an environment of its own: Prefect's pins
# and the service's differ (docs/pipelines.md). Prefect and the client only.
PREFECT_VENV := .venv-prefect
$(PREFECT_VENV)/.installed-stamp: examples/prefect-requirements.txt clients/python/pyproject.toml
	test -x $(PREFECT_VENV)/bin/python || python3 -m venv $(PREFECT_VENV)
	$(PREFECT_VENV)/bin/python -m pip install -q --upgrade pip
	$(PREFECT_VENV)/bin/python -m pip install -q -r examples/prefect-requirements.txt -e clients/python
	touch $@

prefect-env: $(PREFECT_VENV)/.installed-stamp

# Debian's Chromium renders the HTML report in the report tests (headless, no network).
chromium:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# Debian's Firefox ESR and the locked puppeteer-core that drives it over WebDriver BiDi, for the
# console's Firefox test (tests/console/test_console_firefox.py).
FIREFOX_TEST := tests/console/firefox
firefox: $(FIREFOX_TEST)/node_modules/.package-lock.json
	@command -v firefox-esr >/dev/null 2>&1 || command -v firefox >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq firefox-esr >/dev/null; }

$(FIREFOX_TEST)/node_modules/.package-lock.json: $(FIREFOX_TEST)/package-lock.json
	npm ci --prefix $(FIREFOX_TEST) --no-audit --no-fund --silent

# wrk drives the status-poll load in `make bench` (a C load generator leaves the CPU to the service).
wrk:
	@command -v wrk >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }

migrate: install
	$(VENV)/bin/shrink migrate

run: migrate
	@echo ""
	@echo "Shrink API and web console on http://$(HOST):$(PORT)/ (docs: /docs, with a key), worker on queues cpu,gpu."
	@echo "Get an API key in another shell:"
	@echo "  TENANT=\$$($(VENV)/bin/shrink admin create-tenant my-team); KEY=\$$($(VENV)/bin/shrink admin create-key \$$TENANT)"
	@echo "  curl -H \"Authorization: Bearer \$$KEY\" http://$(HOST):$(PORT)/v1/capabilities"
	@echo ""
	@trap 'kill 0' EXIT INT TERM; \
	$(VENV)/bin/shrink worker --queues cpu,gpu --loglevel WARNING & \
	$(VENV)/bin/shrink api --host $(HOST) --port $(PORT)

test: install chromium firefox prefect-env
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check api core worker engine tests bench clients examples

bench: install wrk
	$(PY) -m bench.service

# Shrink's default int8 against onnxruntime's, Optimum's, Intel Neural Compressor's and NNCF's on
# MiniLM-L6 (docs/benchmarks.md, "Quantization peers"). The peers quantize in their own venv
# (.venv-peers, bench/peers-requirements.txt); every model is timed in the service's.
PEERS_VENV := .venv-peers
PEERS_STAMP := $(PEERS_VENV)/.installed-stamp
BENCH_PEERS_ARGS ?=

$(PEERS_STAMP): bench/peers-requirements.txt
	test -x $(PEERS_VENV)/bin/python || python3 -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/pip install -q --upgrade pip
	$(PEERS_VENV)/bin/pip install -q torch==2.13.0
	$(PEERS_VENV)/bin/pip install -q -r bench/peers-requirements.txt
	$(PEERS_VENV)/bin/pip check
	touch $(PEERS_STAMP)

bench-peers: install $(PEERS_STAMP)
	$(PY) -m bench.quantize_peers $(BENCH_PEERS_ARGS)

clean:
	rm -rf var .pytest_cache .cache
