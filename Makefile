# Entry points: `make lab` deploys Dyssect on the local podman lab, `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
# The pinned BESS commit, vendored beside the project: the data plane's source for the tests and
# the lab unless DYSSECT_BESS_SRC names another tree or archive.
BESS_ARCHIVE ?= $(abspath $(CURDIR)/../shared/vendor/omec-bess-56020af0.tar.gz)
export DYSSECT_BESS_SRC ?= $(BESS_ARCHIVE)

.PHONY: help host-deps venv bess-tree lab lab-down test lint test-python test-native test-molecule bench experiment demo clean

help:
	@echo "make lab      set up this machine, bring up the podman lab and deploy Dyssect on it"
	@echo "make test     lint, native tests, BESS build, pytest and every molecule scenario"
	@echo "make bench    planner benchmark (dyssect-ctrl bench)"
	@echo "make experiment SPEC=experiments/x.yml [ARGS=--dry-run]  run an experiment spec"
	@echo "make lab-down remove the lab hosts"

# apt packages and host fixes; idempotent, quick when everything is present.
host-deps:
	bash scripts/host-deps.sh

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,gurobi,bess,experiments]'
	touch $@

venv: $(BIN)/.installed

lab: host-deps venv
	bash scripts/lab.sh

lab-down: venv
	$(BIN)/ansible-playbook playbooks/lab_down.yml

lint: venv
	$(BIN)/ruff check dyssect_ctrl tests scripts
	$(BIN)/ruff format --check dyssect_ctrl tests scripts
	$(BIN)/mypy --strict dyssect_ctrl
	$(BIN)/yamllint -s .
	$(BIN)/ansible-lint --profile production
	$(BIN)/python scripts/check_argument_specs.py

# A BESS tree built from DYSSECT_BESS_SRC (the vendored archive by default) in a cache folder
# outside the repository, rebuilt only when the archive or the bess role's build scripts change.
bess-tree:
	@bash scripts/bess-tree.sh

test-python: venv
	@tree=$$(bash scripts/bess-tree.sh) && DYSSECT_BESS_SRC=$$tree $(BIN)/pytest -q -rs

test-native:
	$(MAKE) -C native test

test-molecule: host-deps venv
	bash scripts/molecule-all.sh

test:
	@bash scripts/run-stages.sh host-deps venv lint test-native bess-tree test-python test-molecule

bench: venv
	$(BIN)/dyssect-ctrl bench

# The points of an experiment spec on the inventory's dut hosts (docs/experiments.md).
experiment: venv
	@test -n "$(SPEC)" || { echo 'make experiment: set SPEC=experiments/<name>.yml'; exit 2; }
	$(BIN)/dyssect-ctrl experiment run $(SPEC) $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
	$(MAKE) -C native clean
