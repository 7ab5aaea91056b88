# jada-agent — the two commands are `make demo` and `make test` (see README.md).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)
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
	@set -e; for role in $(ROLES); do \
	  echo "== molecule test: $$role"; \
	  (cd roles/$$role && molecule test) ; \
	done

bench: setup
	$(PY) -m tests.bench

wheelhouse:
	$(PY) -m pip wheel -q -w wheelhouse .

clean:
	rm -rf wheelhouse reports .pytest_cache .ruff_cache
