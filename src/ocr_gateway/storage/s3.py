"""The S3 backend: key `a/b.png` is the object `S3_PREFIX + "a/b.png"` in `S3_BUCKET`.

The client is aiobotocore's: botocore's own request signing, retries and error codes (the
reference behaviour every S3-compatible server is tested against), on aiohttp, so no call
blocks the event loop. One client per process, opened in `prepare()` and closed in `close()`.
Path-style addressing, because the S3-compatible servers people run next to the gateway
(SeaweedFS, MinIO) serve a bucket under the endpoint's path, not as a subdomain.

Every botocore or network error becomes `StorageUnavailable` (a 503 at the API); a missing
object is `ArtefactMissing`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import aiobotocore.session
import aiohttp
import anyio
from aiobotocore.config import AioConfig
from botocore.exceptions import BotoCoreError, ClientError

from ocr_gateway.core.settings import Settings
from ocr_gateway.storage.base import ArtefactMissing, ArtefactStore, StorageUnavailable

if TYPE_CHECKING:
    from types_aiobotocore_s3.client import S3Client
    from types_aiobotocore_s3.type_defs import ObjectIdentifierTypeDef
else:
    S3Client = Any
    ObjectIdentifierTypeDef = dict

T = TypeVar("T")

# A file larger than this is uploaded in parts of this size, read from disk one part at a
# time, so a big export never sits whole in memory (S3 wants parts of 5 MiB or more).
MULTIPART_THRESHOLD = 16 << 20
PART_SIZE = 8 << 20
# Keys per DeleteObjects call: the S3 API's maximum.
DELETE_BATCH = 1000
# Objects downloaded at once by `local_copies`.
DOWNLOAD_CONCURRENCY = 16
OCTET_STREAM = "application/octet-stream"
# What a failed connection or a cut response raises, besides botocore's own errors.
NETWORK_ERRORS = (BotoCoreError, aiohttp.ClientError, OSError, TimeoutError)
MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})


class S3Store(ArtefactStore):
    """Objects in one bucket, under one prefix."""

    backend = "s3"

    def __init__(
        self,
        *,
        bucket: str,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        prefix: str = "",
        temp_dir: Path | None = None,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 60.0,
        max_pool_connections: int = 32,
    ) -> None:
        self.bucket = bucket
        self.endpoint_url = endpoint_url
        self.region = region
        self.prefix = prefix
        self.temp_dir = temp_dir
        self._credentials = (access_key_id, secret_access_key)
        self._config = AioConfig(
            s3={"addressing_style": "path"},
            signature_version="s3v4",
            connect_timeout=connect_timeout_s,
            read_timeout=read_timeout_s,
            # Two attempts: a dropped keep-alive connection is retried once, and an outage
            # still answers 503 within seconds rather than after botocore's long back-off.
            retries={"max_attempts": 2, "mode": "standard"},
            max_pool_connections=max_pool_connections,
        )
        self._exit_stack: contextlib.AsyncExitStack | None = None
        self._client: S3Client | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Store:
        key_id = settings.s3_access_key_id
        secret = settings.s3_secret_access_key
        return cls(
            bucket=settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            access_key_id=key_id.get_secret_value() if key_id else None,
            secret_access_key=secret.get_secret_value() if secret else None,
            prefix=settings.s3_prefix,
            temp_dir=settings.temp_dir,
        )

    def __repr__(self) -> str:
        """Where objects go, for the start log: endpoint, bucket and prefix, never a key."""
        return f"s3:{self.endpoint_url or 'aws'}/{self.bucket}/{self.prefix}"

    def _name(self, key: str) -> str:
        if not key or key.startswith("/"):
            raise ValueError(f"bad key {key!r}")
        return self.prefix + key

    @property
    def client(self) -> S3Client:
        if self._client is None:
            raise RuntimeError("S3Store.prepare() was not called")
        return self._client

    async def prepare(self) -> None:
        """Open the one client of this process, and create the bucket when it is missing."""
        if self._client is None:
            stack = contextlib.AsyncExitStack()
            session = aiobotocore.session.get_session()
            key_id, secret = self._credentials
            self._client = await stack.enter_async_context(
                session.create_client(
                    "s3",
                    endpoint_url=self.endpoint_url,
                    region_name=self.region,
                    aws_access_key_id=key_id,
                    aws_secret_access_key=secret,
                    config=self._config,
                )
            )
            self._exit_stack = stack
        try:
            await self._call(lambda: self.client.head_bucket(Bucket=self.bucket))
        except ArtefactMissing:
            await self._call(lambda: self.client.create_bucket(Bucket=self.bucket))

    async def close(self) -> None:
        stack, self._exit_stack, self._client = self._exit_stack, None, None
        if stack is not None:
            await stack.aclose()

    async def check(self) -> None:
        try:
            await self._call(lambda: self.client.head_bucket(Bucket=self.bucket))
        except ArtefactMissing as exc:
            raise StorageUnavailable(f"the bucket {self.bucket} is missing") from exc

    async def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> None:
        name = self._name(key)
        await self._call(
            lambda: self.client.put_object(
                Bucket=self.bucket, Key=name, Body=data, ContentType=content_type or OCTET_STREAM
            )
        )

    async def put_file(
        self, key: str, path: Path, *, content_type: str | None = None, move: bool = False
    ) -> None:
        size = (await anyio.Path(path).stat()).st_size
        if size <= MULTIPART_THRESHOLD:
            await self.put_bytes(
                key, await anyio.Path(path).read_bytes(), content_type=content_type
            )
        else:
            await self._put_multipart(key, path, content_type)
        if move:
            await anyio.Path(path).unlink(missing_ok=True)

    async def _put_multipart(self, key: str, path: Path, content_type: str | None) -> None:
        """Upload in parts read one at a time; an upload that fails is aborted, so the old
        object (or none) stays and no parts are left behind."""
        name = self._name(key)
        created = await self._call(
            lambda: self.client.create_multipart_upload(
                Bucket=self.bucket, Key=name, ContentType=content_type or OCTET_STREAM
            )
        )
        upload_id = created["UploadId"]
        try:
            parts = []
            async with await anyio.open_file(path, "rb") as handle:
                number = 1
                while chunk := await handle.read(PART_SIZE):
                    answer = await self._call(
                        functools.partial(
                            self.client.upload_part,
                            Bucket=self.bucket,
                            Key=name,
                            UploadId=upload_id,
                            PartNumber=number,
                            Body=chunk,
                        )
                    )
                    parts.append({"PartNumber": number, "ETag": answer["ETag"]})
                    number += 1
            await self._call(
                lambda: self.client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=name,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},  # type: ignore[typeddict-item]
                )
            )
        except BaseException:
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=name, UploadId=upload_id
                )
            raise

    async def get_bytes(self, key: str) -> bytes:
        name = self._name(key)

        async def read() -> bytes:
            answer = await self.client.get_object(Bucket=self.bucket, Key=name)
            async with answer["Body"] as body:
                data: bytes = await body.read()
                return data

        return await self._call(read, key)

    async def iter_bytes(self, key: str, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        name = self._name(key)
        answer = await self._call(lambda: self.client.get_object(Bucket=self.bucket, Key=name), key)
        async with answer["Body"] as body:
            while True:
                try:
                    chunk = await body.read(chunk_size)
                except NETWORK_ERRORS as exc:
                    raise StorageUnavailable(f"S3 read of {key} failed: {exc}") from exc
                if not chunk:
                    break
                yield chunk

    async def size(self, key: str) -> int | None:
        name = self._name(key)
        try:
            answer = await self._call(
                lambda: self.client.head_object(Bucket=self.bucket, Key=name), key
            )
        except ArtefactMissing:
            return None
        return int(answer["ContentLength"])

    async def delete(self, key: str) -> None:
        name = self._name(key)
        await self._call(lambda: self.client.delete_object(Bucket=self.bucket, Key=name))

    async def delete_prefix(self, prefix: str) -> None:
        keys = await self.list_keys(prefix)
        for start in range(0, len(keys), DELETE_BATCH):
            batch: list[ObjectIdentifierTypeDef] = [
                {"Key": self._name(key)} for key in keys[start : start + DELETE_BATCH]
            ]
            answer = await self._call(
                functools.partial(
                    self.client.delete_objects,
                    Bucket=self.bucket,
                    Delete={"Objects": batch, "Quiet": True},
                )
            )
            if errors := answer.get("Errors"):
                raise StorageUnavailable(f"S3 kept {len(errors)} objects under {prefix}")

    async def list_keys(self, prefix: str) -> list[str]:
        full = self.prefix + prefix

        async def listing() -> list[str]:
            keys: list[str] = []
            paginator = self.client.get_paginator("list_objects_v2")
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
                keys.extend(item["Key"][len(self.prefix) :] for item in page.get("Contents", []))
            return sorted(keys)

        return await self._call(listing)

    @contextlib.asynccontextmanager
    async def local_copy(self, key: str) -> AsyncIterator[Path]:
        """Download to a temporary file under TEMP_DIR (the pools read it), removed at exit."""
        folder = self.temp_dir
        if folder is not None:
            await anyio.Path(folder).mkdir(parents=True, exist_ok=True)
        suffix = Path(key).suffix
        descriptor, name = await anyio.to_thread.run_sync(
            lambda: tempfile.mkstemp(prefix="s3-", suffix=suffix, dir=folder)
        )
        path = Path(name)
        try:
            async with await anyio.open_file(descriptor, "wb", closefd=True) as handle:
                async for chunk in self.iter_bytes(key):
                    await handle.write(chunk)
            yield path
        finally:
            await anyio.Path(path).unlink(missing_ok=True)

    @contextlib.asynccontextmanager
    async def local_copies(self, keys: Iterable[str]) -> AsyncIterator[dict[str, Path]]:
        """Download the objects concurrently into one temporary folder, removed at exit."""
        folder = Path(
            await anyio.to_thread.run_sync(
                lambda: tempfile.mkdtemp(prefix="s3-copies-", dir=self.temp_dir)
            )
        )
        limit = asyncio.Semaphore(DOWNLOAD_CONCURRENCY)
        copies: dict[str, Path] = {}

        async def fetch(index: int, key: str) -> None:
            async with limit:
                try:
                    data = await self.get_bytes(key)
                except ArtefactMissing:
                    return
                path = folder / f"{index}{Path(key).suffix}"
                await anyio.Path(path).write_bytes(data)
                copies[key] = path

        try:
            await asyncio.gather(*(fetch(index, key) for index, key in enumerate(keys)))
            yield copies
        finally:
            await anyio.to_thread.run_sync(lambda: shutil.rmtree(folder, ignore_errors=True))

    async def presigned_url(self, key: str, expires_s: int) -> str | None:
        name = self._name(key)
        url: str = await self._call(
            lambda: self.client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": name}, ExpiresIn=expires_s
            )
        )
        return url

    async def _call(self, request: Callable[[], Awaitable[T]], key: str | None = None) -> T:
        """Run one request; a missing object is `ArtefactMissing`, any other failure of the
        server or the network `StorageUnavailable`."""
        try:
            return await request()
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            if code in MISSING_CODES or (code == "NoSuchBucket" and key is None):
                raise ArtefactMissing(f"no artefact {key or self.bucket}") from exc
            raise StorageUnavailable(f"S3 refused the request ({code}): {exc}") from exc
        except NETWORK_ERRORS as exc:
            raise StorageUnavailable(f"S3 cannot be reached: {exc}") from exc
