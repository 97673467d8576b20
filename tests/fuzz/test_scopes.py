"""Token scopes (registry/api/token.py requested): for any `scope` values, what the token
server will grant from, or a 400 (UNSUPPORTED for a malformed scope or too many, NAME_INVALID for a
repository name that is not one), never another exception."""

from __future__ import annotations

import re

from hypothesis import example, given
from hypothesis import strategies as st

from registry.api.token import MAX_SCOPES, requested
from registry.errors import RegistryError
from registry.http_errors import http_status
from tests.fuzz.conftest import fuzz
from tests.fuzz.strategies import any_text, mutated

NAME = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*")
SCOPES = st.builds(lambda kind, name, actions: f"{kind}:{name}:{actions}",
                   st.sampled_from(["repository", "registry", "repository(plugin)", "REPOSITORY", "repo(x)"]),
                   st.sampled_from(["team/app", "a", "localhost:5000/a", "catalog", "library/alpine"]),
                   st.sampled_from(["pull", "push", "pull,push", "*", "", "delete", "pull,,push", "fly"]))
SCOPE_VALUES = st.lists(st.one_of(SCOPES, mutated(SCOPES), any_text(),
                                  st.lists(SCOPES, max_size=5).map(" ".join),
                                  st.integers(MAX_SCOPES - 2, MAX_SCOPES + 2).map(
                                      lambda n: " ".join(f"repository:r{i}:pull" for i in range(n)))),
                        max_size=4)


@fuzz
@given(SCOPE_VALUES)
@example(["repository:a:pull\n"])
@example(["repository:" + "a" * 600 + ":pull"])
@example(["repository:\udc80:pull"])
@example(["repository:a:pull:push"])
def test_scopes_give_wanted_access_or_400(values: list[str]) -> None:
    try:
        wanted = requested(values)
    except RegistryError as exc:
        assert exc.code in ("UNSUPPORTED", "NAME_INVALID") and http_status(exc) == 400, exc
        return
    for name, actions in wanted.items():
        assert NAME.fullmatch(name) and len(name) <= 255, name
        assert all(re.fullmatch(r"[a-z*]+", action) for action in actions), actions
        assert "*" not in actions
