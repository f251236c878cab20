# trustlab: `make run` starts the product, `make test` runs the whole test suite.
SHELL := /bin/bash
PYTHON ?= python3.11
REQ_HASH := $(shell cat requirements.txt | sha256sum | cut -c1-16)
VENV ?= $(HOME)/.cache/trustlab/venv-$(REQ_HASH)
PY := $(VENV)/bin/python
API_HOST ?= 127.0.0.1
API_PORT ?= 8000
UI_PORT ?= 8501
export TRUSTLAB_API_URL ?= http://$(API_HOST):$(API_PORT)

.PHONY: venv run api ui test test-fast bench reproduce clean-venv print-venv

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
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
	$(PY) -m streamlit run frontend/server.py --server.address 127.0.0.1 --server.port $(UI_PORT) \
	  --server.headless true --browser.gatherUsageStats false & \
	wait

api: venv
	@mkdir -p var
	TRUSTLAB_HOST=$(API_HOST) TRUSTLAB_PORT=$(API_PORT) $(PY) -m backend.serve

# The tests also exercise the optional Ray executor on a real local cluster: its extra is installed for them
# (never for `make run`).
$(VENV)/.ray-installed: $(VENV)/.installed requirements-ray.txt
	$(PY) -m pip install --disable-pip-version-check -q -r requirements-ray.txt
	@touch $@

test: venv $(PLOTLY_JS) $(VENV)/.ray-installed
	$(PY) -m pytest -q

test-fast: venv $(PLOTLY_JS)
	$(PY) -m pytest -q -m "not slow"

bench: venv
	@# the peers (TensorBoard, MLflow) and Ray are measured too: optional extras, installed for the benchmark only
	$(PY) -m pip install --disable-pip-version-check -q -r bench/requirements.txt -r requirements-ray.txt
	$(PY) -m bench.run

reproduce: venv
	$(PY) -m reproduction.run

print-venv:
	@echo $(VENV)

clean-venv:
	rm -rf $(VENV) .venv
