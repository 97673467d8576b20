"""Fixtures of the test network (tests/support/netlab.py): the session's CA and the sites servers run at.

`net_site` is parametrized: `veth` (a network namespace over a veth pair, skipped with the reason
where the host cannot make one) and `loopback` (always). Session-scoped: each site is made once.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.netlab import Namespace, Site, Unavailable
from tests.support.process import terminate
from tests.support.testca import TestCA


@pytest.fixture(scope="session")
def netlab_ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    """A CA made for this session; every TLS server of the test network has a certificate from it."""
    return TestCA(tmp_path_factory.mktemp("netlab-ca"))


@pytest.fixture(scope="session", params=["veth", "loopback"])
def net_site(request: pytest.FixtureRequest) -> Iterator[Site]:
    if request.param == "loopback":
        site = Site("loopback", "127.0.0.1")
    else:
        try:
            namespace = Namespace.create()
        except Unavailable as exc:
            pytest.skip(f"no network namespace with a veth pair on this host: {exc}")
        site = Site("veth", namespace.server_address, namespace)
    try:
        yield site
    finally:
        for proc in site.processes:
            terminate(proc)
        if site.namespace is not None:
            site.namespace.remove()
            left = site.namespace.leftovers()
            assert not left, f"the test network left behind: {left}"
