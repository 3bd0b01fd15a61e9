# The commands a newcomer runs. Each target installs what it needs first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
KAFKA_PORT ?= 9092
BRIDGE_PORT ?= 8080
LOCALKAFKA := $(BIN)/python deploy/kafka/localkafka.py
# Stdlib only: runs before the venv exists.
LOCALK8S := $(PYTHON) deploy/k8s/localk8s.py
DEV_SECRET ?= local-dev-secret

export KAFKA_PORT

.PHONY: help venv tools lint typecheck test test-fast run kafka-up kafka-down k8s-up k8s-down image bench bench-quick clean

help:
	@echo "make run         start a local Kafka and the bridge on 127.0.0.1:$(BRIDGE_PORT)"
	@echo "make test        lint, type-check and run the whole suite (real Kafka, Prometheus, Helm)"
	@echo "make kafka-up    start only the local Kafka broker (127.0.0.1:$(KAFKA_PORT))"
	@echo "make kafka-down  stop it"
	@echo "make k8s-up      start a local Kubernetes API server with simulated nodes (127.0.0.1)"
	@echo "make k8s-down    stop it"
	@echo "make image       build the container image with podman (local Debian base)"
	@echo "make bench       the benchmark against the ceilings (make bench-quick: under 2 minutes)"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,fast,bench]'
	touch $(STAMP)

venv: $(STAMP)

tools: $(STAMP)
	bash scripts/ensure-tools.sh

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck tools
	$(LOCALKAFKA) classpath >/dev/null
	$(BIN)/pytest

test-fast: $(STAMP)
	$(BIN)/pytest tests/unit tests/app -q

kafka-up: $(STAMP)
	$(LOCALKAFKA) up

kafka-down: $(STAMP)
	$(LOCALKAFKA) down

# The control plane's binaries are built by scripts/ensure-tools.sh (cached outside the repo).
k8s-up: tools
	$(LOCALK8S) up

k8s-down:
	$(LOCALK8S) down

image: tools
	bash scripts/image.sh build

run: $(STAMP) kafka-up
	@echo
	@echo "Webhook URL (receiver 'alm', HMAC-SHA256 secret '$(DEV_SECRET)'):"
	@echo "  http://127.0.0.1:$(BRIDGE_PORT)/webhooks/alm"
	@echo "In another terminal, play ALM against it:"
	@echo "  $(BIN)/alm-bridge send http://127.0.0.1:$(BRIDGE_PORT)/webhooks/alm --auth hmac --secret $(DEV_SECRET) --sample all"
	@echo "Stop with Ctrl-C; 'make kafka-down' stops the broker."
	@echo
	BRIDGE_PORT=$(BRIDGE_PORT) BRIDGE_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$(KAFKA_PORT) \
	BRIDGE_AUTH_METHOD=$${BRIDGE_AUTH_METHOD:-hmac} BRIDGE_HMAC_SECRET=$${BRIDGE_HMAC_SECRET:-$(DEV_SECRET)} \
	$(BIN)/alm-bridge serve

bench: $(STAMP)
	$(BIN)/python -m bench

bench-quick: $(STAMP)
	$(BIN)/python -m bench --quick

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis bench/results
