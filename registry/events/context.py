"""The request an event belongs to: who made it and from where, carried by a context variable.

The API layer sets it once the caller is known (registry/api/recording.py); the content layer's
writes and the journal read it, so no function below the API needs an HTTP request in its signature.
Outside a request (a command-line tool, a background job) there is none, and events say `system`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

ROBOT_PREFIX = "robot$"  # registry/auth/credentials.py names robots so


@dataclass(frozen=True, slots=True)
class RequestInfo:
    id: str
    address: str
    host: str
    method: str
    user_agent: str
    actor: str  # the account's name; "" when anonymous
    actor_kind: str  # user, robot, anonymous

    def actor_label(self) -> str:
        """`alice`, `robot$ci`, or `anonymous (10.0.0.7)`: who, as one line for people."""
        return self.actor or f"anonymous ({self.address})"


def actor_kind(identity_kind: str, name: str) -> str:
    """An identity's kind as the audit trail tells it: a token speaks for a user or a robot."""
    if not name or identity_kind == "anonymous":
        return "anonymous"
    return "robot" if identity_kind == "robot" or name.startswith(ROBOT_PREFIX) else "user"


_CURRENT: ContextVar[RequestInfo | None] = ContextVar("registry_request", default=None)


def current() -> RequestInfo | None:
    return _CURRENT.get()


@contextlib.contextmanager
def serving(info: RequestInfo) -> Iterator[None]:
    """`info` is the current request for the block (and every task it starts)."""
    token = _CURRENT.set(info)
    try:
        yield
    finally:
        _CURRENT.reset(token)
