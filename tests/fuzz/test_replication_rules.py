"""Replication rules (registry/replication/rules.py parse_rule, the one parser of the config file's
rules and the admin API's bodies): for any value JSON or YAML can hand over, a Rule or one
ReplicationConfigError naming the rule, never another exception; a rule it accepts reads back the same
from its own JSON.

And the admin API's PUT /admin/api/replication/rules/{name} on a real server, for any body: a 2xx with
the rule, or a 4xx with the spec's JSON error and nothing stored; never a 5xx.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from registry.config_entries import shown
from registry.replication.rules import KEYS, NAME, ReplicationConfigError, parse_rule
from tests.fuzz.conftest import PROFILE, fuzz
from tests.fuzz.strategies import SCALARS, any_text, mutated, values
from tests.support.battery import storage_growth, stored
from tests.support.server import RegistryProcess

# For each key: values a rule may hold, then values it must refuse (or that sit at an edge).
VALID: dict[str, list[Any]] = {
    "name": ["from-dc1", "a", "A.b_c-9", "n" * 64],
    "direction": ["pull", "push"],
    "url": ["http://127.0.0.1:9", "https://dc1.example.com", "https://dc1.example.com/", "http://[::1]:5000", "HTTP://H:1"],
    "username": ["robot$sync", ""], "password": ["pw", ""], "ca_file": ["/etc/ssl/ca.pem", ""],
    "repositories": [["**"], ["team/**", "tools/lib"], "team/*", ["[a-z]*/app"]],
    "tags": [["v*", "latest"], "*", ["[0-9]*"]],
    "versions": ["", ">=1.2 <2", "~1.2", "^1.2.3", "1.x", "1.2.3 || 2.x"],
    "platforms": [["linux/amd64"], ["linux/arm64/v8", "windows/amd64"], []],
    "destination_prefix": ["dc1/", "", "a.b/c_d-e/"],
    "schedule": ["", "every 10m", "0 3 * * *", "@daily", "every 366d"],
    "on_push": [False], "concurrency": [1, 4, 32, "4", 4.0], "delete": [True, False], "referrers": [True, False],
    "enabled": [True, False],
}
HOSTILE: dict[str, list[Any]] = {
    "name": ["n" * 65, "-a", ".a", "a/b", "..", "a b", "é", "", "a\x00b", "a\n"],
    "direction": ["Pull", "both", "", " pull"],
    "url": ["http://u:p@h", "http://h/v2", "ftp://h", "file:///etc/passwd", "http://", "http://h:99999", "http://h:port",
            "http://[::1", "http://h\x00", "http://h é", "//h", "http://@h", "https://h?x=1", "https://h#f", "http://h:٣"],
    "repositories": [["a//b"], ["prod**"], ["/a"], ["a/"], ["["], [""], [" "], ["*" * 300], ["a"] * 101, [1], [None]],
    "tags": [[""], ["\x00"], ["*" * 300], [["v*"]]],
    "versions": [">=1.2.3.4", "^", "<<1", "x.y", "1" * 5000, "*" * 300],
    "platforms": [["Linux/amd64"], ["linux"], ["linux/arm/v7/x"], [""], "linux/amd64/"],
    "destination_prefix": ["DC1/", "a//", "/", "-x/", "x" * 201],
    "schedule": ["every 0s", "every 367d", "0 0 30 2 *", "@never", "* * * * * *", "60 * * * *", "every", "*/0 * * * *",
                 "every 1e400s"],
    "on_push": [True, "true", 1], "concurrency": [0, 33, -1, "four", 4.5, 10 ** 400, "1_0", "٣"],
}
KEYS_TRIED = [*KEYS, "verify_tls"]


def value_for(key: str) -> st.SearchStrategy[Any]:
    """A value for `key`: one a rule may hold, one it must refuse, the text of either edited a little, or
    anything JSON or YAML makes."""
    pool = VALID.get(key, []) + HOSTILE.get(key, [])
    texts = [v for v in pool if isinstance(v, str)]
    choices = [st.sampled_from(pool)] if pool else []
    if texts:
        choices.append(mutated(st.sampled_from(texts), 2))
    return st.one_of(*choices, SCALARS, values(max_leaves=3))


@st.composite
def rules(draw: st.DrawFn) -> dict[str, Any]:
    """A valid rule (on_push only on a push rule) with none, one or a few keys given another value."""
    rule = {key: draw(st.sampled_from(VALID[key])) for key in ("name", "direction", "url")}
    for key in draw(st.lists(st.sampled_from(sorted(set(VALID) - set(rule))), unique=True)):
        rule[key] = draw(st.sampled_from(VALID[key]))
    if rule["direction"] == "push" and draw(st.booleans()):
        rule["on_push"] = True
    for key in draw(st.lists(st.sampled_from(KEYS_TRIED), max_size=3)):
        if draw(st.integers(0, 5)) == 0:
            rule.pop(key, None)
        else:
            rule[key] = draw(value_for(key))
    return rule


RULES = rules()


@fuzz
@given(st.one_of(RULES, SCALARS, values(max_leaves=6)))
@example({"name": "a", "direction": "pull", "url": "http://h", "concurrency": 10 ** 400})
@example({"name": "a", "direction": "pull", "url": "http://h", "username": 16 ** 5000})
@example({"name": "a", "direction": "pull", "url": "http://h:99999"})
@example({"name": "a", "direction": "pull", "url": "http://[::1"})
@example({"name": "a", "direction": "push", "url": "HTTPS://H"})  # kept as written, the client refused its uploads
@example({"name": "a", "direction": "pull", "url": "http://h", "schedule": "every 1e400s"})
@example({"name": "a", "direction": "pull", "url": "http://h", "versions": "1" * 5000})
@example({"name": "a", "direction": "push", "url": "http://h", "on_push": True, "tags": "v*"})
def test_parse_rule_gives_a_rule_or_one_replication_config_error(raw: Any) -> None:
    try:
        rule = parse_rule(raw, "rule")
    except ReplicationConfigError as exc:
        assert str(exc).startswith("rule"), exc
        event("refused")
        return
    event("accepted")
    assert NAME.fullmatch(rule.name) and rule.direction in ("pull", "push")
    assert rule.url.startswith(("http://", "https://")) and not rule.url.endswith("/")
    assert 1 <= rule.concurrency <= 32 and rule.repositories and rule.tags
    assert not rule.on_push or rule.direction == "push"
    assert (rule.schedule.strip() != "") == (rule.timing is not None)
    # What the database stores and the API shows reads back as the same rule.
    stored_form = rule.as_json(with_secret=True)
    assert set(stored_form) == set(KEYS)
    assert parse_rule(json.loads(json.dumps(stored_form)), "rule") == rule
    shown = rule.as_json()
    assert "password" not in shown and shown["password_set"] == bool(rule.password)


# -- PUT on a real server -----------------------------------------------------------------------------

CONFIG_RULE = "fuzz-cfg"
PUT_EXAMPLES = 100 if PROFILE == "fuzz" else 20_000  # each a request to a real server
# Names as they go in the URL: mostly ones a rule may have (the config rule's too), now and then not.
PUT_NAMES = st.sampled_from(["fz-a", "fz-b", "x" * 64, CONFIG_RULE] * 4 + ["a%2Fb", "%2e%2e", "n" * 65, "a%00b", "%C3%A9"])


@pytest.fixture(scope="module")
def put_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    rules = [{"name": CONFIG_RULE, "direction": "pull", "url": "http://127.0.0.1:9"}]
    env = {"REGISTRY_REPLICATION_RULES": json.dumps(rules)}
    with RegistryProcess(tmp_path_factory.mktemp("fuzz-replication") / "data", env=env) as server:
        yield server


def rules_table(data_dir: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(f"file:{data_dir / 'registry.db'}?mode=ro", uri=True, timeout=30) as conn:
        # The rules as the API wrote them (not their schedule's next firing, which the service moves).
        found = conn.execute("select name, definition, origin, updated_at from replication_rules order by name"
                             ).fetchall()
    conn.close()
    return found


def body_bytes(document: Any) -> bytes:
    try:
        return json.dumps(document, ensure_ascii=False).encode("utf-8", "surrogatepass")
    except (TypeError, ValueError, OverflowError):  # bytes, dates, sets, an int past str()'s limit
        return shown(document, 2000).encode("utf-8", "surrogatepass")


@st.composite
def named_rules(draw: st.DrawFn, name: str) -> bytes:
    """A rule's JSON whose name is mostly the URL's (or left out), now and then another."""
    rule = draw(RULES)
    choice = draw(st.integers(0, 4))
    if choice < 2:
        rule.pop("name", None)
    elif choice < 4:
        rule["name"] = name
    return body_bytes(rule)


def bodies(name: str) -> st.SearchStrategy[bytes]:
    """Mostly a rule's JSON (hypothesis draws the branches of one_of evenly: the choice is weighted here)."""
    others = st.one_of(values(max_leaves=6).map(body_bytes), st.binary(max_size=200),
                       any_text(200).map(lambda t: t.encode("utf-8", "surrogatepass")),
                       st.sampled_from([b"", b"null", b"[]", b"{}", b'{"a": 1, "a": 2}', b"\xef\xbb\xbf{}", b"{" * 5000,
                                        b'{"direction": "pull", "url": "http://h", "concurrency": 1' + b"0" * 400 + b"}"]))
    return st.integers(0, 3).flatmap(lambda pick: named_rules(name) if pick else others)


NAMED_BODIES = PUT_NAMES.flatmap(lambda name: st.tuples(st.just(name), bodies(name)))


@settings(fuzz, max_examples=PUT_EXAMPLES)
@given(NAMED_BODIES)
@example(("fz-a", b'{"direction": "pull", "url": "http://127.0.0.1:9", "password": "pw"}'))
@example(("fz-a", b'{"direction": "pull", "url": "http://127.0.0.1:9", "concurrency": 0}'))
@example((CONFIG_RULE, b'{"direction": "pull", "url": "http://127.0.0.1:9"}'))
def test_put_answers_2xx_or_a_4xx_that_stores_nothing(put_server: RegistryProcess,
                                                     named_body: tuple[str, bytes]) -> None:
    name, body = named_body
    before, rows_before = stored(put_server.data_dir), rules_table(put_server.data_dir)
    response = httpx.put(f"{put_server.url}/admin/api/replication/rules/{name}", content=body, timeout=30,
                         headers={"Content-Type": "application/json"})
    shown = f"PUT {name} {body[:300]!r} -> {response.status_code} {response.text[:300]}\n{put_server.log_tail(10)}"
    assert response.status_code < 500, shown
    event(f"status {response.status_code}")
    assert response.headers["content-type"].startswith("application/json"), shown
    answer = response.json()
    if response.status_code in (200, 201):
        assert answer["name"] == name and "password" not in answer, shown
        listed = {r["name"]: r for r in httpx.get(f"{put_server.url}/admin/api/replication/rules",
                                                  timeout=30).json()["rules"]}
        assert listed[name]["origin"] == "api" and {k: listed[name][k] for k in answer} == answer, shown
        return
    assert 400 <= response.status_code < 500, shown
    errors = answer.get("errors")
    assert isinstance(errors, list) and errors, shown
    assert all(isinstance(e.get("code"), str) and isinstance(e.get("message"), str) and e["message"]
               for e in errors), shown
    # A rule an earlier example made may run meanwhile (its schedule): its run is no doing of this request.
    grown = [g for g in storage_growth(before, stored(put_server.data_dir)) if "replication_runs" not in g]
    assert not grown, shown
    assert rules_table(put_server.data_dir) == rows_before, shown
