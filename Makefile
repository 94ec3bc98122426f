# Two commands matter: `make up` runs the whole system locally, `make test` runs every check.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Every package of the venv and of the images, pinned; `make lock` re-resolves it.
LOCK := requirements.lock
WEB_STAMP := web/dist/index.html

.PHONY: up test bench bench-ha example setup system-deps web lint test-py test-web test-deploy lock \
	images clean

setup: system-deps $(STAMP) $(WEB_STAMP)

system-deps:
	@bash scripts/install-system-deps.sh

$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c $(LOCK) -e '.[dev]'
	@touch $(STAMP)

web: $(WEB_STAMP)

$(WEB_STAMP): $(shell find web -path web/node_modules -prune -o -path web/dist -prune -o -type f -print 2>/dev/null)
	cd web && npm ci --no-audit --no-fund && npm run build

## Run Redis, NATS, the generator and 6 consumers; UI at http://localhost:30080. Ctrl-C stops all.
up: setup
	$(PY) scripts/run_local.py

## The session time-out example (examples/session_timeouts) against the servers of `make up`.
example: setup
	$(PY) -m examples.session_timeouts

## Every check: lint, types, unit + integration + end-to-end + fault + browser tests, UI
## component tests, deployment checks.
test: setup lint test-web test-deploy test-py

lint: $(STAMP)
	$(VENV)/bin/ruff check src dev tests scripts examples
	$(VENV)/bin/ruff format --check src dev tests scripts examples
	$(VENV)/bin/mypy

## pytest: every Python test, including the browser tests and the manifests' end-to-end run.
test-py: $(STAMP) $(WEB_STAMP)
	$(VENV)/bin/pytest

test-web: $(WEB_STAMP)
	cd web && npm test

## Render, validate and lint the deployment files (their pytest part runs in test-py).
test-deploy: $(STAMP)
	bash scripts/check_deploy.sh --no-pytest

## 100,000 keys through 2, 6 and 12 consumers, then 10,000 keys at 1 ms next to Redis's own
## expiry lag; every key checked; prints keys/s, lost/duplicates, delay, CPU per key and stage.
## Then timers: 10,000 plain and registered keys at 1 ms in a Redis at its defaults, empty and
## holding 1,000,000 other TTL keys; each key's lateness.
bench: setup
	$(PY) scripts/bench.py
	$(PY) scripts/bench_timers.py

## 100,000 keys, 6 consumers: on a 3-node NATS cluster (stream R3 in files), on a Redis Cluster
## (3 masters + 3 replicas), and on both.
bench-ha: setup
	$(PY) scripts/bench.py --nats-cluster --keys 100000 --consumers 6
	$(PY) scripts/bench.py --redis-cluster --keys 100000 --consumers 6
	$(PY) scripts/bench.py --nats-cluster --redis-cluster --keys 100000 --consumers 6

## Re-resolve requirements.lock from pyproject.toml with pip-tools (kept in a venv of its own,
## so the project venv holds only what the lock lists). Pins that still satisfy pyproject.toml
## stay; `make lock LOCK_ARGS=--upgrade` takes the newest releases within its bounds.
lock:
	$(PYTHON) -m venv $(VENV)/pip-tools
	$(VENV)/pip-tools/bin/python -m pip install --quiet pip-tools
	CUSTOM_COMPILE_COMMAND="make lock" $(VENV)/pip-tools/bin/pip-compile --quiet --extra dev \
		--strip-extras --no-emit-index-url --no-emit-find-links $(LOCK_ARGS) -o $(LOCK) \
		pyproject.toml

## Build the generator and consumer images (docker build) and check that both answer --help;
## skipped where no Docker engine answers. Base images without Docker Hub: docs/IMAGES.md.
images:
	@bash scripts/build_images.sh

clean:
	rm -rf $(VENV) web/node_modules web/dist test-output .local
