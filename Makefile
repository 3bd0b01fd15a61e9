# The commands a newcomer runs. Each target installs what it needs first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# `make run` needs the service's own dependencies only; tests and benchmarks add the rest.
RUN_STAMP := $(VENV)/.installed-runtime
KAFKA_PORT ?= 9092
# make kafka-up NODES=3: a replicated cluster (replication factor 3, min.insync.replicas 2).
NODES ?= 1
BRIDGE_PORT ?= 8080
LOCALKAFKA := $(BIN)/python -m deploy.kafka.localkafka
# Stdlib only: runs before the venv exists.
LOCALK8S := $(PYTHON) -m deploy.k8s.localk8s
DEV_SECRET ?= local-dev-secret

export KAFKA_PORT

.PHONY: help venv tools lint typecheck test test-fast run kafka-up kafka-down k8s-up k8s-down image bench bench-quick clean asyncapi-docs lock

help:
	@echo "make run         start a local Kafka and the bridge on 127.0.0.1:$(BRIDGE_PORT)"
	@echo "make test        lint, type-check and run the whole suite (real Kafka, Prometheus, Helm)"
	@echo "make kafka-up    start only the local Kafka broker (127.0.0.1:$(KAFKA_PORT)); NODES=3 for a replicated cluster"
	@echo "make kafka-down  stop it (every node of a cluster too)"
	@echo "make k8s-up      start a local Kubernetes API server with simulated nodes (127.0.0.1)"
	@echo "make k8s-down    stop it"
	@echo "make image       build the container image with podman (local Debian base)"
	@echo "make bench       the benchmark on a fresh and a crowded broker, with the ceilings and a hand-written peer (make bench-quick: a few minutes, fresh broker)"

# requirements.lock pins every package to the version the suite ran with (a constraints
# file: it pins what is installed and adds nothing); `make lock` writes it again.
$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[dev,fast,bench,otel]'
	touch $(STAMP)

$(RUN_STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[fast]'
	touch $(RUN_STAMP)

lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade pip
	.lock-venv/bin/python -m pip install --quiet '.[dev,fast,bench,otel]'
	{ echo "# Every package of .[dev,fast,bench,otel] at the version the suite ran with: make lock"; \
	  .lock-venv/bin/python -m pip freeze --exclude-editable | grep -v '^alm-kafka-bridge'; } \
	  > requirements.lock
	rm -rf .lock-venv

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
	$(BIN)/pytest tests/unit tests/app -q -m "not kafka"

kafka-up: $(RUN_STAMP)
	$(LOCALKAFKA) up --nodes $(NODES)

kafka-down: $(RUN_STAMP)
	$(LOCALKAFKA) down

# The control plane's binaries are built by scripts/ensure-tools.sh (cached outside the repo).
k8s-up: tools
	$(LOCALK8S) up

k8s-down:
	$(LOCALK8S) down

image: tools
	bash scripts/image.sh build

# The bridge runs against the broker of .local/kafka: one started here is stopped with it
# (Ctrl-C), one already running (make kafka-up) is used and left running, and one running at
# another port than KAFKA_PORT is refused with one line.
run: $(RUN_STAMP)
	@echo
	@echo "Webhook URL (receiver 'alm', HMAC-SHA256 secret '$(DEV_SECRET)'):"
	@echo "  http://127.0.0.1:$(BRIDGE_PORT)/webhooks/alm"
	@echo "In another terminal, play ALM against it, then read what arrived:"
	@echo "  $(BIN)/alm-bridge send http://127.0.0.1:$(BRIDGE_PORT)/webhooks/alm --secret $(DEV_SECRET) --sample all"
	@echo "  BRIDGE_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$(KAFKA_PORT) $(BIN)/alm-bridge tail --from-beginning"
	@echo "Stop with Ctrl-C."
	@echo
	@# The development secret only for hmac: the bridge refuses a secret that contradicts
	@# the method (BRIDGE_AUTH_METHOD=none or basic make run).
	@method=$${BRIDGE_AUTH_METHOD:-hmac}; \
	if [ "$$method" = hmac ]; then export BRIDGE_HMAC_SECRET="$${BRIDGE_HMAC_SECRET:-$(DEV_SECRET)}"; fi; \
	BRIDGE_PORT=$(BRIDGE_PORT) BRIDGE_AUTH_METHOD=$$method \
	$(LOCALKAFKA) run -- $(BIN)/alm-bridge serve

# The consumers' contract for the default configuration (tests/unit/test_asyncapi.py checks
# that these copies match the code). BRIDGE_* variables of this shell are left out. The
# command needs the service's own dependencies only, like `make run`.
asyncapi-docs: $(RUN_STAMP)
	env $$(env | sed -n 's/^\(BRIDGE_[^=]*\)=.*/-u \1/p') $(BIN)/alm-bridge asyncapi -o docs/asyncapi.yaml
	env $$(env | sed -n 's/^\(BRIDGE_[^=]*\)=.*/-u \1/p') $(BIN)/alm-bridge asyncapi --format markdown -o docs/asyncapi.md

bench: $(STAMP)
	$(BIN)/python -m bench --both

bench-quick: $(STAMP)
	$(BIN)/python -m bench --quick

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis bench/results
