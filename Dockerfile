# ocr-gateway: the API with its dispatcher and results consumer. See docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Only what the package and its migrations need (no .venv, .env or runtime data).
COPY pyproject.toml README.md alembic.ini ./
COPY alembic ./alembic
COPY src ./src

# `ocr-gateway migrate` looks for alembic.ini and alembic/ next to the source tree; with a
# regular (non-editable) install that is a directory inside the interpreter, so link them there.
RUN pip install . \
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
