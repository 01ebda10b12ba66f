"""One contract, both backends: every `ArtefactStore` method holds the same promises on the
local disk and on a real S3 server (SeaweedFS, tests/support/s3.py)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from ocr_gateway.storage import ArtefactMissing, ArtefactStore, StorageUnavailable
from ocr_gateway.storage.keys import image_key, job_artefact_key, job_prefix, page_key
from ocr_gateway.storage.local import LocalStore
from ocr_gateway.storage.s3 import MULTIPART_THRESHOLD, S3Store
from tests.support.s3 import S3Server, new_bucket_name

BACKENDS = ["local", "s3"]


def s3_store(server: S3Server, bucket: str, temp_dir: Path, prefix: str = "") -> S3Store:
    return S3Store(
        bucket=bucket,
        endpoint_url=server.endpoint_url,
        region=server.region,
        access_key_id=server.access_key_id,
        secret_access_key=server.secret_access_key,
        prefix=prefix,
        temp_dir=temp_dir,
    )


@pytest.fixture(params=BACKENDS)
async def store(
    request: pytest.FixtureRequest, s3_server: S3Server, tmp_path: Path
) -> AsyncIterator[ArtefactStore]:
    """Each backend, empty: a folder, or a new bucket that `prepare()` creates (removed after)."""
    backend: ArtefactStore
    if request.param == "local":
        backend = LocalStore(tmp_path / "files")
    else:
        # A prefix, as a shared bucket would have: keys and listings must hide it.
        bucket = new_bucket_name()
        backend = s3_store(s3_server, bucket, tmp_path / "temp", prefix="gw/")
    await backend.prepare()
    yield backend
    if isinstance(backend, S3Store) and s3_server.running:
        await backend.delete_prefix("")
        await asyncio.to_thread(s3_server.client().delete_bucket, Bucket=backend.bucket)
    await backend.close()


def random_bytes(size: int) -> bytes:
    return os.urandom(size)


async def test_put_and_get_bytes(store: ArtefactStore) -> None:
    job = uuid.uuid4()
    await store.put_bytes(page_key(job, 1), b"\x89PNG first", content_type="image/png")
    assert await store.get_bytes(page_key(job, 1)) == b"\x89PNG first"
    assert await store.size(page_key(job, 1)) == len(b"\x89PNG first")
    assert await store.exists(page_key(job, 1))


async def test_a_write_replaces_the_whole_object(store: ArtefactStore, tmp_path: Path) -> None:
    key = job_artefact_key(uuid.uuid4(), "result.zip")
    await store.put_bytes(key, b"a" * 5000)
    await store.put_bytes(key, b"short")
    assert await store.get_bytes(key) == b"short"
    replacement = tmp_path / "replacement"
    replacement.write_bytes(b"from a file")
    await store.put_file(key, replacement)
    assert await store.get_bytes(key) == b"from a file"
    assert replacement.exists(), "without move, the source file stays"


async def test_readers_see_the_old_or_the_new_object_never_a_part(store: ArtefactStore) -> None:
    """Atomic replace: reads racing with writes of a different size see one whole version."""
    key = page_key(uuid.uuid4(), 1)
    versions = [bytes([n]) * (200_000 + n * 1000) for n in range(6)]
    await store.put_bytes(key, versions[0])
    seen: set[bytes] = set()

    async def write_all() -> None:
        for version in versions[1:]:
            await store.put_bytes(key, version)

    async def read_while(writer: asyncio.Task[None]) -> None:
        while not writer.done():
            seen.add(await store.get_bytes(key))
        seen.add(await store.get_bytes(key))

    writer = asyncio.create_task(write_all())
    await read_while(writer)
    await writer
    assert seen <= set(versions)
    assert await store.get_bytes(key) == versions[-1]


async def test_put_file_with_move_consumes_the_file(store: ArtefactStore, tmp_path: Path) -> None:
    key = page_key(uuid.uuid4(), 3)
    source = tmp_path / "rendered.png"
    source.write_bytes(b"rendered page")
    await store.put_file(key, source, content_type="image/png", move=True)
    assert not source.exists()
    assert await store.get_bytes(key) == b"rendered page"


async def test_missing_keys(store: ArtefactStore) -> None:
    key = page_key(uuid.uuid4(), 1)
    with pytest.raises(ArtefactMissing):
        await store.get_bytes(key)
    with pytest.raises(ArtefactMissing):
        async for _chunk in store.iter_bytes(key):
            pass
    with pytest.raises(ArtefactMissing):
        async with store.local_copy(key):
            pass
    assert await store.size(key) is None
    assert not await store.exists(key)
    await store.delete(key)  # a missing key is not an error
    await store.delete_prefix(job_prefix(uuid.uuid4()))
    assert await store.list_keys(job_prefix(uuid.uuid4())) == []


async def test_prefixes_list_and_delete_one_job_only(store: ArtefactStore) -> None:
    first, second = uuid.uuid4(), uuid.uuid4()
    keys = [page_key(first, n) for n in (1, 2, 10)] + [
        job_artefact_key(first, "thumbnails/1-100.webp")
    ]
    others = [page_key(second, 1), image_key(f"{uuid.uuid4()}/original")]
    for key in keys + others:
        await store.put_bytes(key, key.encode())
    assert await store.list_keys(job_prefix(first)) == sorted(keys)
    assert await store.list_keys(f"{first}/1") == sorted([page_key(first, 1), page_key(first, 10)])
    await store.delete(page_key(first, 10))
    assert page_key(first, 10) not in await store.list_keys(job_prefix(first))
    await store.delete_prefix(job_prefix(first))
    assert await store.list_keys(job_prefix(first)) == []
    for key in others:
        assert await store.get_bytes(key) == key.encode()


async def test_delete_prefix_removes_more_than_one_listing_page(store: ArtefactStore) -> None:
    """S3 lists and deletes 1,000 keys at a time: 1,203 keys need two of each."""
    job = uuid.uuid4()
    keys = [page_key(job, n) for n in range(1, 1204)]
    semaphore = asyncio.Semaphore(32)

    async def put(key: str) -> None:
        async with semaphore:
            await store.put_bytes(key, b"p")

    await asyncio.gather(*(put(key) for key in keys))
    assert len(await store.list_keys(job_prefix(job))) == len(keys)
    await store.delete_prefix(job_prefix(job))
    assert await store.list_keys(job_prefix(job)) == []


async def test_big_objects_stream_in_and_out(store: ArtefactStore, tmp_path: Path) -> None:
    """A file over the multipart threshold goes up in parts and comes back in chunks."""
    data = random_bytes(MULTIPART_THRESHOLD + (3 << 20) + 17)
    source = tmp_path / "big.pdf"
    source.write_bytes(data)
    key = job_artefact_key(uuid.uuid4(), "result.pdf")
    await store.put_file(key, source, content_type="application/pdf", move=True)
    assert not source.exists()
    assert await store.size(key) == len(data)
    digest = hashlib.sha256()
    chunks = 0
    async for chunk in store.iter_bytes(key, chunk_size=1 << 20):
        assert len(chunk) <= 1 << 20
        digest.update(chunk)
        chunks += 1
    assert digest.digest() == hashlib.sha256(data).digest()
    assert chunks >= len(data) >> 20


async def test_local_copy_is_a_readable_file(store: ArtefactStore, tmp_path: Path) -> None:
    key = page_key(uuid.uuid4(), 2)
    await store.put_bytes(key, b"page two")
    async with store.local_copy(key) as path:
        assert path.read_bytes() == b"page two"
        held = path
    if store.backend == "s3":
        assert not held.exists(), "the download is removed at exit"
        assert held.is_relative_to(tmp_path / "temp")
    else:
        assert held.exists(), "on disk it is the stored file itself"


async def test_presigned_url(store: ArtefactStore) -> None:
    """On S3 a plain HTTP GET reads the object through its presigned URL, and a tampered URL
    is refused; the local backend has none (the gateway signs its own)."""
    key = page_key(uuid.uuid4(), 1)
    await store.put_bytes(key, b"presigned page", content_type="image/png")
    url = await store.presigned_url(key, 60)
    if store.backend == "local":
        assert url is None
        return
    assert url is not None
    async with httpx.AsyncClient() as http:
        answer = await http.get(url)
        assert answer.status_code == 200
        assert answer.content == b"presigned page"
        tampered = await http.get(url.replace(key, page_key(uuid.uuid4(), 1)))
        assert tampered.status_code == 403


async def test_check(store: ArtefactStore) -> None:
    await store.check()


async def test_local_keys_cannot_leave_the_folder(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "files")
    await store.prepare()
    for key in ("../outside", "a/../../outside", "/etc/passwd"):
        with pytest.raises(ValueError):
            await store.put_bytes(key, b"x")


async def test_s3_prepare_creates_a_missing_bucket(s3_server: S3Server, tmp_path: Path) -> None:
    bucket = f"made-{uuid.uuid4().hex[:12]}"
    store = s3_store(s3_server, bucket, tmp_path)
    await store.prepare()
    try:
        await store.put_bytes("a", b"b")
        assert await store.get_bytes("a") == b"b"
        await store.delete_prefix("")
    finally:
        await store.close()
    await asyncio.to_thread(s3_server.client().delete_bucket, Bucket=bucket)


async def test_s3_wrong_keys_are_unavailable(s3_server: S3Server, s3_bucket: str) -> None:
    """A refused signature is the storage failing, not a missing artefact."""
    store = S3Store(
        bucket=s3_bucket,
        endpoint_url=s3_server.endpoint_url,
        access_key_id=s3_server.access_key_id,
        secret_access_key="not-the-secret",
    )
    with pytest.raises(StorageUnavailable):
        await store.prepare()
    await store.close()


async def test_s3_outage_is_unavailable_then_recovers(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    """With the server stopped every call raises `StorageUnavailable` (503); once it is back,
    the same client works again and the objects stored before are still there."""
    store = s3_store(s3_server, s3_bucket, tmp_path)
    await store.prepare()
    key = page_key(uuid.uuid4(), 1)
    await store.put_bytes(key, b"before")
    source = tmp_path / "page.png"
    source.write_bytes(b"during")
    await asyncio.to_thread(s3_server.stop)
    try:
        with pytest.raises(StorageUnavailable):
            await store.check()
        with pytest.raises(StorageUnavailable):
            await store.put_bytes(key, b"lost")
        with pytest.raises(StorageUnavailable):
            await store.put_file(key, source, move=True)
        assert source.exists(), "a failed move leaves the file for a retry"
        with pytest.raises(StorageUnavailable):
            await store.get_bytes(key)
        with pytest.raises(StorageUnavailable):
            await store.size(key)
        with pytest.raises(StorageUnavailable):
            await store.list_keys("")
        with pytest.raises(StorageUnavailable):
            await store.delete_prefix("")
        with pytest.raises(StorageUnavailable):
            async with store.local_copy(key):
                pass
    finally:
        await asyncio.to_thread(s3_server.start)
    try:
        await store.check()
        assert await store.get_bytes(key) == b"before"
        await store.put_file(key, source, move=True)
        assert await store.get_bytes(key) == b"during"
    finally:
        await store.close()
