# `make demo` and `make test` both build .venv on first use (torch==2.13.0 first: a CPU build is
# on disk, and installing it before anything else keeps the resolver from pulling CUDA wheels).
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
EXTRAS := torch,bench,models,dev,cluster
DEPS   := $(VENV)/.deps-installed

.PHONY: demo test lint typecheck fuzz bench clean install

$(PY):
	python3 -m venv $(VENV)

$(DEPS): pyproject.toml | $(PY)
	$(PIP) install "torch==2.13.0"
	$(PIP) install "setuptools>=68" wheel
	$(PIP) install -e ".[$(EXTRAS)]" --config-settings editable_mode=strict
	touch $@

# Refreshes the editable link tree so new modules are picked up (strict mode links files).
install: $(DEPS)
	$(PIP) install --no-deps --no-build-isolation -e . --config-settings editable_mode=strict

demo: install
	$(PY) -P -m onnxsmith.cli.main demo

lint: install
	$(PY) -P -m ruff check .
	$(PY) -P -m ruff format --check .

typecheck: install
	# from the editable link tree, where onnxsmith.passes etc. exist as the installed layout
	cd build/__editable__.onnxsmith-*/ && $(CURDIR)/$(PY) -P -m mypy --config-file $(CURDIR)/pyproject.toml -p onnxsmith

# Two workers, one test file each at a time (module fixtures build once): on 2 cores the suite
# takes 6 minutes instead of 13, as tests wait on subprocesses and small sessions. The slowest
# tests are listed, to keep it under 10 minutes.
test: lint typecheck
	$(PY) -P -m pytest -q -n 2 --dist loadfile --durations=15

# Property tests at 400 examples each, the hostile corpus, and the >2 GB model (needs ~7 GB
# of disk in the temp folder and a few minutes).
fuzz: install
	HYPOTHESIS_PROFILE=fuzz ONNXSMITH_LARGE=1 $(PY) -P -m pytest -q tests \
		-k "property or hostile or large" --hypothesis-show-statistics

clean:
	rm -rf $(VENV) build *.egg-info
