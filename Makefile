# make run: install into .venv and serve on http://127.0.0.1:8000/
# make test: lint, types, and the whole test suite (again on PostgreSQL when
#            QUART_TEST_POSTGRES_URL is set)
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: run test lint install lock translations bench bench-quick

install: $(VENV)/.installed

# requirements.lock pins every package to the version CI tested; `make lock` renews it.
$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --requirement requirements.lock
	$(BIN)/pip install --quiet --no-deps --editable '.[test]'
	touch $@

lock: install
	$(BIN)/pip install --quiet --editable '.[test]'
	$(BIN)/pip freeze --exclude-editable | grep -v '^pip==' > requirements.lock

run: install
	$(BIN)/hypercorn --config hypercorn.toml quart_app:app

# Extract the marked strings, merge them into each catalogue, compile: after editing texts,
# run it, translate what is new in quart_app/translations/*/LC_MESSAGES/messages.po, run it again.
translations: install
	$(BIN)/pybabel extract -F babel.cfg -k _l --no-location --sort-output --omit-header \
		-o quart_app/translations/messages.pot .
	$(BIN)/pybabel update -i quart_app/translations/messages.pot -d quart_app/translations \
		--no-fuzzy-matching
	$(BIN)/pybabel compile -d quart_app/translations

# axe-core for the accessibility tests, from the npm registry (skipped without npm).
tests/node_modules/axe-core: tests/package.json tests/package-lock.json
	@if command -v npm >/dev/null; then npm ci --prefix tests --no-audit --no-fund --silent; \
	else echo "npm not found: the accessibility tests will be skipped"; fi

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint tests/node_modules/axe-core
	$(BIN)/pytest --cov --cov-report=term-missing:skip-covered
	@if [ -n "$$QUART_TEST_POSTGRES_URL" ]; then \
		echo "--- the suite again on PostgreSQL ---"; \
		QUART_TEST_BACKEND=postgres $(BIN)/pytest -m "not browser"; \
	fi

# The benchmark (docs/benchmarks.md); needs Debian's wrk: apt-get install -y wrk
bench: install
	$(BIN)/python -m bench

bench-quick: install
	$(BIN)/python -m bench --quick
