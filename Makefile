# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: help install run demo test test-unit test-integration test-e2e lint bench recall clean \
	k8s k8s-secrets asyncapi

help:
	@echo "make run    - start NATS + every service on embedded defaults, seed two demo tenants, serve"
	@echo "make demo   - the same scenario, exits when done"
	@echo "make test   - unit, integration and e2e tests (real nats-server, chDB, Qdrant local)"
	@echo "make lint   - ruff and mypy --strict"
	@echo "make bench  - benchmarks (JSON + Markdown in bench-results/)"
	@echo "make recall - recall@5 of the embedder on the labelled set"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/tenantry run

demo: $(STAMP)
	$(BIN)/tenantry demo

test: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit tests/integration tests/e2e

test-unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

test-integration: $(STAMP)
	$(BIN)/python -m pytest -q tests/integration

test-e2e: $(STAMP)
	$(BIN)/python -m pytest -q tests/e2e

lint: $(STAMP)
	$(BIN)/ruff check shared services tests
	$(BIN)/mypy shared services

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m bench

recall: $(STAMP)
	$(BIN)/python -m services.retrieval.recall

# Kubernetes: regenerate deploy/k8s from shared.launcher.SERVICES (a test fails when stale).
k8s: $(STAMP)
	$(BIN)/python deploy/k8s/generate.py

# The secrets an overlay's secretGenerator reads (kept across runs; never committed).
OVERLAY ?= dev
k8s-secrets: $(STAMP)
	$(BIN)/python -m shared.provision deploy/k8s/overlays/$(OVERLAY)/state
	install -d -m 700 deploy/k8s/monitoring/state
	install -m 600 deploy/k8s/overlays/$(OVERLAY)/state/secrets/grafana/clickhouse-password \
		deploy/k8s/monitoring/state/clickhouse-password

# AsyncAPI 3.0 document of every subject and payload (read from the services themselves).
asyncapi: $(STAMP)
	mkdir -p var
	$(BIN)/python -m shared.asyncapi var/asyncapi.json
	@echo "wrote var/asyncapi.json"

clean:
	rm -rf var .pytest_cache
