"""S3 BlobStore on boto3: blobs at PREFIX/blobs/<alg>/<2 hex>/<hex>, uploads as multipart uploads.

An upload's staged bytes are S3 parts plus a "tail" object holding what is not yet a whole
part; its state (multipart id, parts, size, tail key) is a small JSON object beside them. Any
process can therefore take the next chunk of any upload: nothing lives in one process's memory
between requests. Within a request the bytes of the current part are gathered in a spooled
temporary file (memory up to a few MiB, then disk), never the whole blob.

Parts grow with their number (see part_size_for) so a 100 GiB layer stays far below S3's
10,000 parts. Commit: complete the multipart upload at a staging key, copy to the blob's key
(CopyObject, or UploadPartCopy in 5 GiB ranges above 5 GiB), delete the staging. A digest that
already exists aborts the upload instead. Every boto3 call runs in a dedicated thread pool.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError, ConnectionError as BotoConnectionError

from registry.digest import Digest, parse_digest
from registry.errors import RegistryError
from registry.storage.base import (BlobStore, DigestMismatch, Hasher, StorageFull, StorageUnavailable,
                                   StoredBlob, UploadNotFound, UploadOffsetMismatch)

log = logging.getLogger("registry.storage.s3")

T = TypeVar("T")

MIN_PART = 5 * 1024 * 1024  # S3's minimum for every part but the last
MAX_COPY = 5 * 1024 ** 3  # CopyObject's limit; larger objects are copied in parts
READ_CHUNK = 1024 * 1024
SPOOL_IN_MEMORY = 8 * 1024 * 1024
# What S3 servers answer when a write finds no room: MinIO's full disk (507), a MinIO or Ceph bucket
# quota, Swift's quota through s3api (413 EntityTooLarge: our single PUTs stay far below 5 GiB).
FULL_CODES = frozenset({"XMinioStorageFull", "XMinioAdminBucketQuotaExceeded", "QuotaExceeded", "EntityTooLarge"})


def part_size_for(part_number: int, base: int) -> int:
    """Size of part `part_number` (1-based): doubles every 1,000 parts.

    With an 8 MiB base: 8 GiB in the first 1,000 parts, 120 GiB by part 4,000.
    """
    return min(max(base, MIN_PART) << ((part_number - 1) // 1000), MAX_COPY)


@dataclass
class S3Settings:
    bucket: str
    prefix: str = ""
    region: str | None = None
    endpoint_url: str | None = None
    path_style: bool = False
    storage_class: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    part_size: int = 8 * 1024 * 1024
    max_connections: int = 32
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    max_attempts: int = 5


@dataclass
class _UploadState:
    size: int = 0
    multipart_id: str | None = None
    parts: list[dict[str, Any]] = field(default_factory=list)  # {"n", "etag", "size"}
    tail_key: str | None = None
    tail_size: int = 0
    sealed: bool = False  # completed into the staging data object; no more writes

    def to_json(self) -> bytes:
        return json.dumps(self.__dict__).encode()

    @classmethod
    def from_json(cls, data: bytes) -> _UploadState:
        return cls(**json.loads(data))


class S3Store(BlobStore):
    def __init__(self, settings: S3Settings) -> None:
        self.settings = settings
        self.bucket = settings.bucket
        self.prefix = settings.prefix.strip("/") + "/" if settings.prefix.strip("/") else ""
        boto_config = BotoConfig(
            region_name=settings.region,
            s3={"addressing_style": "path" if settings.path_style else "auto"},
            retries={"max_attempts": settings.max_attempts, "mode": "standard"},
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            max_pool_connections=settings.max_connections,
            # Newer botocore adds CRC trailers that many S3 implementations reject.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        session = boto3.session.Session(aws_access_key_id=settings.access_key or None,
                                        aws_secret_access_key=settings.secret_key or None,
                                        region_name=settings.region)
        self.client = session.client("s3", endpoint_url=settings.endpoint_url or None, config=boto_config)
        self._executor = ThreadPoolExecutor(max_workers=settings.max_connections, thread_name_prefix="s3")
        self._session, self._boto_config = session, boto_config
        # Readiness probes: their own client without retries and their own thread, so a hanging
        # endpoint holds at most one thread and never takes one from the requests' pool.
        self._probe_client: Any = None
        self._probe_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="s3-probe")

    # -- plumbing ---------------------------------------------------------------------
    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking boto3 call in the S3 pool; connection trouble becomes StorageUnavailable."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))
        except (BotoConnectionError, BotoCoreError) as exc:
            raise StorageUnavailable(f"S3 endpoint unreachable: {exc}") from exc
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "NoSuchBucket",
                        "AuthorizationHeaderMalformed", "InvalidToken", "ExpiredToken"):
                raise StorageUnavailable(f"S3 refused the request ({code}): check bucket and credentials") from exc
            if code in FULL_CODES:
                raise StorageFull(f"S3 has no room for the write ({code}): a full disk or a bucket quota") from exc
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) >= 500:
                raise StorageUnavailable(f"S3 error {code}") from exc
            raise

    @staticmethod
    def _missing(exc: ClientError) -> bool:
        return exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound", "NoSuchUpload")

    def blob_key(self, digest: Digest) -> str:
        return f"{self.prefix}blobs/{digest.algorithm}/{digest.hex[:2]}/{digest.hex}"

    def _upload_key(self, upload_id: str, name: str) -> str:
        return f"{self.prefix}uploads/{upload_id}/{name}"

    def _put_kwargs(self) -> dict[str, str]:
        return {"StorageClass": self.settings.storage_class} if self.settings.storage_class else {}

    # -- committed blobs --------------------------------------------------------------
    async def stat(self, digest: Digest) -> int | None:
        try:
            head = await self._call(self.client.head_object, Bucket=self.bucket, Key=self.blob_key(digest))
        except ClientError as exc:
            if self._missing(exc):
                return None
            raise
        return int(head["ContentLength"])

    async def read(self, digest: Digest, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        async for chunk in self._read_key(self.blob_key(digest), offset, length):
            yield chunk

    async def _read_key(self, key: str, offset: int, length: int | None) -> AsyncIterator[bytes]:
        if length == 0:
            return
        ranged: dict[str, str] = {}
        if offset or length is not None:  # "bytes=0-" of an empty object is unsatisfiable
            ranged["Range"] = f"bytes={offset}-{'' if length is None else offset + length - 1}"
        response = await self._call(self.client.get_object, Bucket=self.bucket, Key=key, **ranged)
        body = response["Body"]
        try:
            while chunk := await self._call(body.read, READ_CHUNK):
                yield chunk
        finally:
            body.close()

    def redirect_url(self, digest: Digest, expires_in: int) -> str | None:
        return self.client.generate_presigned_url("get_object", Params={"Bucket": self.bucket,
                                                                        "Key": self.blob_key(digest)},
                                                  ExpiresIn=expires_in)

    async def delete(self, digest: Digest) -> bool:
        if await self.stat(digest) is None:
            return False
        await self._call(self.client.delete_object, Bucket=self.bucket, Key=self.blob_key(digest))
        return True

    async def _list(self, prefix: str) -> AsyncIterator[dict[str, Any]]:
        """Objects under a key prefix, a page (up to 1,000) at a time."""
        token: dict[str, str] = {}
        while True:
            page = await self._call(self.client.list_objects_v2, Bucket=self.bucket, Prefix=prefix, **token)
            for item in page.get("Contents", []):
                yield item
            if not page.get("IsTruncated"):
                return
            token = {"ContinuationToken": page["NextContinuationToken"]}

    async def iter_stored_blobs(self) -> AsyncIterator[StoredBlob]:
        async for item in self._list(f"{self.prefix}blobs/"):
            digest = self._digest_of(item["Key"])
            if digest is not None:
                yield StoredBlob(digest, int(item["Size"]), item["LastModified"].timestamp())

    async def iter_strays(self) -> AsyncIterator[str]:
        async for item in self._list(f"{self.prefix}blobs/"):
            if self._digest_of(item["Key"]) is None:
                yield item["Key"]

    def _digest_of(self, key: str) -> Digest | None:
        parts = key[len(self.prefix):].split("/")
        if len(parts) != 4 or parts[0] != "blobs" or not parts[3].startswith(parts[2]) or len(parts[2]) != 2:
            return None
        try:
            return parse_digest(f"{parts[1]}:{parts[3]}")
        except RegistryError:
            return None

    async def quarantine(self, digest: Digest, reason: str) -> str:
        return await self._move_to_quarantine(self.blob_key(digest), f"{digest.algorithm}-{digest.hex}", reason)

    async def quarantine_stray(self, name: str, reason: str) -> str:
        if not name.startswith(f"{self.prefix}blobs/"):
            raise ValueError(f"{name} is not in the blob area")
        return await self._move_to_quarantine(name, name.rsplit("/", 1)[-1], reason)

    async def _move_to_quarantine(self, key: str, name: str, reason: str) -> str:
        size = int((await self._call(self.client.head_object, Bucket=self.bucket, Key=key))["ContentLength"])
        target = f"{self.prefix}quarantine/{name}.{int(time.time())}.{reason}"
        await self._copy(key, target, size)
        await self._call(self.client.delete_object, Bucket=self.bucket, Key=key)
        return target

    # -- upload state -----------------------------------------------------------------
    async def iter_uploads(self) -> AsyncIterator[tuple[str, float]]:
        """Upload ids from their objects and from multipart uploads whose state object is gone."""
        newest: dict[str, float] = {}
        base = f"{self.prefix}uploads/"
        async for item in self._list(base):
            upload_id = item["Key"][len(base):].split("/", 1)[0]
            newest[upload_id] = max(newest.get(upload_id, 0.0), item["LastModified"].timestamp())
        async for key, _, initiated in self._multipart_uploads(base):
            upload_id = key[len(base):].split("/", 1)[0]
            newest[upload_id] = max(newest.get(upload_id, 0.0), initiated)
        for upload, at in newest.items():
            yield upload, at

    async def _multipart_uploads(self, prefix: str) -> AsyncIterator[tuple[str, str, float]]:
        markers: dict[str, str] = {}
        while True:
            page = await self._call(self.client.list_multipart_uploads, Bucket=self.bucket, Prefix=prefix, **markers)
            for item in page.get("Uploads", []):
                yield item["Key"], item["UploadId"], item["Initiated"].timestamp()
            if not page.get("IsTruncated"):
                return
            markers = {"KeyMarker": page["NextKeyMarker"], "UploadIdMarker": page["NextUploadIdMarker"]}

    async def _load(self, upload_id: str) -> _UploadState:
        if not upload_id or "/" in upload_id or upload_id in (".", ".."):
            raise UploadNotFound(upload_id)
        try:
            response = await self._call(self.client.get_object, Bucket=self.bucket,
                                        Key=self._upload_key(upload_id, "state.json"))
            data = await self._call(response["Body"].read)
        except ClientError as exc:
            if self._missing(exc):
                raise UploadNotFound(upload_id) from None
            raise
        return _UploadState.from_json(data)

    async def _save(self, upload_id: str, state: _UploadState) -> None:
        await self._call(self.client.put_object, Bucket=self.bucket, Key=self._upload_key(upload_id, "state.json"),
                         Body=state.to_json(), ContentType="application/json")

    # -- staged uploads ---------------------------------------------------------------
    async def start_upload(self, upload_id: str) -> None:
        await self._save(upload_id, _UploadState())

    async def upload_size(self, upload_id: str) -> int:
        return (await self._load(upload_id)).size

    async def write_upload(self, upload_id: str, offset: int | None, chunks: AsyncIterable[bytes],
                           hasher: Hasher | None = None) -> int:
        state = await self._load(upload_id)
        if offset is None:
            offset = state.size
        if state.sealed or state.size != offset:
            raise UploadOffsetMismatch(state.size, offset)
        old_tail = state.tail_key
        spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)
        try:
            if state.tail_key:
                async for carried in self._read_key(state.tail_key, 0, state.tail_size):
                    await asyncio.to_thread(spool.write, carried)
            spooled = state.tail_size
            received = 0
            try:
                async for chunk in chunks:
                    view = memoryview(chunk)
                    while view:
                        room = part_size_for(len(state.parts) + 1, self.settings.part_size) - spooled
                        if room > 0:
                            piece = view[:room]
                            await asyncio.to_thread(_write_and_hash, spool, piece, hasher)
                            spooled += len(piece)
                            received += len(piece)
                            view = view[len(piece):]
                            room -= len(piece)
                        if room <= 0:  # a whole part is spooled (or a carried tail already was)
                            await self._upload_part(upload_id, state, spool, spooled)
                            spool.seek(0)
                            spool.truncate()
                            spooled = 0
            finally:
                # What arrived stays staged (as a new tail), even if the body broke off.
                state.size = offset + received
                await self._store_tail(upload_id, state, spool, spooled)
                await self._save(upload_id, state)
                if old_tail and old_tail != state.tail_key:
                    await self._delete_quietly(old_tail)
        finally:
            spool.close()
        return state.size

    async def put_blob(self, digest: Digest, chunks: AsyncIterable[bytes],
                       before_publish: Callable[[], Awaitable[None]] | None = None) -> int:
        """Spool the first part locally; a blob that fits is verified and PUT straight to its key.

        Larger blobs go through a multipart upload session as usual.
        """
        limit = part_size_for(1, self.settings.part_size)
        hasher = digest.hasher()
        spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)
        try:
            size = 0
            iterator = chunks.__aiter__()
            async for chunk in iterator:
                await asyncio.to_thread(_write_and_hash, spool, memoryview(chunk), hasher)
                size += len(chunk)
                if size > limit:
                    return await self._put_blob_in_parts(digest, spool, iterator, before_publish)
            if hasher.hexdigest() != digest.hex:
                raise DigestMismatch(str(digest))
            if before_publish is not None:
                await before_publish()
            if await self.stat(digest) is None:
                spool.seek(0)
                await self._call(self.client.put_object, Bucket=self.bucket, Key=self.blob_key(digest),
                                 Body=_Window(spool, size), ContentLength=size, **self._put_kwargs())
            return size
        finally:
            spool.close()

    async def _put_blob_in_parts(self, digest: Digest, spool: Any, rest: AsyncIterator[bytes],
                                 before_publish: Callable[[], Awaitable[None]] | None) -> int:
        """Too big for one PUT: replay the spooled start, then the rest, through an upload session."""

        async def everything() -> AsyncIterator[bytes]:
            spool.seek(0)
            while piece := await asyncio.to_thread(spool.read, READ_CHUNK):
                yield piece
            async for chunk in rest:
                yield chunk

        return await super().put_blob(digest, everything(), before_publish)

    async def _upload_part(self, upload_id: str, state: _UploadState, spool: Any, size: int) -> None:
        if state.multipart_id is None:
            created = await self._call(self.client.create_multipart_upload, Bucket=self.bucket,
                                       Key=self._upload_key(upload_id, "data"), **self._put_kwargs())
            state.multipart_id = created["UploadId"]
            await self._save(upload_id, state)  # so an abort can find it even if this request dies
        number = len(state.parts) + 1
        spool.seek(0)
        part = await self._call(self.client.upload_part, Bucket=self.bucket, Key=self._upload_key(upload_id, "data"),
                                UploadId=state.multipart_id, PartNumber=number,
                                Body=_Window(spool, size), ContentLength=size)
        state.parts.append({"n": number, "etag": part["ETag"], "size": size})

    async def _store_tail(self, upload_id: str, state: _UploadState, spool: Any, size: int) -> None:
        if size == 0:
            state.tail_key, state.tail_size = None, 0
            return
        # A fresh key per offset: the state object switches to it atomically.
        key = self._upload_key(upload_id, f"tail-{state.size}")
        spool.seek(0)
        await self._call(self.client.put_object, Bucket=self.bucket, Key=key, Body=_Window(spool, size),
                         ContentLength=size)
        state.tail_key, state.tail_size = key, size

    async def _seal(self, upload_id: str, state: _UploadState) -> str:
        """Complete the staged bytes into one readable object; returns its key."""
        data_key = self._upload_key(upload_id, "data")
        if state.sealed:
            return data_key
        if state.multipart_id is None:
            if state.tail_key:
                await self._call(self.client.copy_object, Bucket=self.bucket, Key=data_key,
                                 CopySource={"Bucket": self.bucket, "Key": state.tail_key})
            else:
                await self._call(self.client.put_object, Bucket=self.bucket, Key=data_key, Body=b"")
        else:
            if state.tail_key:  # the last part may be smaller than the minimum
                number = len(state.parts) + 1
                part = await self._call(self.client.upload_part_copy, Bucket=self.bucket, Key=data_key,
                                        UploadId=state.multipart_id, PartNumber=number,
                                        CopySource={"Bucket": self.bucket, "Key": state.tail_key})
                state.parts.append({"n": number, "etag": part["CopyPartResult"]["ETag"], "size": state.tail_size})
            await self._call(self.client.complete_multipart_upload, Bucket=self.bucket, Key=data_key,
                             UploadId=state.multipart_id,
                             MultipartUpload={"Parts": [{"PartNumber": p["n"], "ETag": p["etag"]}
                                                        for p in state.parts]})
        if state.tail_key:
            await self._delete_quietly(state.tail_key)
        state.multipart_id, state.tail_key, state.tail_size, state.sealed = None, None, 0, True
        await self._save(upload_id, state)
        return data_key

    async def read_upload(self, upload_id: str) -> AsyncIterator[bytes]:
        """Streams the staged bytes. S3 cannot read unfinished parts, so this seals the upload."""
        state = await self._load(upload_id)
        key = await self._seal(upload_id, state)
        async for chunk in self._read_key(key, 0, state.size):
            yield chunk

    async def commit_upload(self, upload_id: str, digest: Digest) -> bool:
        state = await self._load(upload_id)
        if await self.stat(digest) is not None:
            await self._discard(upload_id, state)
            return False
        if state.multipart_id is None and not state.sealed:
            # Everything is in the tail (or nothing was sent): one copy, no multipart at all.
            if state.tail_key:
                await self._copy(state.tail_key, self.blob_key(digest), state.tail_size)
            else:
                await self._call(self.client.put_object, Bucket=self.bucket, Key=self.blob_key(digest), Body=b"",
                                 **self._put_kwargs())
        else:
            data_key = await self._seal(upload_id, state)
            await self._copy(data_key, self.blob_key(digest), state.size)
        await self._discard(upload_id, state)
        return True

    async def _copy(self, source: str, target: str, size: int) -> None:
        copy_source = {"Bucket": self.bucket, "Key": source}
        if size <= MAX_COPY:
            await self._call(self.client.copy_object, Bucket=self.bucket, Key=target, CopySource=copy_source,
                             **self._put_kwargs())
            return
        created = await self._call(self.client.create_multipart_upload, Bucket=self.bucket, Key=target,
                                   **self._put_kwargs())
        upload = created["UploadId"]
        try:
            parts = []
            for number, start in enumerate(range(0, size, MAX_COPY), start=1):
                end = min(start + MAX_COPY, size) - 1
                part = await self._call(self.client.upload_part_copy, Bucket=self.bucket, Key=target, UploadId=upload,
                                        PartNumber=number, CopySource=copy_source,
                                        CopySourceRange=f"bytes={start}-{end}")
                parts.append({"PartNumber": number, "ETag": part["CopyPartResult"]["ETag"]})
            await self._call(self.client.complete_multipart_upload, Bucket=self.bucket, Key=target, UploadId=upload,
                             MultipartUpload={"Parts": parts})
        except BaseException:
            await self._call(self.client.abort_multipart_upload, Bucket=self.bucket, Key=target, UploadId=upload)
            raise

    async def abort_upload(self, upload_id: str) -> None:
        try:
            state = await self._load(upload_id)
        except UploadNotFound:
            if upload_id and "/" not in upload_id and upload_id not in (".", ".."):
                await self._discard_leftovers(upload_id)
            return
        await self._discard(upload_id, state)

    async def _discard_leftovers(self, upload_id: str) -> None:
        """An upload whose state object is gone (a crash mid-abort): whatever objects and parts remain."""
        prefix = self._upload_key(upload_id, "")
        async for key, multipart_id, _ in self._multipart_uploads(prefix):
            try:
                await self._call(self.client.abort_multipart_upload, Bucket=self.bucket, Key=key, UploadId=multipart_id)
            except ClientError as exc:
                if not self._missing(exc):
                    raise
        async for item in self._list(prefix):
            await self._delete_quietly(item["Key"])

    async def _discard(self, upload_id: str, state: _UploadState) -> None:
        """Remove an upload's multipart upload, tail, data and state (the state last)."""
        if state.multipart_id:
            try:
                await self._call(self.client.abort_multipart_upload, Bucket=self.bucket,
                                 Key=self._upload_key(upload_id, "data"), UploadId=state.multipart_id)
            except ClientError as exc:
                if not self._missing(exc):
                    raise
        if state.tail_key:
            await self._delete_quietly(state.tail_key)
        if state.sealed:
            await self._delete_quietly(self._upload_key(upload_id, "data"))
        await self._delete_quietly(self._upload_key(upload_id, "state.json"))

    async def _delete_quietly(self, key: str) -> None:
        try:
            await self._call(self.client.delete_object, Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if not self._missing(exc):
                log.warning("could not delete %s: %s", key, exc)

    async def ping(self, timeout: float) -> None:
        """One HEAD of the bucket, no retries: a missing bucket or refused credentials count as down."""
        await asyncio.get_running_loop().run_in_executor(self._probe_executor, self._head_bucket, timeout)

    def _head_bucket(self, timeout: float) -> None:
        if self._probe_client is None:
            config = self._boto_config.merge(BotoConfig(retries={"max_attempts": 1, "mode": "standard"},
                                                        connect_timeout=timeout, read_timeout=timeout,
                                                        max_pool_connections=1))
            self._probe_client = self._session.client("s3", endpoint_url=self.settings.endpoint_url or None,
                                                      config=config)
        self._probe_client.head_bucket(Bucket=self.bucket)

    async def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._probe_executor.shutdown(wait=False, cancel_futures=True)


def _write_and_hash(spool: Any, data: memoryview, hasher: Hasher | None) -> None:
    spool.write(data)
    if hasher is not None:
        hasher.update(data)


class _Window:
    """A read-only file view of the first `size` bytes of a spool, for boto3 request bodies."""

    def __init__(self, fileobj: Any, size: int) -> None:
        self._file = fileobj
        self._size = size
        self._pos = 0
        fileobj.seek(0)

    def read(self, amount: int = -1) -> bytes:
        remaining = self._size - self._pos
        if amount is None or amount < 0 or amount > remaining:
            amount = remaining
        data = self._file.read(amount)
        self._pos += len(data)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence == 0:
            self._pos = offset
        elif whence == 1:
            self._pos += offset
        else:
            self._pos = self._size + offset
        self._file.seek(self._pos)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def __len__(self) -> int:
        return self._size
