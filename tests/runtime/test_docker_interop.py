"""The issue's story end to end: `docker build` + `docker push` to the registry, then `registry run` of it.
Docker's own layers (its tar headers, the whiteout a RUN rm leaves) and its image config."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.e2e.conftest import dockerd, session_id  # noqa: F401 - fixtures
from tests.runtime.conftest import Runtime
from tests.support.images import make_base_context, run

pytestmark = pytest.mark.e2e

DOCKERFILE = """\
FROM scratch
COPY rootfs/ /
RUN ["/bin/busybox", "sh", "-c", "mkdir -p /data && echo kept > /data/a && echo gone > /data/b && \
echo app:x:1234:1234::/data:/bin/sh >> /etc/passwd"]
RUN ["/bin/busybox", "rm", "/data/b"]
ENV GREETING="hello from docker"
WORKDIR /data
USER app
CMD ["/bin/busybox", "sh", "-c", "echo $GREETING; pwd; /bin/busybox id -u; /bin/busybox ls /data"]
"""


def test_docker_pushed_image_runs(runtime: Runtime, dockerd: None, tmp_path: Path) -> None:  # noqa: F811
    context = tmp_path / "ctx"
    context.mkdir()
    make_base_context(context, uuid.uuid4().hex)
    (context / "Dockerfile").write_text(DOCKERFILE)
    tag = f"{runtime.registry.host}/rt-docker-{uuid.uuid4().hex[:8]}/app:1"
    # --network none: the RUN steps need no network, so the build does not depend on dockerd's bridge.
    run(["docker", "build", "--quiet", "--network", "none", "--tag", tag, str(context)],
        env={"DOCKER_BUILDKIT": "0"}, timeout=180)
    try:
        run(["docker", "push", tag], timeout=180)
        out = runtime.cli("run", "--rm", tag, timeout=120).stdout.splitlines()
    finally:
        run(["docker", "image", "rm", "--force", tag], check=False)
    assert out == ["hello from docker", "/data", "1234", "a"]
