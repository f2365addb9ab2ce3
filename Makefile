# rat-monitor: `make demo` and `make test` work on a fresh clone with only Python 3.10+, pip and the
# package registries. Both create .venv when missing and install the project into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench install samples clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
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
