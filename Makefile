# The two commands of the README: `make run` (demo) and `make test` (whole suite).
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: run test lint typecheck unit bench bench-quick clean

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

# Every benchmark of bench/, one after the other (about 20 minutes; an idle machine
# gives figures worth comparing). `make bench-quick` runs the short ones only.
bench: bench-quick
	$(BIN)/python bench/relay.py
	$(BIN)/python bench/relay.py --postgres
	$(BIN)/python bench/directory_import.py
	$(BIN)/python bench/imap_large_folder.py
	$(BIN)/python bench/imap_ops_mix.py
	$(BIN)/python bench/imap_idle_many.py --clients 10000
	$(BIN)/python bench/content_stages.py --sizes

bench-quick: $(BIN)/.installed
	$(BIN)/python bench/smtp_intake.py
	$(BIN)/python bench/smtp_intake.py --postgres
	$(BIN)/python bench/smime.py
	$(BIN)/python bench/policies.py
	$(BIN)/python bench/content_stages.py --evict
	$(BIN)/python bench/mime_parse.py

clean:
	rm -rf $(VENV) var/demo .pytest_cache .mypy_cache .ruff_cache
