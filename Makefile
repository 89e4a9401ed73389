# Two commands do all the set-up on a fresh Debian machine with Python 3.11:
#   make run   - the demo: simulated fleet -> consumer -> local Delta lake (.lake/)
#   make test  - ruff, mypy, lint-imports and the whole pytest suite (Mosquitto installed if missing)
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint lock venv mosquitto chromium bench bench-transform dbt clean

# The venv holds exactly requirements.lock (every package, transitive ones included, by hash);
# the project itself is installed editable on top without touching the index.
$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { [ "$$(id -u)" = "0" ] && \
		apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null && \
		rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install --quiet --no-deps --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $(STAMP)

venv: $(STAMP)

# Mosquitto is the real MQTT broker the tests and `make run ARGS="--via mqtt"` start.
mosquitto:
	@if command -v mosquitto >/dev/null 2>&1 || test -x /usr/sbin/mosquitto; then :; \
	elif [ "$$(id -u)" = "0" ]; then \
		echo "installing mosquitto (Debian package)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null; \
	else \
		echo "mosquitto is missing: run 'sudo apt-get install mosquitto' (or make test as root)"; exit 1; \
	fi

# Debian's Chromium is the browser the UI tests (tests/ui/) drive with Playwright; Playwright's
# own browser download needs the internet, so it is never used.
chromium:
	@if test -x /usr/bin/chromium; then :; \
	elif [ "$$(id -u)" = "0" ]; then \
		echo "installing chromium (Debian package)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "chromium is missing: run 'sudo apt-get install chromium' (or make test as root)"; exit 1; \
	fi

run: venv
	$(BIN)/iot-lake run $(ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-logo
	VIRTUAL_ENV=$(abspath $(VENV)) $(BIN)/dg check defs

# The suite runs in PYTEST_WORKERS processes (pytest-xdist), a test file to each at a time, so
# module fixtures are built once: on the 2-core machine 5 to 14 minutes against 13 min 56 s in
# one process, most tests waiting on a subprocess, a broker or a Dagster run. PYTEST_WORKERS=0
# runs it in one process.
PYTEST_WORKERS ?= 2

test: venv mosquitto chromium lint
	$(BIN)/pytest --numprocesses $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

bench: venv mosquitto
	$(BIN)/python bench/ingest.py $(ARGS)

# A simulated day of N devices (ARGS="--devices N", default 1000) through silver and rollups.
bench-transform: venv
	$(BIN)/python bench/transform.py $(ARGS)

# The analyst marts of dbt_project/ over the lake (IOT_LAKE_ROOT, default .lake), with their tests.
dbt: venv
	$(BIN)/dbt build --project-dir dbt_project --profiles-dir dbt_project $(ARGS)

clean:
	rm -rf .lake .run bench/.data

# Re-resolve requirements.lock to the newest versions pyproject.toml allows, install them and run
# the whole test command; if it fails, the previous lock is put back (and reinstalled).
LOCK_COMPILE := $(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 \
	--universal --generate-hashes --quiet --output-file requirements.lock
lock: venv
	@mkdir -p .run && cp requirements.lock .run/requirements.lock.previous
	$(LOCK_COMPILE) --upgrade
	@if git diff --quiet -- requirements.lock; then echo "requirements.lock: already the newest"; \
	elif $(MAKE) test; then echo "requirements.lock upgraded and the suite passes: commit it"; \
	else echo "the suite fails on the upgraded lock: putting the previous one back"; \
		cp .run/requirements.lock.previous requirements.lock && $(MAKE) venv && exit 1; fi
