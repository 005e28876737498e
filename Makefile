# Two commands on a fresh machine: `make run` (install, then compute the embedded sample,
# offline) and `make test` (install, then run the tests). Python 3.11 with venv is all they need.
VENV ?= .venv
PYTHON ?= python3
BIN = $(VENV)/bin

.PHONY: install run test ui ui-national clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

run: install
	$(BIN)/fragilite run

test: install
	$(BIN)/python -m pytest

ui: install
	$(BIN)/fragilite ui

# The national location (sources, département partitions, merge) in its own UI.
ui-national: install
	$(BIN)/fragilite ui --national

clean:
	rm -rf build
