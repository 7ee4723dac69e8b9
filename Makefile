# make demo: set everything up and run the main job on synthetic data (local Ray, in-process).
# make test: set everything up and run the whole test suite (unit, integration, slow, cluster tiers).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO := demo-out

.PHONY: demo test test-setup test-quick test-unit test-integration test-slow test-cluster install lint chromium mlflow-server clean

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (Python 3.11) on PATH, or make PYTHON=..."; exit 1; }
	$(PYTHON) -m venv $(VENV)

# Reinstall only when pyproject.toml or the tested versions changed (the stamp is older than them). The
# constraints pin every package to the versions the suite was run with; pip check must find nothing broken.
# uv installs them, byte-compiled as pip would (the same pins and packages: both venvs in 78 s here from an empty
# cache, pip 100-120 s; without --compile-bytecode every process would compile TensorFlow and Ray from source).
UV_VERSION := 0.13.9
$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet uv==$(UV_VERSION)
	$(BIN)/uv pip install --python $(BIN)/python --quiet --compile-bytecode -c constraints.txt -e ".[test,viz]"
	$(BIN)/python -m pip check
	touch $(STAMP)

install: $(STAMP)

# The tracking tests start a real `mlflow server` (sqlite, local artifacts) on 127.0.0.1. The server has pins of its
# own that clash with the project's (pyarrow, pandas), so it lives in a venv of its own; users need only the client
# (exifray[mlflow] = mlflow-skinny).
MLFLOW_VENV := .venv-mlflow
MLFLOW_STAMP := $(MLFLOW_VENV)/.installed
$(MLFLOW_STAMP): tests/mlflow-server.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (Python 3.11) on PATH, or make PYTHON=..."; exit 1; }
	$(PYTHON) -m venv $(MLFLOW_VENV)
	$(MLFLOW_VENV)/bin/python -m pip install --quiet uv==$(UV_VERSION)
	$(MLFLOW_VENV)/bin/uv pip install --python $(MLFLOW_VENV)/bin/python --quiet --compile-bytecode -r tests/mlflow-server.txt
	touch $(MLFLOW_STAMP)

mlflow-server: $(MLFLOW_STAMP)

# Both venvs at once: the installs spend much of their time downloading and unpacking.
test-setup:
	$(MAKE) --no-print-directory -j2 $(STAMP) $(MLFLOW_STAMP)

# The report and page tests drive Debian's Chromium; as root the Makefile installs it, otherwise it says how.
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium (the browser tests need it)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; \
	  else \
	    echo "make test needs Chromium for the browser tests; run:  sudo apt-get install -y chromium"; exit 1; \
	  fi; }

lint: $(STAMP)
	$(BIN)/ruff check exifray tests jobs tools
	$(BIN)/mypy

# Three pytest-xdist workers, a test file each at a time (its module fixtures are built once), the longest tiers first
# (tests/conftest.py orders them): much of the suite waits on Ray, subprocesses, servers and killed nodes, so with
# two files in flight the 2 cores still idle; with three they stay busy (docs/testing.md has the figures).
# Byte-compiled first: with PYTHONDONTWRITEBYTECODE set (as on CI), every process the suite starts (trial workers,
# actors, CLIs) would otherwise compile exifray's modules again, 0.1 s each. Python recompiles a stale .pyc itself.
# Chromium's apt install and the two venvs' installs run side by side (each waits mostly on downloads and
# unpacking); lint needs the venv, so it follows them.
test:
	$(MAKE) --no-print-directory -j3 chromium $(STAMP) $(MLFLOW_STAMP)
	$(MAKE) --no-print-directory lint
	$(BIN)/python -m compileall -q exifray jobs tests
	$(BIN)/python -m pytest tests -q -p no:cacheprovider --timeout=900 -n 3 --dist loadfile --no-loadscope-reorder --durations=25

# The edit loop: lint, the unit tier and the integration tests under 5 s each (tests/quick.txt, written from a
# full run's timings by tools/quick_tests.py). `make test` stays the whole suite.
test-quick: $(STAMP) lint
	$(BIN)/python -m pytest -q -p no:cacheprovider --timeout=300 -m unit tests
	$(BIN)/python -m pytest -q -p no:cacheprovider --timeout=300 @tests/quick.txt

test-unit: $(STAMP)
	$(BIN)/python -m pytest tests -q -m unit

test-integration: $(STAMP) $(MLFLOW_STAMP)
	$(BIN)/python -m pytest tests -q -m integration

test-cluster: $(STAMP)
	$(BIN)/python -m pytest tests -q -m cluster

test-slow: $(STAMP)
	$(BIN)/python -m pytest tests -q -m slow

demo: $(STAMP)
	$(BIN)/exifray synth $(DEMO)/crawl --scenario indoor_outdoor --photos 2000 --seed 0
	$(BIN)/exifray ingest $(DEMO)/crawl --out $(DEMO)/dataset --sizes 32
	rm -rf $(DEMO)/experiments/demo
	$(BIN)/exifray sweep --space search_spaces/demo.yaml --data $(DEMO)/dataset --storage-path $(DEMO)/experiments --dashboard
	$(BIN)/exifray leaderboard $(DEMO)/experiments/demo --format csv,md,html,json

clean:
	rm -rf $(DEMO) .pytest_cache
