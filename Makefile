# ocr-gateway: `make run` serves the gateway, `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install migrate run test lint format clean bench bench-ocr

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,ocr,tesseract,bench]'
	touch $(STAMP)

install: $(STAMP)

migrate: install
	$(BIN)/ocr-gateway migrate

run: migrate
	$(BIN)/ocr-gateway serve

test: install
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check src tests alembic bench
	$(BIN)/ruff format --check src tests alembic bench
	$(BIN)/mypy

format: install
	$(BIN)/ruff check --fix src tests alembic
	$(BIN)/ruff format src tests alembic

bench: install
	$(BIN)/python bench/run.py

bench-ocr: install
	$(BIN)/pip install --quiet -e '.[ocr,bench-ocr]'
	$(BIN)/python bench/ocr.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
