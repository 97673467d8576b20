"""What the server says about itself: a start-up line naming what it runs on (shown at every --log-level), a
warning when a registry without credentials listens beyond loopback, a shutdown line, and access lines that
carry who, from where, how many bytes and with which client."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from registry.config import load
from registry.server import exposure_warnings
from tests.support.server import RegistryProcess


def test_start_and_stop_lines_show_even_at_log_level_warning(tmp_path: Path) -> None:
    server = RegistryProcess(tmp_path / "data", args=["--log-level", "warning"])
    with server:
        pass
    log = server.log_path.read_text()
    start = next(line for line in log.splitlines() if "listening on" in line)
    assert f"http://127.0.0.1:{server.port}" in start and "auth none" in start
    assert f"storage filesystem at {(tmp_path / 'data').resolve()}" in start and "database sqlite" in start
    assert "mirrors none" in start
    assert re.search(rf"registry \S+ on 127\.0\.0\.1:{server.port} stopped", log), log
    assert "WARNING" not in log, "loopback with auth none is the safe default: nothing to warn about"


def test_no_secret_in_the_start_line(tmp_path: Path) -> None:
    config = load(None, {"REGISTRY_DATABASE_URL": "postgresql+asyncpg://registry:hunter2@db.example/registry"})
    from registry.server import summary

    line = summary(config, "127.0.0.1", 5000)
    assert "hunter2" not in line and "registry:***@db.example" in line


def test_an_open_registry_beyond_loopback_is_warned_about() -> None:
    open_config = load(None, {})
    warnings = exposure_warnings(open_config, "0.0.0.0", 5000)
    assert len(warnings) == 1 and "anyone who can reach it can pull every image" in warnings[0]
    assert exposure_warnings(open_config, "127.0.0.1", 5000) == []
    assert exposure_warnings(open_config, "::1", 5000) == []

    pushable = load(None, {"REGISTRY_AUTH_ANONYMOUS_PUSH_NETWORKS": "127.0.0.0/8,10.0.0.0/8"})
    warnings = exposure_warnings(pushable, "10.1.2.3", 5000)
    assert len(warnings) == 2 and "10.0.0.0/8 push and delete" in warnings[1]

    assert exposure_warnings(load(None, {"REGISTRY_AUTH_MODE": "basic"}), "0.0.0.0", 5000) == []


def test_access_lines_say_who_from_where_how_much_and_with_what(tmp_path: Path) -> None:
    with RegistryProcess(tmp_path / "data") as server:
        with httpx.Client(base_url=server.url, headers={"User-Agent": 'probe/1.0 "quoted"'}) as client:
            assert client.post("/v2/log/app/blobs/uploads/", params={"digest": "sha256:" + "0" * 64},
                               content=b"x" * 10).status_code == 400  # a wrong digest: 10 bytes in
            assert client.get("/v2/").status_code == 200
    lines = [line for line in server.log_path.read_text().splitlines() if "registry.access" in line]
    post = next(line for line in lines if '"POST /v2/log/app/blobs/uploads/' in line)
    assert re.search(r'registry\.access 127\.0\.0\.1 - "POST \S+" 400 in=10 out=\d+ [\d.]+ms '
                     r'"probe/1\.0 \\x22quoted\\x22" \S+', post), post
