"""Page bodies on local disk, without a broker: inline and by URL, a missing image found before
publishing, and the file a key names."""

from __future__ import annotations

import uuid
from pathlib import Path

import orjson
import pytest

from ocr_gateway.core.settings import Settings
from ocr_gateway.dispatch.bodies import Outgoing, PageBodies, Unreadable
from ocr_gateway.dispatch.page_urls import PageUrlSigner
from ocr_gateway.dispatch.repository import ClaimedPage
from ocr_gateway.messaging.contracts import encode_page_message
from ocr_gateway.storage.keys import page_key
from ocr_gateway.storage.local import LocalStore

SECRET = "s" * 40
PNG = b"\x89PNG\r\n\x1a\n fake"


def _seeded(root: Path, job: uuid.UUID, numbers: list[int]) -> LocalStore:
    (root / str(job)).mkdir(parents=True)
    for number in numbers:
        (root / str(job) / f"{number}.png").write_bytes(PNG)
    return LocalStore(root)


def test_the_file_of_a_key_is_under_the_folder_and_nothing_else(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    job = uuid.uuid4()
    assert store.file_path(page_key(job, 3)) == tmp_path.resolve() / str(job) / "3.png"
    for key in ("../x.png", f"{job}/../../x.png", "/etc/passwd"):
        with pytest.raises(ValueError, match="leaves the storage folder"):
            store.file_path(key)


async def test_inline_bodies_and_a_missing_image(tmp_path: Path) -> None:
    job = uuid.uuid4()
    store = _seeded(tmp_path, job, [1])
    bodies = PageBodies(Settings(files_dir=tmp_path, _env_file=None), store)
    try:
        first, second = await bodies.prepare(
            [ClaimedPage(1, job, 1, ""), ClaimedPage(2, job, 2, "", tables=True)]
        )
    finally:
        bodies.close()
    assert first == Outgoing(1, f"{job}:1", encode_page_message(job, 1, PNG))
    assert isinstance(second, Unreadable) and second.missing


async def test_url_bodies_are_signed_and_carry_no_image(tmp_path: Path) -> None:
    job = uuid.uuid4()
    store = _seeded(tmp_path, job, [1])
    (tmp_path / str(job) / "3.png").mkdir()  # not a file: missing too
    settings = Settings(
        files_dir=tmp_path,
        message_images="url",
        message_image_url_secret=SECRET,
        public_url="http://gw:8000",
        _env_file=None,
    )
    bodies = PageBodies(settings, store)
    try:
        prepared = await bodies.prepare(
            [ClaimedPage(1, job, 1, "", priority=10, tables=True), ClaimedPage(2, job, 3, "")]
        )
    finally:
        bodies.close()
    first, second = prepared
    assert isinstance(first, Outgoing) and first.priority == 10
    message = orjson.loads(first.body)
    assert set(message) == {"job_id", "page_number", "image_url", "tables"}
    url = message["image_url"]
    assert url.startswith(f"http://gw:8000/api/v1/page-images/{job}/1?expires=")
    query = dict(part.split("=") for part in url.split("?")[1].split("&"))
    signer = PageUrlSigner.from_settings(settings)
    assert signer is not None
    signer.check(job, 1, query["expires"], query["signature"])
    assert isinstance(second, Unreadable) and second.missing


def test_url_bodies_on_local_disk_need_the_secret(tmp_path: Path) -> None:
    settings = Settings(files_dir=tmp_path, _env_file=None).model_copy(
        update={"message_images": "url"}
    )
    with pytest.raises(ValueError, match="MESSAGE_IMAGE_URL_SECRET"):
        PageBodies(settings, LocalStore(tmp_path))
