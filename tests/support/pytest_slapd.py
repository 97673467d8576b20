"""pytest plugin: an OpenLDAP directory (tests/support/slapd.py) for the session.

Registered in tests/conftest.py. Fixture:

- ``slapd`` (session): a running :class:`SlapdServer` on 127.0.0.1 with the base entries (ou=people,
  ou=groups, the service account) and a certificate from the session's CA (``netlab_ca``), for ldap://
  with StartTLS and ldaps://. Test modules add their own users and groups with names of their own. Do not
  stop it from a test: fault tests start a ``SlapdServer`` of their own.

If slapd cannot be started, the tests that use it fail (never skip) with how to install it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.slapd import SlapdServer, SlapdUnavailable
from tests.support.testca import TestCA


@pytest.fixture(scope="session")
def slapd(tmp_path_factory: pytest.TempPathFactory, netlab_ca: TestCA) -> Iterator[SlapdServer]:
    server = SlapdServer(tmp_path_factory.mktemp("slapd"), tls=netlab_ca.issue(["127.0.0.1", "localhost"]))
    problem = None
    try:
        server.start()
    except SlapdUnavailable as exc:
        problem = f"slapd is required for this test and is not available: {exc}"
    except RuntimeError as exc:
        server.stop()
        problem = f"could not start slapd for the test session: {exc}"
    if problem is not None:  # outside the except block, so the report is not a chained traceback
        pytest.fail(problem, pytrace=False)
    try:
        yield server
    finally:
        server.stop()
