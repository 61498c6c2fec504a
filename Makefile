# The two commands of the README: `make run` (set up, index the bundled corpus, answer) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# `make run` keeps its index and converted models in the checkout's var/ (an installed engine uses the user's
# data and cache folders).
INDEX ?= $(or $(SEMSEARCH_INDEX),var/index)
run index: export SEMSEARCH_MODEL_CACHE ?= $(CURDIR)/var/models
CORPUS ?= data/news
QUESTION ?= energy cooperation in Central Asia
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install run index test lint

$(BIN)/semsearch: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -c constraints.txt -e ".[dev]"
	touch $@

install: $(BIN)/semsearch

$(INDEX)/CURRENT: | $(BIN)/semsearch
	$(BIN)/semsearch index $(CORPUS) --index $(INDEX)

index: $(INDEX)/CURRENT

run: install index
	$(BIN)/ask "$(QUESTION)" --index $(INDEX) -k 3
	@echo "Starting the service on http://$(HOST):$(PORT)/ (search page; API docs at /docs). Try:"
	@echo "  curl 'http://$(HOST):$(PORT)/search?q=energy%20cooperation%20in%20Central%20Asia&k=3'"
	@echo "  $(BIN)/ask \"$(QUESTION)\" --index $(INDEX)"
	$(BIN)/semsearch serve --index $(INDEX) --host $(HOST) --port $(PORT)

test: install
	tools/system-deps
	$(BIN)/python -m pytest

SOURCES := semsearch index search api benchmarks data tests tools

lint: install
	$(BIN)/ruff check $(SOURCES)
	$(BIN)/ruff format --check $(SOURCES)
	$(BIN)/python tools/typecheck_tree.py build/typecheck
	$(BIN)/mypy
