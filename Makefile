# Two commands on a fresh machine:  make study  (set up and run the main job),  make test.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup study run test test-fast docs lint clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

# The main job: the rotation ablation study on local Ray, synthetic data, CPU, and its report.
study: setup
	$(PY) study/run.py --space rotation_ablation

# One synthetic RollingQ training run.
run: setup
	$(PY) -m rollingq.train --out runs/synthetic-rollingq

# The whole suite (CI runs this), with its 30 slowest tests listed.
test: setup
	$(PY) -m pytest -q --durations=30

# The in-process tests and one end-to-end study on local Ray, on two workers: no other Ray launch,
# CLI process, server, browser, docs build or bench script (the integration marker; docs/testing.md).
test-fast: setup
	$(PY) -m pytest -q -n 2 --dist worksteal -m "not slow and not gpu and not integration"

# The documentation site (docs/, mkdocs-material + mkdocstrings) into site/; strict: a broken
# link, a missing page or an unresolved docstring reference fails it (make test builds it too).
docs: setup
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

lint: setup
	$(PY) -m ruff check .

clean:
	rm -rf runs .pytest_cache site
