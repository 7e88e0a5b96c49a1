# Each target installs what it needs into .venv on first use; a fresh clone needs nothing else.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
VENDOR := frontend/static/vendor
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: run test test-deploy bench lint format clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Browser libraries come from the npm registry (pinned in frontend/package-lock.json) and are
# served from frontend/static/vendor (the files package.json's `vendor` script copies): no CDN,
# nothing third-party committed.
$(VENDOR)/.installed: frontend/package.json frontend/package-lock.json
	cd frontend && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error && npm run --silent vendor
	touch $@

# The dashboard on the embedded default (with a worker process beside it that drives the runs); it
# prints its sign-in link once it answers, and opens no browser. `make run PORT=8080 HOST=0.0.0.0`
# serves elsewhere (given on the command line: a shell may export HOST for its own use). `myriad
# run SPEC` runs a spec in the terminal instead.
HOST = 127.0.0.1
PORT = 8000
run: $(STAMP) $(VENDOR)/.installed
	$(BIN)/myriad serve --host $(HOST) --port $(PORT)

# The browser tests drive Debian's Chromium: Playwright cannot download its own browsers here.
$(CHROMIUM):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium

# The multi-host tests make hosts of network namespaces (iproute2).
/usr/sbin/ip:
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq iproute2

# The fault suite (tests/faults) kills and restarts a Redis server of its own.
/usr/bin/redis-server:
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq redis-server

test: $(STAMP) $(VENDOR)/.installed $(CHROMIUM) /usr/sbin/ip /usr/bin/redis-server
	$(BIN)/python -m pytest

# docker compose for real (tests/deploy): it installs and starts a container engine of its own
# (root and Debian's apt: docker.io, mmdebstrap); also part of `make test`.
test-deploy: $(STAMP)
	$(BIN)/python -m pytest tests/deploy

bench: $(STAMP)  # bench/stack.py needs the PostgreSQL server at 127.0.0.1:5432 (as in CI)
	$(BIN)/python bench/engine.py
	$(BIN)/python bench/stack.py
	$(BIN)/python bench/dashboard.py
	$(BIN)/python bench/dashboard.py --load  # the embedded service under load
	$(BIN)/python bench/llm.py
	$(BIN)/python bench/experiments.py

# ruff everywhere; mypy on agents/ and backend/ (the files and strictness: pyproject.toml's [tool.mypy]).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) results .pytest_cache .ruff_cache .mypy_cache
