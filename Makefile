# trustlab: `make run` starts the product, `make test` runs the whole test suite.
SHELL := /bin/bash
PYTHON ?= python3.11
# Pinned requirements, one file per set (pyproject.toml reads the same files): the runtime, the test tools, the
# optional Ray executor, the reproduction report, the benchmark peers. `make run` installs the runtime only.
RUNTIME_REQS := requirements.txt
TEST_REQS := requirements-dev.txt requirements-ray.txt reproduction/requirements.txt
BENCH_REQS := bench/requirements.txt requirements-ray.txt
# The virtualenv's cache key covers every requirements file any target installs into it.
REQ_FILES := $(RUNTIME_REQS) $(TEST_REQS) bench/requirements.txt
REQ_HASH := $(shell cat $(REQ_FILES) | sha256sum | cut -c1-16)
VENV ?= $(HOME)/.cache/trustlab/venv-$(REQ_HASH)
PY := $(VENV)/bin/python
API_HOST ?= 127.0.0.1
API_PORT ?= 8000
UI_PORT ?= 8501
export TRUSTLAB_API_URL ?= http://$(API_HOST):$(API_PORT)

.PHONY: venv run api ui test test-fast bench reproduce clean-venv print-venv print-req-files

venv: $(VENV)/.installed

$(VENV)/.installed: $(RUNTIME_REQS)
	@mkdir -p $(dir $(VENV))
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	@touch $@
	@ln -sfn $(VENV) .venv

# Live charts load Plotly from frontend/static/ (Streamlit's static serving): copied from the installed plotly
# package at install time, never by the app at start.
PLOTLY_JS := frontend/static/plotly.min.js
$(PLOTLY_JS): $(VENV)/.installed
	$(PY) -m frontend.live_chart
	@touch $@

run: venv $(PLOTLY_JS)
	@mkdir -p var
	@echo "trustlab: API on http://$(API_HOST):$(API_PORT) (docs at /docs), UI on http://127.0.0.1:$(UI_PORT)"
	@# On Ctrl-C or exit: stop both servers once and wait for them (a self-signalling 'kill 0' trap recursed
	@# until bash crashed with "Segmentation fault").
	@trap 'trap - EXIT INT TERM; kill $$(jobs -p) 2>/dev/null; wait; exit 0' EXIT INT TERM; \
	TRUSTLAB_HOST=$(API_HOST) TRUSTLAB_PORT=$(API_PORT) $(PY) -m backend.serve & \
	$(PY) -m frontend.serve --server.address 127.0.0.1 --server.port $(UI_PORT) & \
	wait

api: venv
	@mkdir -p var
	TRUSTLAB_HOST=$(API_HOST) TRUSTLAB_PORT=$(API_PORT) $(PY) -m backend.serve

# The UI alone (its Host / Origin check and the sign-in page: frontend/serve.py, frontend/signin.py).
ui: venv $(PLOTLY_JS)
	$(PY) -m frontend.serve --server.address 127.0.0.1 --server.port $(UI_PORT)

# The tests need the test tools, and exercise the optional Ray executor on a real local cluster and the
# reproduction report: those extras are installed for them (never for `make run`), resolved together with the
# runtime pins so that none of them moves.
$(VENV)/.test-installed: $(VENV)/.installed $(TEST_REQS)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt $(addprefix -r ,$(TEST_REQS))
	@touch $@

test: venv $(PLOTLY_JS) $(VENV)/.test-installed
	$(PY) -m pytest -q

test-fast: venv $(PLOTLY_JS) $(VENV)/.test-installed
	$(PY) -m pytest -q -m "not slow"

bench: venv
	@# the peers (TensorBoard, MLflow) and Ray are measured too: optional extras, installed for the benchmark only
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt $(addprefix -r ,$(BENCH_REQS))
	$(PY) -m bench.run

reproduce: venv
	@# the report's plots and template (matplotlib, Jinja2): an optional extra, installed for the report only
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt -r reproduction/requirements.txt
	$(PY) -m reproduction.run

print-venv:
	@echo $(VENV)

print-req-files:
	@echo $(REQ_FILES)

clean-venv:
	rm -rf $(VENV) .venv

# Lint: ruff (ruff.toml), mypy strict on the trainer (mypy.ini) and the layering's import contracts (.importlinter).
$(VENV)/.dev-installed: $(VENV)/.installed requirements-dev.txt
	$(PY) -m pip install --disable-pip-version-check -q -r requirements-dev.txt
	@touch $@

.PHONY: lint
lint: venv $(VENV)/.dev-installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
