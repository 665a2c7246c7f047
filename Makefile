# strangler-blog. `make run` and `make test` set everything up themselves (a .venv here).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run services test lint clean worker relay

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

## Serve the monolith on 127.0.0.1:5000 (FLASK_RUN_PORT picks another port).
run: $(STAMP)
	$(BIN)/flask --app blog run --host 127.0.0.1

## Start every extracted service config.yaml marks `mode: http` (gunicorn, 127.0.0.1:<its port>,
## the same BLOG_CONFIG); Ctrl-C stops them all.
services: $(STAMP)
	$(BIN)/flask --app blog services

## The whole suite: lint, module boundaries, tests.
test: $(STAMP)
	$(BIN)/ruff check blog extracted tests
	$(BIN)/lint-imports
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check blog extracted tests
	$(BIN)/ruff format --check blog extracted tests

clean:
	rm -rf $(VENV) instance .pytest_cache .ruff_cache

## The extracted email service: a RabbitMQ consumer (services.email.mode: extracted).
worker: $(STAMP)
	$(BIN)/python -m extracted.email.worker

## The outbox relay on its own (events.broker: rabbitmq); the monolith also relays by itself.
relay: $(STAMP)
	$(BIN)/flask --app blog relay
