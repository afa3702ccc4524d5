# Everything a new user needs, from nothing but Python 3.11+, git and make.
SHELL := /bin/bash
PYTHON ?= python3
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
export DAGSTER_HOME := $(CURDIR)/.dagster_home
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/$(VENV)
# Installed packages get their bytecode at install time: where PYTHONDONTWRITEBYTECODE is set
# (as on the shared 2-core machine), every process would otherwise compile dagster and its dependencies
# from source again (importing the code location: 12.9 s of CPU instead of 4.9 s at load 11), and the
# tests start dozens of processes (daemons, code servers, one per launched run).
export UV_COMPILE_BYTECODE := 1
# dg runs the project's code in .venv and warns unless that is the active environment.
DG := VIRTUAL_ENV=$(CURDIR)/$(VENV) $(VENV)/bin/dg
# Annotator ids in exports are pseudonymized with a keyed hash. Locally the key is a random one
# made once under DAGSTER_HOME (never in the repository); production sets its own secret.
KEY_FILE := $(DAGSTER_HOME)/pseudonym.key
export ANNOTATION_PIPELINES_PSEUDONYM_KEY ?= $(shell cat $(KEY_FILE) 2>/dev/null)

.PHONY: help setup setup-runtime demo backfill dev serve test test-e2e typecheck test-scale lint format clean clean-secrets

help:
	@echo "make setup  - install uv, the locked dependencies (dev tools included) and DAGSTER_HOME"
	@echo "make demo   - install, generate a synthetic workload, materialize the whole graph"
	@echo "              (over an earlier demo's other workload: from a clean slate;"
	@echo "              other options: make demo DEMO_ARGS=\"--days 3\")"
	@echo "make backfill FROM=YYYY-MM-DD TO=YYYY-MM-DD [JOB=daily_annotation_job]"
	@echo "             - queue one run per day of a partitioned job (the daemon runs them)"
	@echo "make dev    - open the Dagster UI on the same local instance"
	@echo "make serve  - the REST API on the demo's lake (http://127.0.0.1:8000/docs)"
	@echo "make test   - lint, type check, dg check defs and the test suite, minus the e2e runs"
	@echo "make test-e2e - the minutes-long end-to-end runs: daemon, webserver, browser, live proof,"
	@echo "              whole demo (CI runs make test, then this); one such file alone:"
	@echo "              .venv/bin/pytest -m e2e tests/test_live_loop.py"
	@echo "make typecheck - mypy over the engine, the code location and the resources"
	@echo "make test-scale - heavy scale tests (millions of rows)"
	@echo "make lint   - ruff check + format check"
	@echo "make format - ruff fixes and formatting, in place"
	@echo "make clean  - delete the lake, the Dagster instance and test artifacts;"
	@echo "              keeps the pseudonym key and the API token store"
	@echo "make clean-secrets - delete the pseudonym key and the API token store too"

# uv itself comes from PyPI into a private folder, so nothing global is touched.
$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==0.13.8

# Our own modules compiled once too: every Dagster run, code server and daemon imports the code
# location, and where PYTHONDONTWRITEBYTECODE is set each of them otherwise compiles it again
# (5.1 s -> 4.1 s to load it here).
setup-runtime: $(UV) $(DAGSTER_HOME)/dagster.yaml
	$(UV) sync --frozen --no-dev --inexact --quiet
	$(VENV)/bin/python -m compileall -q annotation_pipelines assets resources

setup: $(UV) $(DAGSTER_HOME)/dagster.yaml
	$(UV) sync --frozen --quiet
	$(VENV)/bin/python -m compileall -q annotation_pipelines assets resources

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml
	test -s $(KEY_FILE) || (umask 077 && $(PYTHON) -c "import secrets; print(secrets.token_hex(32))" > $(KEY_FILE))

# Other options through DEMO_ARGS, e.g. make demo DEMO_ARGS="--days 3 --judgments 20000".
# --fresh: a demo over an earlier demo's different workload (other options, or another day's
# default --until) starts from a clean slate instead of mixing the two; the same workload is
# rebuilt in place. It never deletes landing files the demo did not write (it refuses instead).
DEMO_ARGS ?=

demo: setup-runtime
	ANNOTATION_PIPELINES_PSEUDONYM_KEY=$$(cat $(KEY_FILE)) $(VENV)/bin/annotation-pipelines demo --fresh $(DEMO_ARGS)

# A multi-day backfill from the command line: `dagster asset materialize --partition-range`
# takes only assets with a single-run backfill policy, and every per-day layer here runs one day
# per run. This queues one run per day, as a backfill from the UI does (the dagster/backfill tag,
# so dagster.yaml's limit of one backfill run at a time applies); the daemon runs them: `make dev`,
# or on a headless box `dagster-daemon run -w workspace.yaml` with the same DAGSTER_HOME.
JOB ?= daily_annotation_job

backfill:
	@test -n "$(FROM)" -a -n "$(TO)" || \
		{ echo "usage: make backfill FROM=YYYY-MM-DD TO=YYYY-MM-DD [JOB=$(JOB)]" >&2; exit 2; }
	@$(VENV)/bin/python -m assets.common.backfill_range $(FROM) $(TO) || exit 2
	$(VENV)/bin/dagster job backfill -w workspace.yaml -j $(JOB) --from $(FROM) --to $(TO) --noprompt

# dg ships in the dev group (it is a developer tool), so `make dev` syncs that group too.
dev: setup
	ANNOTATION_PIPELINES_PSEUDONYM_KEY=$$(cat $(KEY_FILE)) $(DG) dev -h 127.0.0.1 -p 3000

# The read-only REST API over the demo's lake; make a token first:
#   .venv/bin/annotation-pipelines token --scopes labels:read,quality:read
# One worker holds 200 requests/s of 1,000-label pages with p99 under 10 ms here; more workers
# each keep their own cache of parsed partitions.
API_WORKERS ?= 1

serve: setup-runtime
	ANNOTATION_PIPELINES_PSEUDONYM_KEY=$$(cat $(KEY_FILE)) $(VENV)/bin/annotation-pipelines serve --host 127.0.0.1 --port 8000 --workers $(API_WORKERS)

# Three workers on two cores: the tests wait on subprocesses, daemons and PostgreSQL as much as
# they compute, and a third worker fills that wait. The minutes-long end-to-end runs (marked
# e2e: a real daemon and webserver, the browser, the live proof's three-minute stream, the whole
# demo) are left out of `make test` and run by `make test-e2e`; CI runs both (.ci/run).
test: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(DG) check defs
	$(VENV)/bin/pytest -n 3 --dist loadfile

test-e2e: setup
	$(VENV)/bin/pytest -m e2e -n 3 --dist loadfile

test-scale: setup
	$(VENV)/bin/pytest -m scale

typecheck: setup
	$(VENV)/bin/mypy

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# The pseudonym key and the token store outlive `clean`: a new key changes every annotator's
# pseudonym in what was exported, and a new store revokes every token handed out.
SECRETS := pseudonym.key api_tokens.json

clean:
	rm -rf data test-artifacts
	test ! -d $(DAGSTER_HOME) || find $(DAGSTER_HOME) -mindepth 1 -maxdepth 1 \
		$(foreach name,$(SECRETS),! -name $(name)) -exec rm -rf {} +

clean-secrets: clean
	rm -f $(addprefix $(DAGSTER_HOME)/,$(SECRETS))
