# The two commands a new user needs: `make demo` and `make test`.
# Both create the virtual environment from the lock file when it is missing
# or older than pyproject.toml / requirements.lock.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SCENARIO ?= core-link-cut
SPEED  ?= 4

.PHONY: demo demo-headless test lint clean venv bytecode

venv: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	$(MAKE) --no-print-directory bytecode
	touch $(STAMP)

# pip compiles an installed wheel's modules; an editable install's are compiled here, so a start does not
# compile ~100 modules from source where PYTHONDONTWRITEBYTECODE is set (~0.4 s). Only changed files redo.
bytecode:
	$(BIN)/python -m compileall -q ispvm_tui > /dev/null

demo: $(STAMP) bytecode
	$(BIN)/ispvm demo --scenario $(SCENARIO) --speed $(SPEED)

demo-headless: $(STAMP)
	$(BIN)/ispvm demo --headless --scenario $(SCENARIO) --speed 10 --json

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
