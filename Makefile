# Every target sets itself up: the first run creates .venv from requirements.lock.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
STACK ?= dev
export PYTHONPATH := $(CURDIR)
# Bytecode is cached once, in the venv (never beside the sources), and read by every later process: the
# suite's workers and the subprocesses it starts would otherwise each compile the same provider SDKs from
# source (pulumi_azure_native and pulumi_kubernetes: about 8 s of CPU per process). Only what is imported is
# compiled; compiling the whole venv up front would cost more than it saves.
export PYTHONPYCACHEPREFIX := $(CURDIR)/$(VENV)/pycache
unexport PYTHONDONTWRITEBYTECODE

.PHONY: help venv test run plan bench clean envoy-descriptors

help:
	@echo "make run            serve the sample model locally (Envoy router + inference server)"
	@echo "make test           run the whole test suite"
	@echo "make plan STACK=x   offline plan of stack x (no cloud credentials)"
	@echo "make bench          run the benchmarks, JSON into bench/results/"
	@echo "make envoy-descriptors  rewrite router/envoy_descriptors.binpb (when the router renders a new Envoy type)"

# uv (pinned as in requirements.lock) installs the lock in seconds where pip took three minutes on 2 cores.
UV_VERSION := $(shell sed -n 's/^uv==//p' requirements.lock)
$(STAMP): requirements.lock pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q 'uv==$(UV_VERSION)'
	$(VENV)/bin/uv pip install -q --python $(PY) -r requirements.lock
	$(VENV)/bin/uv pip install -q --python $(PY) --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

# Azurite (the Blob Storage emulator) for the model data tests and benchmark, pinned by package-lock.json.
AZURITE := tools/azurite/node_modules/.bin/azurite-blob
$(AZURITE): tools/azurite/package.json tools/azurite/package-lock.json
	npm ci --prefix tools/azurite --no-audit --no-fund --loglevel=error
	touch $(AZURITE)

# The sample's two model versions are built, not committed: Ridge on scikit-learn's bundled diabetes data
# (v1 alpha 0.1 in model/, v2 alpha 1.0 in model-v2/), both written by one deterministic run (grouped target).
SAMPLE_MODEL := examples/models/diabetes/model/diabetes-ridge.pkl examples/models/diabetes/model-v2/diabetes-ridge.pkl
$(SAMPLE_MODEL) &: $(STAMP) examples/models/diabetes/train.py
	$(PY) examples/models/diabetes/train.py

# The v1 examples' models (examples/v1, in v1's azureml-models layout): built the same way, by one
# deterministic script that writes every file listed here.
V1_MODELS := $(addprefix examples/v1/,\
	multi-model/model/diabetes-ridge/1/ridge.pkl multi-model/model/diabetes-ridge/2/ridge.pkl \
	multi-model/model/diabetes-lasso/1/lasso/model.pkl multi-model/model/diabetes-lasso/1/lasso/features.json \
	mlopspython/model/diabetes_regression_model.pkl/3/diabetes_regression_model.pkl \
	data-collection/model/diabetes-ridge/4/diabetes-ridge.pkl \
	rawhttp-upload/model/diabetes-csv/1/model.joblib gpu/model/diabetes-elasticnet/2/model.pkl)
$(V1_MODELS): $(STAMP) examples/v1/train.py
	$(PY) examples/v1/train.py

# Layer contracts (pyproject.toml [tool.importlinter]) first: a circle or an upward import fails fast.
# Then zizmor on the workflows, offline (no network, no GitHub token): any finding fails.
# Then every suite in one pytest run on four workers, one file per worker: the end-to-end suites wait on real
# Envoy and inference servers more than they compute, so they overlap the CPU-bound graph and policy tests
# (a fresh clone of this tree on a shared 2-core machine: 7.6 minutes in all, 6.1 of them in pytest).
test: $(STAMP) $(SAMPLE_MODEL) $(V1_MODELS) $(AZURITE)
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/zizmor --offline .github/workflows
	$(PY) -m pytest -q -n 4 --dist loadfile

run: $(STAMP) $(SAMPLE_MODEL)
	$(VENV)/bin/aksinf serve

plan: $(STAMP)
	$(VENV)/bin/aksinf plan --stack $(STACK)

# The Envoy API descriptors the router encodes its binary xDS files with (router/envoy_descriptors.binpb, committed),
# rewritten from the pinned xds-protos in a throwaway environment: only when the router renders a new message type.
envoy-descriptors: $(STAMP)
	$(VENV)/bin/uv run --no-project --python 3.11 --with xds-protos==1.85.0 python tools/envoy_descriptors.py

# The router benchmark's compiled load generator and reference proxy: Debian's wrk and nginx, installed
# when missing (only `make bench` needs them). The nginx package's own service is not used: the
# benchmark starts its own nginx processes on 127.0.0.1.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
BENCH_TOOLS := /usr/bin/wrk /usr/sbin/nginx
$(BENCH_TOOLS):
	$(SUDO) apt-get update -q
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk nginx

bench: $(STAMP) $(SAMPLE_MODEL) $(AZURITE) $(BENCH_TOOLS)
	$(PY) -m bench

clean:
	rm -rf $(VENV) .pytest_cache
