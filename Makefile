# The two commands:  `make run`  (dshub on its embedded default)  and  `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install run test lint typecheck lint-deploy pytest clean constraints

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "dshub needs Python 3.11 or newer; set PYTHON=python3.11 (or newer)")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	@deploy/run-local.sh

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy dshub webhook_service indexer tests bench

# Static checks of deploy/: hadolint, the Compose schema, systemd-analyze verify (against the
# wheel installed in a fresh venv), kubernetes-validate, promtool (see tests/deploy/lint.py).
lint-deploy: $(STAMP)
	$(BIN)/python -m tests.deploy.lint

# gitlab-ci-local (pinned in package.json; runs on Node 20 and needs rsync) executes the
# CI/CD components in tests/ci.
node_modules/.bin/gitlab-ci-local: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

# One test process per core (at most 4: each starts its own sandboxes, gunicorns and DVC
# runs); whole test files stay together so a module's shared world is built once.
PYTEST_WORKERS ?= auto
pytest: $(STAMP) node_modules/.bin/gitlab-ci-local
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --maxprocesses=4 --dist loadfile --cov --cov-report=term:skip-covered $(PYTEST_ARGS)

test: lint typecheck lint-deploy pytest

# Re-pin every dependency to what is installed now (run after changing pyproject.toml).
constraints:
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^dshub' > constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage
