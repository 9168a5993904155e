# Two commands on a fresh machine:  make demo   (set up + run the agent on the embedded default)
#                                   make test   (set up + run the test suite; CI runs this)
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: setup demo test lint bench clean

setup: $(VENV)/.installed

# torch is pinned to the CPU build that installs from the local wheel (a bare "torch" pulls a CUDA build).
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[train,dev]'
	touch $@

demo: setup
	$(VENV)/bin/mediqa demo

test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy mediqa agent engines export training

bench: setup
	$(PY) scripts/bench_agent.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
