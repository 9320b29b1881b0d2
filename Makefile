# The two commands of the README: `make run` (demo) and `make test` (whole suite).
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: run test lint typecheck unit bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# A demo deployment in ./var/demo on local ports (base 10000: SMTP 10025,
# submission 10587, submissions 10465, IMAP 10143/10993, HTTPS 10443).
run: $(BIN)/.installed
	$(BIN)/mss demo --data-dir var/demo --port-base 10000

lint: $(BIN)/.installed
	$(BIN)/ruff check .

typecheck: $(BIN)/.installed
	$(BIN)/mypy

unit: $(BIN)/.installed
	$(BIN)/pytest -q

# Everything CI checks: lint, types, the suite on SQLite and PostgreSQL.
test: lint typecheck unit

bench: $(BIN)/.installed
	$(BIN)/python bench/smtp_intake.py
	$(BIN)/python bench/smtp_intake.py --postgres

clean:
	rm -rf $(VENV) var/demo .pytest_cache .mypy_cache .ruff_cache
