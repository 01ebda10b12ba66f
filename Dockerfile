# ocr-gateway: one image for the gateway's three processes, each run as its own container (see
# docker-compose.yml): the API by default (`ocr-gateway serve`, after the migrations),
# `ocr-gateway dispatch` for the dispatcher and `ocr-gateway worker` for an OCR worker.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ORT_DISABLE_TELEMETRY=1

WORKDIR /app

# RapidOCR's OpenCV needs libGL and GLib at import time. The default engine, tesserocr, reads
# Debian's English and orientation (OSD) models.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
    tesseract-ocr-eng tesseract-ocr-osd \
 && rm -rf /var/lib/apt/lists/*

# Only what the package and its migrations need (no .venv, .env or runtime data).
COPY pyproject.toml README.md alembic.ini ./
COPY alembic ./alembic
COPY src ./src

# `ocr-gateway migrate` looks for alembic.ini and alembic/ next to the source tree; with a
# regular (non-editable) install that is a directory inside the interpreter, so link them there.
# The `tesserocr` extra is the worker's default engine (Tesseract's C API; its wheel carries
# libtesseract). The `ocr` extra is the rapidocr engine (models inside the wheel) and the
# table finder's requirements with one OpenCV, opencv-contrib-python-headless; RapidOCR and
# img2table come without their own OpenCV requirement, as `make install` does (docs/worker.md).
RUN pip install '.[ocr,tesserocr]' \
 && pip install --no-deps 'rapidocr-onnxruntime>=1.4,<2' 'img2table>=2.0,<3' \
 && python -c 'import cv2; cv2.ximgproc' \
 && root="$(python -c 'from ocr_gateway.db import migrate; print(getattr(migrate, "PROJECT_ROOT", "/app"))')" \
 && if [ ! -e "$root/alembic.ini" ]; then \
        ln -s /app/alembic.ini "$root/alembic.ini" && ln -s /app/alembic "$root/alembic"; \
    fi \
 && ocr-gateway --help > /dev/null

# Settings default to relative paths, so files/, temp/ and logs/ live under /app.
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin ocr \
 && mkdir -p /app/files /app/temp /app/logs \
 && chown ocr:ocr /app/files /app/temp /app/logs
USER ocr

EXPOSE 8000
CMD ["sh", "-c", "ocr-gateway migrate && exec ocr-gateway serve --host 0.0.0.0"]
