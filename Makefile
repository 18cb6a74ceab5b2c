# Shrink. `make run`: install, migrate, start the API (127.0.0.1:8000) and a worker on the
# embedded default (SQLite, local disk, a broker that needs no server). `make test`: install and
# run every test.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install run migrate test lint chromium bench clean

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

# Debian's Chromium renders the HTML report in the report tests (headless, no network).
chromium:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

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

test: install chromium
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check api core worker engine tests bench clients examples

bench: install
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
