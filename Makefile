# rat-monitor: `make demo` and `make test` work on a fresh clone with only Python 3.10+, pip and the
# package registries. Both create .venv when missing and install the project into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUNTIME := $(VENV)/.runtime

.PHONY: demo test bench install samples clean

# The runtime only (no torch, no Dask): what a user needs to analyse videos with the bundled models.
$(RUNTIME): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	touch $(RUNTIME)

# Everything: training extras (torch), Dask, and the test tools.
$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP) $(RUNTIME)

install: $(STAMP)

demo: $(RUNTIME)
	$(BIN)/rat-monitor demo

test: $(STAMP)
	scripts/ensure-chromium
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m pytest -q -m slow -s bench/

samples: $(STAMP)
	sh sample_videos/make_samples.sh

clean:
	rm -rf $(VENV) runs
