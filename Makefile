# strangler-blog. `make run` and `make test` set everything up themselves (a .venv here).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run serve init-db services registry test lint clean bench bench-matrix worker relay

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

## Serve the monolith on 127.0.0.1:5000 (FLASK_RUN_PORT picks another port).
run: $(STAMP)
	$(BIN)/flask --app blog init-db
	$(BIN)/flask --app blog run --host 127.0.0.1

## Serve the monolith under the production server config.yaml names (granian by default) on
## 127.0.0.1:5000: what the latency lab measures. `make run` is Flask's development server.
serve: $(STAMP)
	$(BIN)/flask --app blog serve

## Create the monolith's tables (make run does it too; a server also does it when it starts).
init-db: $(STAMP)
	$(BIN)/flask --app blog init-db

## Start every extracted service config.yaml marks `mode: http` (127.0.0.1:<its port>, the same
## BLOG_CONFIG); SCALE="images=3" runs three images instances. Ctrl-C stops them all.
services: $(STAMP)
	$(BIN)/flask --app blog services $(foreach s,$(SCALE),--scale $(s))

## The whole suite: lint, format, module boundaries, types, tests.
test: $(STAMP)
	$(BIN)/ruff check blog extracted tests bench lab
	$(BIN)/ruff format --check blog extracted tests bench lab
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/pytest

## Latency suite in the topology config.yaml describes (BLOG_BENCH_TOPOLOGY=images-http etc.
## overrides it): saved under .benchmarks/ as <topology>, then compared with the previous run.
BENCH_OPTS ?=
bench: $(STAMP)
	@topology=$$($(BIN)/python bench/latency.py topology) && \
	echo "== latency suite, topology: $$topology" && \
	$(BIN)/pytest tests/latency -q --benchmark-enable --benchmark-save=$$topology \
		--benchmark-save-data --benchmark-sort=name \
		--benchmark-columns=min,median,iqr,max,rounds $(BENCH_OPTS) && \
	$(BIN)/python bench/latency.py compare

## Every topology, F0 and the ladder, each hop, the post page, throughput per CPU (wrk), idle
## cost, the lean baseline, CPU/memory per request and fault isolation, CPU-pinned (load on CPU 0,
## servers on CPU 1): reports/latency.md, reports/latency.png, and a line of
## reports/latency-history.json (about 8 minutes). MATRIX_OPTS='--label "what changed"' names the
## run in the history; MATRIX_OPTS=--quick is a short smoke of every part (no history line).
## Needs wrk: without it the matrix says how to install it, and installs it when run as root.
MATRIX_OPTS ?=
bench-matrix: $(STAMP)
	@$(BIN)/python -c "import matplotlib" 2>/dev/null || \
		$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python bench/matrix.py $(MATRIX_OPTS)

lint: $(STAMP)
	$(BIN)/ruff check blog extracted tests bench lab
	$(BIN)/ruff format --check blog extracted tests bench lab

clean:
	rm -rf $(VENV) instance .pytest_cache .ruff_cache

## The service registry (etcd, discovery.kind: registry) on 127.0.0.1:2379, until Ctrl-C.
ETCD_FLAGS = --name strangler-blog --data-dir instance/etcd \
	--listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
	--listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
	--initial-cluster strangler-blog=http://127.0.0.1:2380
registry:
	@command -v etcd >/dev/null 2>&1 || { \
		echo "etcd is not installed. Debian/Ubuntu: sudo apt-get install etcd-server;"; \
		echo "macOS: brew install etcd; others: https://etcd.io/docs/latest/install/"; exit 1; }
	@mkdir -p instance
	etcd $(ETCD_FLAGS)

## The extracted email service: a RabbitMQ consumer (services.email.mode: extracted).
worker: $(STAMP)
	$(BIN)/python -m extracted.email.worker

## The outbox relay on its own (events.broker: rabbitmq); the monolith also relays by itself.
relay: $(STAMP)
	$(BIN)/flask --app blog relay
