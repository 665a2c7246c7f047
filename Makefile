# strangler-blog. `make run` and `make test` set everything up themselves (a .venv here).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run serve init-db services registry test lint clean bench bench-matrix worker relay soak \
	hosts-up hosts-down bench-network bench-scale

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
## cost, the lean baseline, CPU/memory per request, fault isolation and scale-out, CPU-pinned (load on CPU 0,
## servers on CPU 1): reports/latency.md, reports/latency.png, and a line of
## reports/latency-history.json (about 8 minutes). MATRIX_OPTS='--label "what changed"' names the
## run in the history; MATRIX_OPTS=--quick is a short smoke of every part (no history line).
## Needs wrk: without it the matrix says how to install it, and installs it when run as root.
MATRIX_OPTS ?=
bench-matrix: $(STAMP)
	@$(BIN)/python -c "import matplotlib" 2>/dev/null || \
		$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python bench/matrix.py $(MATRIX_OPTS)

## Scale-out and failover alone (the matrix's last part, about a minute): images at 1, 2, 3
## instances, then one of three killed under load and restarted: reports/scaleout.md and .json.
bench-scale: $(STAMP)
	$(BIN)/python bench/scaleout.py --out reports

## The soak: everything extracted on RabbitMQ under a moderate mixed load (register, login, post,
## comment, pay, upload, rename, read) for SOAK_SECONDS (10 minutes by default). It reports each
## process's memory over time, open file descriptors, sockets, outbox backlog and queue depth
## (reports/soak.md), and fails when something keeps growing or a request's side effect (post,
## payment, email...) is not there exactly once. make test runs a 25-second one.
SOAK_SECONDS ?= 600
soak: $(STAMP)
	SOAK_SECONDS=$(SOAK_SECONDS) $(BIN)/python bench/soak.py --report reports/soak.md

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

## Every process on a host (network namespace) of its own, RTT_MS apart (root; blog/hosts): the
## monolith on 127.0.0.1:5000, each service config.yaml marks http (SCALE="images=3" as for
## make services), the email worker when extracted. Returns once all are healthy; the logs are in
## instance/hosts/hosts/logs. `flask --app blog hosts set --rtt-ms 10` changes the distance.
RTT_MS ?= 2
hosts-up: $(STAMP)
	$(BIN)/flask --app blog hosts up --rtt-ms $(RTT_MS) $(foreach s,$(SCALE),--scale $(s))

## Stop the hosts' processes and remove their namespaces, links, qdiscs and nftables tables.
hosts-down: $(STAMP)
	$(BIN)/flask --app blog hosts down

## The latency lab across hosts (root): everything extracted, RTT 0/0.5/2/10 ms, keep-alive on
## and off, fan-out, the delay proxy's own cost: reports/network.md, .png, .json (about 1 min).
bench-network: $(STAMP)
	@$(BIN)/python -c "import matplotlib" 2>/dev/null || \
		$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python bench/network.py

## The extracted email service: a RabbitMQ consumer (services.email.mode: extracted).
worker: $(STAMP)
	$(BIN)/python -m extracted.email.worker

## The outbox relay on its own (events.broker: rabbitmq); the monolith also relays by itself.
relay: $(STAMP)
	$(BIN)/flask --app blog relay
