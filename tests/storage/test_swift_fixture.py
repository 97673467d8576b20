"""The S3 test server (OpenStack Swift + s3api, tests/support/swift.py) behaves like S3 where the
registry depends on it, checked with boto3. Where Swift differs from AWS the test says so.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path
from unittest import mock

import psutil
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError

from tests.support.swift import MAX_OBJECT_SIZE, MAX_PART_COUNT, MIN_PART_SIZE, SwiftS3, SwiftUnavailable

MiB = 1024 * 1024


def error_of(call, *args, **kwargs) -> tuple[int, str]:
    with pytest.raises(ClientError) as info:
        call(*args, **kwargs)
    response = info.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]


def http_get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_buckets(swift_s3, s3_client):
    swift_s3.create_bucket("fixture-bucket")
    swift_s3.create_bucket("fixture-bucket")  # exist_ok
    s3_client.create_bucket(Bucket="boto-bucket")
    s3_client.head_bucket(Bucket="boto-bucket")
    names = {b["Name"] for b in s3_client.list_buckets()["Buckets"]}
    assert {"fixture-bucket", "boto-bucket"} <= names
    # us-east-1 S3 answers 200 to a repeated CreateBucket by its owner; Swift says 409.
    assert error_of(s3_client.create_bucket, Bucket="boto-bucket") == (409, "BucketAlreadyOwnedByYou")
    assert error_of(s3_client.head_bucket, Bucket="no-such-bucket")[0] == 404
    with pytest.raises(RuntimeError, match="InvalidBucketName"):
        swift_s3.create_bucket("ab")  # S3 names are 3..63 characters


def test_put_get_head(s3_client, s3_bucket):
    data = os.urandom(100_000)
    put = s3_client.put_object(Bucket=s3_bucket, Key="blobs/sha256/ab/abc", Body=data)
    assert put["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    assert s3_client.get_object(Bucket=s3_bucket, Key="blobs/sha256/ab/abc")["Body"].read() == data
    head = s3_client.head_object(Bucket=s3_bucket, Key="blobs/sha256/ab/abc")
    assert head["ContentLength"] == len(data)
    assert error_of(s3_client.get_object, Bucket=s3_bucket, Key="missing") == (404, "NoSuchKey")
    assert error_of(s3_client.head_object, Bucket=s3_bucket, Key="missing")[0] == 404
    listing = s3_client.list_objects_v2(Bucket=s3_bucket, Prefix="blobs/")
    assert [o["Key"] for o in listing["Contents"]] == ["blobs/sha256/ab/abc"]
    s3_client.delete_object(Bucket=s3_bucket, Key="blobs/sha256/ab/abc")
    assert error_of(s3_client.get_object, Bucket=s3_bucket, Key="blobs/sha256/ab/abc")[0] == 404


def test_ranged_get(s3_client, s3_bucket):
    data = os.urandom(1000)
    s3_client.put_object(Bucket=s3_bucket, Key="k", Body=data)

    def get(byte_range: str):
        resp = s3_client.get_object(Bucket=s3_bucket, Key="k", Range=byte_range)
        return resp["ResponseMetadata"]["HTTPStatusCode"], resp["ContentRange"], resp["Body"].read()

    assert get("bytes=10-19") == (206, "bytes 10-19/1000", data[10:20])
    assert get("bytes=990-5000") == (206, "bytes 990-999/1000", data[990:])  # end clipped
    assert get("bytes=-3") == (206, "bytes 997-999/1000", data[-3:])
    assert get("bytes=999-") == (206, "bytes 999-999/1000", data[-1:])
    for unsatisfiable in ("bytes=1000-", "bytes=1000-1001", "bytes=5000-6000"):
        assert error_of(s3_client.get_object, Bucket=s3_bucket, Key="k", Range=unsatisfiable) == \
            (416, "InvalidRange")


def test_multipart_with_list_parts_and_upload_part_copy(s3_client, s3_bucket):
    source = os.urandom(6 * MiB)
    s3_client.put_object(Bucket=s3_bucket, Key="source", Body=source)
    first = os.urandom(MIN_PART_SIZE)
    upload = s3_client.create_multipart_upload(Bucket=s3_bucket, Key="target")["UploadId"]
    assert [u["UploadId"] for u in s3_client.list_multipart_uploads(Bucket=s3_bucket)["Uploads"]] == [upload]

    p1 = s3_client.upload_part(Bucket=s3_bucket, Key="target", UploadId=upload, PartNumber=1, Body=first)
    p2 = s3_client.upload_part_copy(Bucket=s3_bucket, Key="target", UploadId=upload, PartNumber=2,
                                    CopySource={"Bucket": s3_bucket, "Key": "source"},
                                    CopySourceRange=f"bytes=100-{100 + MIN_PART_SIZE - 1}")
    p3 = s3_client.upload_part(Bucket=s3_bucket, Key="target", UploadId=upload, PartNumber=3, Body=b"tail")
    assert p1["ETag"] == f'"{hashlib.md5(first).hexdigest()}"'
    copied = source[100:100 + MIN_PART_SIZE]
    assert p2["CopyPartResult"]["ETag"] == f'"{hashlib.md5(copied).hexdigest()}"'

    parts = s3_client.list_parts(Bucket=s3_bucket, Key="target", UploadId=upload)["Parts"]
    assert [(p["PartNumber"], p["Size"], p["ETag"]) for p in parts] == [
        (1, MIN_PART_SIZE, p1["ETag"]), (2, MIN_PART_SIZE, p2["CopyPartResult"]["ETag"]), (3, 4, p3["ETag"])]
    page = s3_client.list_parts(Bucket=s3_bucket, Key="target", UploadId=upload, MaxParts=2)
    assert page["IsTruncated"] and page["NextPartNumberMarker"] == 2

    done = s3_client.complete_multipart_upload(
        Bucket=s3_bucket, Key="target", UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": p1["ETag"]},
                                   {"PartNumber": 2, "ETag": p2["CopyPartResult"]["ETag"]},
                                   {"PartNumber": 3, "ETag": p3["ETag"]}]})
    assert done["ETag"].endswith('-3"')
    body = s3_client.get_object(Bucket=s3_bucket, Key="target")["Body"].read()
    assert body == first + copied + b"tail"
    boundary = f"bytes={MIN_PART_SIZE - 2}-{MIN_PART_SIZE + 1}"
    ranged = s3_client.get_object(Bucket=s3_bucket, Key="target", Range=boundary)
    assert ranged["Body"].read() == body[MIN_PART_SIZE - 2:MIN_PART_SIZE + 2]  # across a part boundary
    assert "Uploads" not in s3_client.list_multipart_uploads(Bucket=s3_bucket)
    # Differs from AWS (404 NoSuchUpload once completed): Swift still lists the parts, since they
    # are the segments of the object now, and even accepts UploadPart. Never rely on either.
    assert len(s3_client.list_parts(Bucket=s3_bucket, Key="target", UploadId=upload)["Parts"]) == 3
    # Completing again with the same parts (a retried request) answers 200 with the same ETag.
    again = s3_client.complete_multipart_upload(
        Bucket=s3_bucket, Key="target", UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": p1["ETag"]},
                                   {"PartNumber": 2, "ETag": p2["CopyPartResult"]["ETag"]},
                                   {"PartNumber": 3, "ETag": p3["ETag"]}]})
    assert again["ETag"] == done["ETag"]

    # CopyObject of the multipart result, as the S3 store does to move a finished upload.
    s3_client.copy_object(Bucket=s3_bucket, Key="copy", CopySource={"Bucket": s3_bucket, "Key": "target"})
    assert s3_client.get_object(Bucket=s3_bucket, Key="copy")["Body"].read() == body


def test_multipart_limits(s3_client, s3_bucket):
    upload = s3_client.create_multipart_upload(Bucket=s3_bucket, Key="k")["UploadId"]

    def part(number: int, body: bytes):
        return s3_client.upload_part(Bucket=s3_bucket, Key="k", UploadId=upload, PartNumber=number, Body=body)

    # Part numbers 1..10000 as in S3 (s3api's own default max_upload_part_num is 1000).
    part(MAX_PART_COUNT, b"z")
    for bad in (0, MAX_PART_COUNT + 1):
        assert error_of(part, bad, b"z") == (400, "InvalidArgument")
    # Every part but the last must be at least 5 MiB, checked at completion as S3 does.
    small = part(1, b"a" * (MIN_PART_SIZE - 1))
    last = part(2, b"b")
    assert error_of(s3_client.complete_multipart_upload, Bucket=s3_bucket, Key="k", UploadId=upload,
                    MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": small["ETag"]},
                                               {"PartNumber": 2, "ETag": last["ETag"]}]}) == (400, "EntityTooSmall")
    # A single part below the minimum is fine: it is the last one.
    s3_client.complete_multipart_upload(Bucket=s3_bucket, Key="k", UploadId=upload,
                                        MultipartUpload={"Parts": [{"PartNumber": 2, "ETag": last["ETag"]}]})
    assert s3_client.get_object(Bucket=s3_bucket, Key="k")["Body"].read() == b"b"


def test_upload_part_copy_ranges(s3_client, s3_bucket):
    s3_client.put_object(Bucket=s3_bucket, Key="src", Body=b"0123456789")
    upload = s3_client.create_multipart_upload(Bucket=s3_bucket, Key="k")["UploadId"]

    def copy(number: int, byte_range: str | None = None, key: str = "src"):
        extra = {"CopySourceRange": byte_range} if byte_range else {}
        return s3_client.upload_part_copy(Bucket=s3_bucket, Key="k", UploadId=upload, PartNumber=number,
                                          CopySource={"Bucket": s3_bucket, "Key": key}, **extra)

    copy(1, "bytes=2-4")
    copy(2)  # whole object
    # Differences from AWS, which rejects both with 400 InvalidArgument: Swift clips an end past
    # the source's size and accepts a suffix range. Never rely on either.
    copy(3, "bytes=5-100")
    copy(4, "bytes=-3")
    assert error_of(copy, 5, "bytes=20-30") == (400, "InvalidArgument")  # start past the end
    assert error_of(copy, 6, None, "missing") == (404, "NoSuchKey")
    sizes = [(p["PartNumber"], p["Size"])
             for p in s3_client.list_parts(Bucket=s3_bucket, Key="k", UploadId=upload)["Parts"]]
    assert sizes == [(1, 3), (2, 10), (3, 5), (4, 3)]
    s3_client.abort_multipart_upload(Bucket=s3_bucket, Key="k", UploadId=upload)


def test_abort_multipart_upload(s3_client, s3_bucket):
    upload = s3_client.create_multipart_upload(Bucket=s3_bucket, Key="k")["UploadId"]
    s3_client.upload_part(Bucket=s3_bucket, Key="k", UploadId=upload, PartNumber=1, Body=b"x" * 1000)
    aborted = s3_client.abort_multipart_upload(Bucket=s3_bucket, Key="k", UploadId=upload)
    assert aborted["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert error_of(s3_client.list_parts, Bucket=s3_bucket, Key="k", UploadId=upload) == (404, "NoSuchUpload")
    assert error_of(s3_client.upload_part, Bucket=s3_bucket, Key="k", UploadId=upload, PartNumber=2,
                    Body=b"y") == (404, "NoSuchUpload")
    assert error_of(s3_client.abort_multipart_upload, Bucket=s3_bucket, Key="k", UploadId=upload) == \
        (404, "NoSuchUpload")
    assert "Uploads" not in s3_client.list_multipart_uploads(Bucket=s3_bucket)
    assert "Contents" not in s3_client.list_objects_v2(Bucket=s3_bucket)
    s3_client.delete_bucket(Bucket=s3_bucket)  # no segments left behind either


def test_presigned_urls(s3_client, s3_bucket):
    data = os.urandom(5000)
    s3_client.put_object(Bucket=s3_bucket, Key="blob", Body=data)
    s3_client.put_object(Bucket=s3_bucket, Key="other", Body=b"other")
    url = s3_client.generate_presigned_url("get_object", Params={"Bucket": s3_bucket, "Key": "blob"},
                                           ExpiresIn=300)
    assert "X-Amz-Signature=" in url
    assert http_get(url) == (200, data)

    signature = url.rsplit("X-Amz-Signature=", 1)[1]
    forged = url.replace(signature, signature[:-1] + ("0" if signature[-1] != "0" else "1"))
    status, body = http_get(forged)
    assert (status, b"SignatureDoesNotMatch" in body) == (403, True)
    status, body = http_get(url.replace("/blob?", "/other?"))  # a valid signature, another key
    assert (status, b"SignatureDoesNotMatch" in body) == (403, True)
    status, _ = http_get(url.replace("X-Amz-Expires=300", "X-Amz-Expires=3000"))
    assert status == 403

    put_url = s3_client.generate_presigned_url("put_object", Params={"Bucket": s3_bucket, "Key": "put"},
                                               ExpiresIn=300)
    with urllib.request.urlopen(urllib.request.Request(put_url, data=b"hello", method="PUT")) as resp:
        assert resp.status == 200
    assert s3_client.get_object(Bucket=s3_bucket, Key="put")["Body"].read() == b"hello"


def test_presigned_url_expires(s3_client, s3_bucket):
    s3_client.put_object(Bucket=s3_bucket, Key="blob", Body=b"x")
    an_hour_ago = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(hours=1)
    with mock.patch("botocore.auth.get_current_datetime", return_value=an_hour_ago):
        url = s3_client.generate_presigned_url("get_object", Params={"Bucket": s3_bucket, "Key": "blob"},
                                               ExpiresIn=60)
    status, body = http_get(url)
    assert (status, b"Request has expired" in body) == (403, True)


def test_wrong_credentials_rejected(swift_s3, s3_bucket):
    assert error_of(swift_s3.client(aws_secret_access_key="wrong").list_buckets) == (403, "SignatureDoesNotMatch")
    assert error_of(swift_s3.client(aws_secret_access_key="wrong").put_object, Bucket=s3_bucket, Key="k",
                    Body=b"x") == (403, "SignatureDoesNotMatch")
    # tempauth cannot tell an unknown access key from a bad signature (AWS: InvalidAccessKeyId).
    assert error_of(swift_s3.client(aws_access_key_id="test:nobody").list_buckets) == \
        (403, "SignatureDoesNotMatch")
    assert error_of(swift_s3.client(region_name="eu-west-1").list_buckets) == (400, "AuthorizationHeaderMalformed")
    assert "Contents" not in swift_s3.client().list_objects_v2(Bucket=s3_bucket)


def test_if_none_match(s3_client, s3_bucket):
    s3_client.put_object(Bucket=s3_bucket, Key="k", Body=b"first")
    # PUT with If-None-Match: * on an existing key: 412, nothing written (S3 conditional writes).
    assert error_of(s3_client.put_object, Bucket=s3_bucket, Key="k", Body=b"second", IfNoneMatch="*") == \
        (412, "PreconditionFailed")
    assert s3_client.get_object(Bucket=s3_bucket, Key="k")["Body"].read() == b"first"
    s3_client.put_object(Bucket=s3_bucket, Key="new", Body=b"x", IfNoneMatch="*")
    # Any other conditional PUT (If-None-Match: "etag", If-Match, ...): 501 NotImplemented.
    assert error_of(s3_client.put_object, Bucket=s3_bucket, Key="k", Body=b"x", IfNoneMatch='"abc"') == \
        (501, "NotImplemented")
    # CompleteMultipartUpload with If-None-Match: * onto an existing key: 412 as well.
    upload = s3_client.create_multipart_upload(Bucket=s3_bucket, Key="k")["UploadId"]
    part = s3_client.upload_part(Bucket=s3_bucket, Key="k", UploadId=upload, PartNumber=1, Body=b"mp")
    assert error_of(s3_client.complete_multipart_upload, Bucket=s3_bucket, Key="k", UploadId=upload,
                    IfNoneMatch="*", MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]}) == \
        (412, "PreconditionFailed")
    assert s3_client.get_object(Bucket=s3_bucket, Key="k")["Body"].read() == b"first"
    s3_client.abort_multipart_upload(Bucket=s3_bucket, Key="k", UploadId=upload)


def test_payload_integrity_and_size_limit(swift_s3, s3_bucket):
    # A body that does not match its signed SHA-256 or its Content-MD5 is refused and not stored.
    status, body = swift_s3.request("PUT", f"/{s3_bucket}/a", body=b"hello",
                                    headers={"x-amz-content-sha256": hashlib.sha256(b"other").hexdigest()})
    assert (status, b"XAmzContentSHA256Mismatch" in body) == (400, True)
    md5 = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    status, body = swift_s3.request("PUT", f"/{s3_bucket}/b", body=b"hello", headers={"Content-MD5": md5})
    assert (status, b"BadDigest" in body) == (400, True)
    assert swift_s3.request("GET", f"/{s3_bucket}/a")[0] == 404
    assert swift_s3.request("GET", f"/{s3_bucket}/b")[0] == 404
    assert swift_s3.request("PUT", f"/{s3_bucket}/c", body=b"hello",
                            headers={"x-amz-content-sha256": "UNSIGNED-PAYLOAD"})[0] == 200
    # Single PUT limit: Swift's max_file_size, 5 GiB + 2 bytes (AWS: 5 GiB). Refused from the
    # headers alone, before any body is sent.
    status, body = swift_s3.request("PUT", f"/{s3_bucket}/huge",
                                    headers={"Content-Length": str(MAX_OBJECT_SIZE + 1),
                                             "x-amz-content-sha256": "UNSIGNED-PAYLOAD"})
    assert (status, b"EntityTooLarge" in body) == (400, True)


def test_restart_proxy_outage_and_clean_stop(swift_s3_factory):
    server: SwiftS3 = swift_s3_factory()
    client = server.client()
    server.create_bucket("durable")
    client.put_object(Bucket="durable", Key="k", Body=b"kept")
    processes = [psutil.Process(pid) for pid in server.pids().values()]
    assert len(processes) == 4

    server.stop_proxy()  # the S3 endpoint is gone: connection refused
    with pytest.raises(EndpointConnectionError):
        client.get_object(Bucket="durable", Key="k")
    server.start_proxy()
    assert client.get_object(Bucket="durable", Key="k")["Body"].read() == b"kept"

    server.pause_proxy()  # accepts connections, never answers
    hung = server.client(config=Config(s3={"addressing_style": "path"}, connect_timeout=1, read_timeout=0.5,
                                       retries={"max_attempts": 1}))
    with pytest.raises((ReadTimeoutError, ConnectTimeoutError)):
        hung.get_object(Bucket="durable", Key="k")
    server.resume_proxy()
    assert client.get_object(Bucket="durable", Key="k")["Body"].read() == b"kept"

    server.stop(kill=True)  # a crash: what was acknowledged is on disk
    server.start()
    assert client.get_object(Bucket="durable", Key="k")["Body"].read() == b"kept"
    server.restart()
    assert client.get_object(Bucket="durable", Key="k")["Body"].read() == b"kept"

    processes += [psutil.Process(pid) for pid in server.pids().values()]
    server.stop()
    assert server.pids() == {}
    assert [p.pid for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE] == []


def test_unavailable_swift_is_explained(tmp_path: Path):
    with pytest.raises(SwiftUnavailable, match="scripts/swift-venv"):
        SwiftS3(tmp_path, venv=tmp_path / "no-venv").start()
