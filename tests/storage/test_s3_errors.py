"""How the S3 store names what S3 servers answer: a write with no room is StorageFull (a 503 the
client retries, never a 500), refused credentials and 5xx are StorageUnavailable."""

from __future__ import annotations

import asyncio

import pytest
from botocore.exceptions import ClientError

from registry.storage import StorageFull, StorageUnavailable
from registry.storage.s3 import S3Settings, S3Store


def answer(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "..."}, "ResponseMetadata": {"HTTPStatusCode": status}},
                       "PutObject")


@pytest.mark.parametrize("code, status, expected", [
    ("XMinioStorageFull", 507, StorageFull),           # MinIO, its disks full
    ("XMinioAdminBucketQuotaExceeded", 400, StorageFull),  # MinIO bucket quota
    ("QuotaExceeded", 403, StorageFull),               # Ceph RGW quota
    ("EntityTooLarge", 400, StorageFull),              # Swift s3api: the container's quota (413 inside)
    ("AccessDenied", 403, StorageUnavailable),
    ("InternalError", 500, StorageUnavailable),
])
def test_s3_answers_become_domain_errors(code: str, status: int, expected: type) -> None:
    store = S3Store(S3Settings(bucket="b", endpoint_url="http://127.0.0.1:9", access_key="a", secret_key="s",
                               region="us-east-1", path_style=True))

    def refuse() -> None:
        raise answer(code, status)

    async def call() -> None:
        try:
            await store._call(refuse)
        finally:
            await store.close()

    with pytest.raises(expected, match=code if expected is StorageFull else None):
        asyncio.run(call())
