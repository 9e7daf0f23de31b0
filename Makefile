# Two commands set up everything on a fresh machine with Python 3.11:
#   make run   - venv, install, embedded PostgreSQL + Redis, migrations, seed, all services
#   make test  - the whole test suite on the same embedded servers
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: run test test-unit test-integration fuzz lint protos check-protos bench helm-lint image-check \
	clean venv

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
# A topology, wired as the Helm chart wires it (exchange-dev --help; README "make run"):
#   SHARDS=N        matching pods matching-0..N-1, pod K owning instrument group K (every
#                   instrument dealt round-robin in id order; dev instruments added when
#                   there are fewer than N)
#   STANDBYS=M      standby matching pods that take over the group of a pod that dies
#   GROUPS='A;B,C'  the groups instead of the deal (';' between groups, ',' within one)
#   ORDER_WORKERS=N order-service processes on the order port (default auto: one per core)
#   MD_WORKERS=N    market-data processes on the market-data port (default 1)
# e.g. make run SHARDS=3 STANDBYS=1 ORDER_WORKERS=2 MD_WORKERS=2. A dead matching pod is
# restarted (a standby holds its instruments meanwhile). Without them: as always, one
# matching process owning every instrument.
RUN_ARGS = $(if $(SHARDS),--shards $(SHARDS)) $(if $(STANDBYS),--standbys $(STANDBYS)) \
	$(if $(GROUPS),--groups '$(GROUPS)') $(if $(ORDER_WORKERS),--order-workers $(ORDER_WORKERS)) \
	$(if $(MD_WORKERS),--md-workers $(MD_WORKERS)) $(if $(filter 1 yes true on,$(TLS)),--tls)
run: $(STAMP)
	$(VENV)/bin/exchange-dev$(if $(strip $(RUN_ARGS)), $(strip $(RUN_ARGS)))

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

# Builds deploy/Dockerfile here (podman, on an mmdebstrap base) and runs the migrate Job and
# the three services from it as the chart does, on PostgreSQL and Redis at 127.0.0.1 (root;
# deploy/k8s/README.md, "Checking the image here").
image-check: $(STAMP)
	$(PY) deploy/tools/image-check

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
