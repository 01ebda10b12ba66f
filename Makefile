# ocr-gateway: `make run` serves the gateway, `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install install-browser install-tessdata migrate run test test-unit fuzz lint format clean bench bench-peer bench-ocr

# OpenCV comes in several wheels that all install the same `cv2` and overwrite each other;
# rapidocr-onnxruntime asks for opencv-python, rapidocr 3 for opencv-python-headless, img2table
# for opencv-contrib-python. The one installed is opencv-contrib-python-headless (the `ocr` and
# `rapidocr3` extras list the other requirements of these three), and they are installed without
# their requirements. A venv made before this may hold another OpenCV wheel: it is removed, and
# since removing it deletes the shared cv2 files, the contrib wheel is reinstalled over them.
# Then cv2 must load, with contrib.
OCR_NO_DEPS := 'rapidocr-onnxruntime>=1.4,<2' 'rapidocr>=3,<4' 'img2table>=2.0,<3'
OTHER_OPENCV := opencv-python opencv-python-headless opencv-contrib-python

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,ocr,rapidocr3,tesseract,tesserocr,bench]' -e clients/python
	$(BIN)/pip install --quiet --no-deps $(OCR_NO_DEPS)
	for wheel in $(OTHER_OPENCV); do \
	  if $(BIN)/pip show --quiet $$wheel >/dev/null 2>&1; then \
	    $(BIN)/pip uninstall --quiet -y $$wheel \
	    && $(BIN)/pip install --quiet --force-reinstall --no-deps opencv-contrib-python-headless; \
	  fi; \
	done
	$(BIN)/python -c 'import cv2; cv2.ximgproc; print("cv2", cv2.__version__, "with contrib")'
	touch $(STAMP)

install: $(STAMP)

migrate: install
	$(BIN)/ocr-gateway migrate

run: migrate install-tessdata
	$(BIN)/ocr-gateway run

# The default OCR engine, tesserocr (a PyPI wheel with its own libtesseract), reads Debian's
# English and orientation models; the tesseract engine runs Debian's program. Installed when
# missing and apt-get is usable as root; else the worker says what to install.
install-tessdata:
	@if [ ! -f /usr/share/tesseract-ocr/5/tessdata/osd.traineddata ] || ! command -v tesseract >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      tesseract-ocr tesseract-ocr-eng tesseract-ocr-osd >/dev/null; \
	  else \
	    echo "tesseract-ocr-eng/-osd missing (apt-get install tesseract-ocr tesseract-ocr-eng tesseract-ocr-osd, as root)"; \
	  fi; \
	fi

# The monitoring page's browser test drives Debian's chromium (Playwright cannot download its
# own browsers here): installed when missing and apt-get is usable as root; else the test skips.
install-browser:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "chromium missing (apt-get install chromium, as root): the browser test will skip"; \
	  fi; \
	fi

# Then the core flow once more with every artefact on S3: OCR_GATEWAY_STORAGE=s3 makes the
# tests' settings store in a bucket of a real S3-compatible server (SeaweedFS's `weed`, from
# the dev extra, started by tests/support/s3.py): upload, render, dispatch, worker, result,
# exports and thumbnails, and the outage tests.
S3_CORE_TESTS := tests/integration/test_flow.py tests/integration/test_exports.py \
  tests/integration/test_thumbnails.py tests/integration/test_storage_outage.py

test: install install-browser install-tessdata
	$(BIN)/pytest
	OCR_GATEWAY_STORAGE=s3 $(BIN)/pytest -p no:schemathesis -p no:hypothesispytest \
	  $(S3_CORE_TESTS)

# The unit tests need no services and none of the fuzzing plugins, which take seconds to import.
test-unit: install
	$(BIN)/pytest -q -p no:schemathesis -p no:hypothesispytest tests/unit

# The mutation fuzzer runs 30 s inside `make test`; this runs it alone for FUZZ_SECONDS (10 min).
# FUZZ_SEED=<seed> repeats a run; the seed is printed at its start.
FUZZ_SECONDS ?= 600
fuzz: install
	FUZZ_SECONDS=$(FUZZ_SECONDS) $(BIN)/pytest -q -s tests/integration/test_mutation_fuzz.py

lint: install
	$(BIN)/ruff check src tests alembic bench clients/python
	$(BIN)/ruff format --check src tests alembic bench clients/python
	$(BIN)/mypy src tests bench clients/python/src

format: install
	$(BIN)/ruff check --fix src tests alembic bench clients/python
	$(BIN)/ruff format src tests alembic bench clients/python

bench: install bench-peer
	$(BIN)/python -m bench.run

# The render peer, pdftoppm, is Debian's poppler-utils: installed when missing and apt is usable
# (as root); otherwise the bench runs and marks the pdftoppm rows as skipped, saying why.
bench-peer:
	@command -v pdftoppm >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq poppler-utils >/dev/null; } \
	  || echo "pdftoppm (poppler-utils) is not installed: rows 1b and 1d will be skipped"

bench-ocr: install install-tessdata
	$(BIN)/pip install --quiet -e '.[ocr,bench-ocr]'
	$(BIN)/python -m bench.ocr

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
