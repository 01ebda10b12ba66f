"""The settings class: `OCR_GATEWAY_*` variables, `.env`, and the bounds each value must meet."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from ocr_gateway.core.settings import Settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No `OCR_GATEWAY_*` variable of the calling shell, and no `.env` in the working directory."""
    for key in list(os.environ):
        if key.upper().startswith("OCR_GATEWAY_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    yield


def test_the_defaults_fit_the_local_services() -> None:
    settings = Settings(_env_file=None)
    assert settings.port == 8000 and settings.host == "127.0.0.1"
    assert (settings.pages_queue, settings.results_queue) == ("ocr.pages", "ocr.results")
    assert settings.rabbitmq_url.get_secret_value() == "amqp://guest:guest@127.0.0.1:5672/"
    assert settings.admin_api_key is None
    assert settings.sync_database_url == "postgresql://postgres@127.0.0.1:5432/ocr_gateway"


@pytest.mark.parametrize("port", [1, 80, 8000, 65535])
def test_a_port_in_range_is_taken(port: int) -> None:
    assert Settings(_env_file=None, port=port).port == port


@pytest.mark.parametrize("port", [0, -1, 65536, 100_000])
def test_a_port_out_of_range_is_refused(port: int) -> None:
    with pytest.raises(ValidationError, match="port"):
        Settings(_env_file=None, port=port)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("render_dpi", 35),
        ("render_dpi", 601),
        ("max_upload_bytes", 0),
        ("max_pages", 0),
        ("max_page_pixels", -1),
        ("render_workers", 0),
        ("render_niceness", 20),
        ("dispatch_niceness", -1),
        ("publisher_concurrency", 0),
        ("queue_high_water", 0),
        ("publish_timeout_s", 0),
        ("dispatch_poll_s", -0.1),
        ("results_prefetch", 0),
        ("ocr_processes", 0),
        ("run_workers", -1),
        ("ocr_engine", "easyocr"),
    ],
)
def test_a_value_out_of_its_bounds_is_refused(field: str, value: object) -> None:
    with pytest.raises(ValidationError, match=field):
        Settings.model_validate({field: value, "_env_file": None})


def test_values_come_from_prefixed_variables_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCR_GATEWAY_PORT", "9001")
    monkeypatch.setenv("OCR_GATEWAY_PAGES_QUEUE", "pages.elsewhere")
    monkeypatch.setenv("OCR_GATEWAY_ADMIN_API_KEY", "s3cret")
    monkeypatch.setenv("OCR_GATEWAY_CORS_ORIGINS", '["https://a.example", "https://b.example"]')
    monkeypatch.setenv("OCR_GATEWAY_RENDER_GRAYSCALE", "false")
    monkeypatch.setenv("RESULTS_QUEUE", "unprefixed.is.ignored")
    monkeypatch.setenv("HOST", "0.0.0.0")
    settings = Settings(_env_file=None)
    assert settings.port == 9001
    assert settings.pages_queue == "pages.elsewhere"
    assert settings.results_queue == "ocr.results"
    assert settings.host == "127.0.0.1"
    assert settings.admin_api_key == SecretStr("s3cret")
    assert "s3cret" not in repr(settings)
    assert settings.cors_origins == ["https://a.example", "https://b.example"]
    assert settings.render_grayscale is False


def test_a_bad_variable_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCR_GATEWAY_PORT", "70000")
    with pytest.raises(ValidationError, match="port"):
        Settings(_env_file=None)


def test_dotenv_is_read_unless_env_file_is_none(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("OCR_GATEWAY_PORT=8123\nOCR_GATEWAY_LOG_LEVEL=DEBUG\n")
    from_file = Settings()
    assert (from_file.port, from_file.log_level) == (8123, "DEBUG")
    without = Settings(_env_file=None)
    assert (without.port, without.log_level) == (8000, "INFO")


def test_a_variable_wins_over_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("OCR_GATEWAY_PORT=8123\n")
    monkeypatch.setenv("OCR_GATEWAY_PORT", "8124")
    assert Settings().port == 8124


def test_settings_are_frozen() -> None:
    settings = Settings(_env_file=None)
    with pytest.raises(ValidationError):
        settings.port = 1  # type: ignore[misc]
