"""Registry set-ups the suites run against: the embedded default, and PostgreSQL + S3."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from tests.support.server import RegistryProcess
from tests.support.storage_view import S3View

SETUPS = ("sqlite+filesystem", "postgresql+s3")


def s3_env(s3: Any, bucket: str, prefix: str = "") -> dict[str, str]:
    """REGISTRY_* settings pointing the registry at a SwiftS3 server."""
    return {
        "REGISTRY_STORAGE_BACKEND": "s3",
        "REGISTRY_STORAGE_S3_BUCKET": bucket,
        "REGISTRY_STORAGE_S3_PREFIX": prefix,
        "REGISTRY_STORAGE_S3_ENDPOINT_URL": s3.endpoint_url,
        "REGISTRY_STORAGE_S3_ACCESS_KEY": s3.access_key,
        "REGISTRY_STORAGE_S3_SECRET_KEY": s3.secret_key,
        "REGISTRY_STORAGE_S3_REGION": s3.region,
        "REGISTRY_STORAGE_S3_PATH_STYLE": "true",
    }


def postgres_s3_registry(data_dir: Path, postgres: Any, s3: Any, *, bucket: str = "registry",
                         prefix: str | None = None, database_url: str | None = None,
                         **kwargs: Any) -> RegistryProcess:
    """A registry process on PostgreSQL + S3 (not started). Pass the same database_url and prefix
    to several of them to make one registry of many processes."""
    prefix = prefix if prefix is not None else f"r-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(bucket)
    env = {**s3_env(s3, bucket, prefix),
           "REGISTRY_DATABASE_URL": database_url or postgres.create_database()}
    env.update(kwargs.pop("env", {}))
    return RegistryProcess(data_dir, env=env, storage=S3View(s3.client(), bucket, prefix), **kwargs)
