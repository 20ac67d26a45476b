# od-bridge: `make run` starts the daemon on config.example.yaml; `make test` runs every test.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
CONFIG  ?= config.example.yaml
DIST    ?= dist
# Every install is held to the tested versions (constraints.txt; `make constraints` renews it).
INSTALL := $(BIN)/python -m pip install -q -c constraints.txt
RUNTIME := $(VENV)/.installed
DEV     := $(VENV)/.installed-dev

.PHONY: run test lint bench bench-cluster emulate tail dist constraints floors clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# What the daemon needs: the runtime dependencies and uvloop (the `fast` extra).
$(RUNTIME): $(BIN)/python pyproject.toml constraints.txt
	$(INSTALL) -e '.[fast]'
	touch $@

# What the tests need on top: pytest, mypy, ruff (`dev`) and the Kubernetes schemas (`deploy`).
$(DEV): $(RUNTIME)
	$(INSTALL) -e '.[dev,fast,deploy]'
	touch $@

run: $(RUNTIME)
	$(BIN)/od-bridge serve -c $(CONFIG)

test: $(DEV)
	$(BIN)/ruff check .
	$(BIN)/mypy bridge bench
	$(BIN)/lint-imports --no-cache --no-logo
	$(BIN)/pytest -q

lint: $(DEV)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check bridge tests bench
	$(BIN)/mypy bridge bench
	$(BIN)/lint-imports --no-cache --no-logo

# In main-office's zone (config.example.yaml), so event times read right on any host.
emulate: $(RUNTIME)
	$(BIN)/od-bridge emulate --timezone America/Chicago

tail: $(RUNTIME)
	$(BIN)/od-bridge tail -c $(CONFIG) --pretty

bench: $(DEV)
	$(BIN)/python -m bench

# One vs two replicas on a private 3-node RabbitMQ cluster (needs rabbitmq-server installed).
bench-cluster: $(DEV)
	$(BIN)/python -m bench.scaleout

# A wheel to install elsewhere: pip install -c constraints.txt 'dist/od_bridge-….whl[fast]'
dist: $(RUNTIME)
	$(BIN)/python -m pip wheel -q --no-deps --wheel-dir $(DIST) .

# The declared floors hold: every direct dependency at the lowest version pyproject.toml allows
# (uv's lowest-direct resolution) in a scratch venv, then lint, types and the tests that need
# no broker. Run by CI after `make test`.
floors:
	rm -rf $(VENV)-floors
	$(PY) -m venv $(VENV)-floors
	$(VENV)-floors/bin/python -m pip install -q uv
	$(VENV)-floors/bin/uv pip install -q --native-tls --python $(VENV)-floors/bin/python \
	  --resolution lowest-direct -e '.[dev,fast,deploy]'
	$(VENV)-floors/bin/ruff check --no-cache .
	$(VENV)-floors/bin/mypy --cache-dir $(VENV)-floors/mypy bridge bench
	# Old releases may leave a socket for the GC (a ResourceWarning, an error in the pinned run):
	# here the question is whether the code works with them, so such warnings are not errors.
	$(VENV)-floors/bin/pytest -q -p no:cacheprovider -W 'ignore::pytest.PytestUnraisableExceptionWarning' \
	  tests/unit tests/component
	rm -rf $(VENV)-floors

# Renew the pins: resolve the newest allowed versions in a scratch venv, then `make clean test`.
constraints:
	rm -rf $(VENV)-lock
	$(PY) -m venv $(VENV)-lock
	$(VENV)-lock/bin/python -m pip install -q '.[dev,fast,deploy]'
	{ echo "# pip freeze of a fresh '.[dev,fast,deploy]' install: the versions make test passed with."; \
	  echo "# Used by make, CI and deploy/docker/Dockerfile (pip install -c constraints.txt)."; \
	  echo "# Renew with 'make constraints', then 'make clean test'."; \
	  $(VENV)-lock/bin/python -m pip freeze --exclude od-bridge; } > constraints.txt
	rm -rf $(VENV)-lock

clean:
	rm -rf $(VENV) $(VENV)-lock $(DIST) build var .pytest_cache .mypy_cache .ruff_cache
