# jada-agent — the two commands are `make demo` and `make test` (see README.md).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)
# The caches (README "Caches"): the sandbox host's base image, shared by every checkout of this
# machine, and the controller's wheelhouse cache (the jada_agent role's
# jada_agent_wheelhouse_cache_dir). `make clean` removes them; `make demo-down` keeps them.
SANDBOX_CACHE ?= $(or $(JADA_SANDBOX_CACHE),/var/cache/jada-sandbox)
SANDBOX_DATA ?= $(or $(JADA_SANDBOX_DATA),/var/lib/jada-sandbox)
SANDBOX_RUN ?= $(or $(JADA_SANDBOX_RUN),/run/jada-sandbox)
WHEELHOUSE_CACHE ?= $(HOME)/.cache/jada-agent/wheelhouse
# make wheelhouse TARGET=cp312-cp312-manylinux_2_28_aarch64 (default: this machine's own).
TARGET ?= host
ROLES := $(patsubst roles/%/molecule/default/molecule.yml,%,$(wildcard roles/*/molecule/default/molecule.yml))

.PHONY: sandbox-image setup demo demo-down test lint pytest unit integration e2e molecule bench wheelhouse clean

setup:
	@bash scripts/setup.sh

## The whole incident story on this machine: fakes, a sandbox host, site.yml, the incidents.
demo: setup
	$(PY) -m tests.demo

## Stop the demo's fakes and remove its sandbox host.
demo-down:
	$(PY) -m tests.demo down

## Every test: lint, unit, integration, end-to-end, and Molecule for every role.
test: setup lint sandbox-image pytest molecule

## Build (or extract from the cache) the sandbox host's root filesystem once, before the tests.
sandbox-image:
	$(PY) -m tests.sandbox build

lint:
	ruff check .
	ruff format --check .
	mypy
	lint-imports
	yamllint -s .
	ansible-lint

pytest:
	$(PY) -m pytest -q tests

unit:
	$(PY) -m pytest -q tests/unit

integration:
	$(PY) -m pytest -q tests/integration

e2e:
	$(PY) -m pytest -q tests/e2e

molecule:
	@bash scripts/molecule.sh $(ROLES)

bench: setup
	$(PY) -m tests.bench

## The wheelhouse for TARGET (a wheel tag) in ./wheelhouse, as the jada_agent role builds it.
wheelhouse:
	$(PY) roles/jada_agent/files/wheelhouse.py --source . --cache wheelhouse --target $(TARGET)

## Remove what the builds, tests and the demo leave here, and the caches. The sandbox image is
## kept while sandbox hosts are up (theirs is the lower layer of their root filesystems).
clean:
	rm -rf wheelhouse reports .pytest_cache .ruff_cache .mypy_cache .ansible
	rm -rf "$(WHEELHOUSE_CACHE)"
	@if [ -n "$$(ls -A "$(SANDBOX_DATA)/machines" 2>/dev/null)" ]; then \
	  echo "clean: sandbox hosts are up (python -m tests.sandbox list): keeping $(SANDBOX_CACHE)"; \
	else \
	  echo "rm -rf $(SANDBOX_CACHE) $(SANDBOX_DATA) $(SANDBOX_RUN)"; \
	  rm -rf "$(SANDBOX_CACHE)" "$(SANDBOX_DATA)" "$(SANDBOX_RUN)"; \
	fi
