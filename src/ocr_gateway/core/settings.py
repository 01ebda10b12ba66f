"""The one settings class: every value comes from an `OCR_GATEWAY_*` variable or `.env`."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal, Self, get_args

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The OCR engines a worker can run (`ocr_gateway.worker.engine` builds them), named once.
OcrEngineName = Literal["rapidocr", "rapidocr3", "tesseract", "tesserocr"]
OCR_ENGINES: tuple[str, ...] = get_args(OcrEngineName)
MIN_URL_SECRET_CHARS = 32


class Settings(BaseSettings):
    """Runtime configuration of the gateway; defaults fit the local PostgreSQL and RabbitMQ."""

    model_config = SettingsConfigDict(
        env_prefix="OCR_GATEWAY_", env_file=".env", extra="ignore", frozen=True
    )

    # Services
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/ocr_gateway"
    rabbitmq_url: SecretStr = SecretStr("amqp://guest:guest@127.0.0.1:5672/")
    pages_queue: str = "ocr.pages"
    results_queue: str = "ocr.results"

    # Storage
    # Where artefacts live (storage/): `local` is FILES_DIR; `s3` is the bucket below.
    storage: Literal["local", "s3"] = "local"
    files_dir: Path = Path("files")
    temp_dir: Path = Path("temp")
    # The s3 backend: any S3-compatible server (AWS, MinIO, SeaweedFS, ...). Without an
    # endpoint URL, AWS's own for the region.
    s3_endpoint_url: str | None = None
    s3_bucket: str = "ocr-gateway"
    s3_region: str = "us-east-1"
    s3_access_key_id: SecretStr | None = None
    s3_secret_access_key: SecretStr | None = None
    # Prepended to every key, so that several gateways can share a bucket.
    s3_prefix: str = ""
    # How page messages carry their image (README, "Keeping images out of the broker"):
    # `inline` as base64 in the message; `url` as a URL the worker GETs instead: presigned by
    # S3, or on local storage this gateway's own, signed with MESSAGE_IMAGE_URL_SECRET.
    message_images: Literal["inline", "url"] = "inline"
    # How long a page's URL stays valid: longer than a page may wait in the queue.
    message_image_url_ttl_s: int = Field(default=86_400, ge=60, le=7 * 86_400)
    # The key of the gateway's signed page URLs (local storage, `url`): the same in the API
    # and every dispatcher; at least 32 characters.
    message_image_url_secret: SecretStr | None = None
    # This gateway's base URL as workers reach it (signed page URLs); default http://HOST:PORT.
    public_url: str | None = None
    logs_dir: Path = Path("logs")
    log_level: str = "INFO"

    # HTTP
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    admin_api_key: SecretStr | None = None
    cors_origins: list[str] = Field(default_factory=list)

    # Clients and tenants (README, "Running it for many clients")
    # off: the tenant is the X-Tenant-Id header (or `default`); api_key: a key decides it.
    client_auth: Literal["off", "api_key"] = "off"
    # Off the loopback, `client_auth=off` is refused at start unless this says it is meant.
    allow_open_clients: bool = False
    # How long an API process trusts a key it has checked: a revoke takes effect within it.
    api_key_cache_s: float = Field(default=2.0, ge=0, le=5)
    # Limits per tenant; a tenant's own value in the database overrides each.
    tenant_max_pending_pages: int = Field(default=100_000, gt=0)
    tenant_uploads_per_minute: int = Field(default=600, gt=0)
    tenant_max_stored_bytes: int = Field(default=100 * 1024**3, gt=0)

    # Webhooks
    webhook_max_attempts: int = Field(default=8, gt=0)
    # The first retry's delay; each later one doubles it (15 s → 8 attempts over ~32 min).
    webhook_retry_base_s: float = Field(default=15.0, gt=0)
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    webhook_concurrency: int = Field(default=32, gt=0)
    # Hosts exempt from the private-address guard: names, addresses or CIDR ranges.
    webhook_allow_hosts: str = ""

    # Uploads and rendering
    max_upload_bytes: int = Field(default=200 * 1024 * 1024, gt=0)
    max_files_per_request: int = Field(default=32, gt=0)
    max_pages: int = Field(default=2000, gt=0)
    max_page_pixels: int = Field(default=25_000_000, gt=0)
    # All pages together: rendering cost grows with the total, not with the largest page. 10
    # Gpx is ~2,500 A4 pages at 200 DPI, so every document within MAX_PAGES of ordinary pages
    # passes, while 2,000 frames of 5000x5000 declared in a 90 KB animated WebP do not.
    max_document_pixels: int = Field(default=10_000_000_000, gt=0)
    # Inspection runs each upload in a process of its own, several at once, under a deadline.
    inspect_workers: int = Field(default=4, gt=0)
    inspect_timeout_s: float = Field(default=20.0, gt=0)
    # 200 DPI: the default OCR engine's character error rate is 10% at 150 DPI and 1.2% at
    # 200 (`make bench-ocr`, docs/worker.md); grayscale reads exactly as well as RGB at 57% of
    # the PNG size.
    render_dpi: int = Field(default=200, ge=36, le=600)
    render_grayscale: bool = True
    render_workers: int = Field(default_factory=lambda: max(1, os.cpu_count() or 1), gt=0)
    render_niceness: int = Field(default=10, ge=0, le=19)
    render_chunk_pages: int = Field(default=8, gt=0)
    render_page_timeout_s: float = Field(default=60.0, gt=0)
    render_max_attempts: int = Field(default=2, gt=0)
    render_lease_s: float = Field(default=300.0, gt=0)
    orphan_temp_age_s: float = Field(default=3600.0, ge=0)
    # A PDF upload's `text_layer` when it sends none: `off` sends every page to OCR (the seed's
    # flow); `auto` reads a page from its own text layer when that passes the quality check.
    text_layer: Literal["auto", "off"] = "off"

    # Thumbnails (`/images`): made in the render pool; an image left PROCESSING by a process
    # that died is taken up again by another (or the restarted one) once its lease runs out.
    thumbnail_timeout_s: float = Field(default=60.0, gt=0)
    thumbnail_max_attempts: int = Field(default=2, gt=0)
    thumbnail_lease_s: float = Field(default=30.0, gt=0)
    # WebP quality of every thumbnail (README, "Thumbnails": why WebP).
    thumbnail_quality: int = Field(default=80, ge=1, le=100)

    # Tasks: base64 images in a JSON body (`/image-sync`, `/image`)
    sync_timeout_s: float = Field(default=60.0, gt=0)
    max_images_per_request: int = Field(default=16, gt=0)
    # Refused while it streams: a body is read into memory, so this bounds it (base64 of
    # 16 page scans is ~20 MiB).
    max_json_body_bytes: int = Field(default=64 * 1024 * 1024, gt=0)

    # Publishing
    publisher_concurrency: int = Field(default=32, gt=0)
    publish_timeout_s: float = Field(default=15.0, gt=0)
    # Capped by the pages a dispatcher keeps claimed ahead (publishers + 32: dispatch/flow.py).
    dispatch_batch_size: int = Field(default=256, gt=0)
    dispatch_lease_s: float = Field(default=120.0, gt=0)
    dispatch_poll_s: float = Field(default=1.0, gt=0)
    queue_high_water: int = Field(default=1000, gt=0)
    # Task pages (priority > 0) published and not yet answered, across all dispatchers, above
    # which no more are claimed. Task pages ignore QUEUE_HIGH_WATER (a batch backlog must not
    # hold them back), so this alone keeps tasks from flooding the broker.
    task_high_water: int = Field(default=256, gt=0)
    # manual: pages wait for an operator's start; auto: rendered pages go out until a stop.
    dispatch_mode: Literal["manual", "auto"] = "manual"
    dispatch_niceness: int = Field(default=5, ge=0, le=19)

    # Results
    results_prefetch: int = Field(default=64, gt=0)

    # OCR worker (`ocr-gateway worker`)
    ocr_engine: OcrEngineName = "tesserocr"
    ocr_processes: int = Field(default=1, gt=0)
    ocr_page_timeout_s: float = Field(default=300.0, gt=0)
    ocr_stop_grace_s: float = Field(default=30.0, ge=0)
    # A page message's `image_url`: the GET's timeout and the largest image taken.
    image_fetch_timeout_s: float = Field(default=30.0, gt=0)
    image_fetch_max_bytes: int = Field(default=64 * 1024 * 1024, gt=0)
    run_workers: int = Field(default=1, ge=0)

    # Metrics (README, "Metrics"): the API serves /metrics on its own port; the dispatcher and
    # each worker on these, at `metrics_host` (0 = off). A worker whose port is taken (several
    # workers on one host) takes the next free one of `worker_metrics_port_span`.
    metrics_host: str = "127.0.0.1"
    dispatch_metrics_port: int = Field(default=9101, ge=0, le=65535)
    worker_metrics_port: int = Field(default=9102, ge=0, le=65535)
    worker_metrics_port_span: int = Field(default=16, ge=1, le=1000)
    # Pages by status and the queue gauges are read at most this often, however often scraped.
    metrics_refresh_s: float = Field(default=5.0, ge=0, le=5)

    @model_validator(mode="after")
    def _signed_urls_have_a_key(self) -> Self:
        """Page URLs on local storage are signed by the gateway: refuse to start without a key."""
        if self.message_images == "url" and self.storage == "local":
            secret = self.message_image_url_secret
            if secret is None or len(secret.get_secret_value()) < MIN_URL_SECRET_CHARS:
                raise ValueError(
                    "OCR_GATEWAY_MESSAGE_IMAGES=url on local storage needs"
                    f" OCR_GATEWAY_MESSAGE_IMAGE_URL_SECRET of {MIN_URL_SECRET_CHARS}+ characters"
                )
        return self

    @property
    def gateway_url(self) -> str:
        """The base URL workers reach this gateway at: PUBLIC_URL, or http://HOST:PORT."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"

    @property
    def sync_database_url(self) -> str:
        """The URL with the driver part removed, for tools that want plain `postgresql://`."""
        return self.database_url.replace("+asyncpg", "")


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
