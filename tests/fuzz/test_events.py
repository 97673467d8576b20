"""Hostile input to the events and audit code: webhook endpoints as YAML or JSON hand them over
(registry/events/endpoints.py), the audit API's query parameters (registry/admin/audit.py), and
whatever text lands in an exported CSV cell (registry/events/audit.py). Each either gives a clean
value or the one error it is meant to raise, never another exception."""

from __future__ import annotations

import csv
import io
import math
from typing import Any
from urllib.parse import urlencode

from aiohttp.test_utils import make_mocked_request
from hypothesis import example, given
from hypothesis import strategies as st

from registry.admin import audit as audit_api
from registry.errors import RegistryError
from registry.events.audit import CSV_COLUMNS, csv_line
from registry.events.endpoints import Endpoint, NotificationsConfigError, parse_endpoints
from registry.events.journal import Change, Journal, Source
from registry.metadata.events import EventRow
from tests.fuzz.conftest import fuzz
from tests.fuzz.strategies import SCALARS, any_text, mutated, near, values

DURATIONS = st.builds(lambda n, unit: f"{n}{unit}", st.integers(0, 10 ** 6),
                      st.sampled_from(["ns", "us", "µs", "ms", "s", "m", "h", "", "d", "1m", ".5s"]))
URLS = st.sampled_from(["http://ci:8080/events", "https://hooks.example.com/x?y=1", "http://[::1]:5000/",
                        "ftp://x", "http://", "http://a:99999/", "http://[::1", "https://h:٣/", "http://\udc80/",
                        "//h", "http://a b/", "http://u:p@h/e"])
HEADERS = st.one_of(st.dictionaries(st.one_of(st.sampled_from(["Authorization", "X-Token", "Content-Type", "a b",
                                                               "é", ""]), SCALARS),
                                    st.one_of(SCALARS, st.lists(SCALARS, max_size=3)), max_size=3), SCALARS)
ENDPOINTS = st.fixed_dictionaries(
    {"name": st.one_of(st.sampled_from(["ci", "a.b-c_d", "-x", "x" * 65, "a/b", ""]), SCALARS),
     "url": st.one_of(URLS, SCALARS)},
    optional={"headers": HEADERS, "timeout": st.one_of(DURATIONS, mutated(DURATIONS), SCALARS),
              "threshold": st.one_of(st.sampled_from([1, 10, "5", 0, -1, 1001, 2 ** 63]), SCALARS),
              "backoff": st.one_of(DURATIONS, mutated(DURATIONS), SCALARS),
              "ignoredmediatypes": st.one_of(st.lists(st.one_of(st.sampled_from(["application/octet-stream"]),
                                                                SCALARS), max_size=3), SCALARS),
              "ignore": st.one_of(st.fixed_dictionaries({}, optional={
                  "mediatypes": st.one_of(st.lists(SCALARS, max_size=2), SCALARS),
                  "actions": st.one_of(st.lists(st.sampled_from(["pull", "push", "mount", "delete", "x", ""]),
                                                max_size=3), SCALARS), "other": SCALARS}), SCALARS),
              "disabled": st.one_of(st.booleans(), SCALARS), "unknown": SCALARS})


@fuzz
@given(st.one_of(st.lists(st.one_of(ENDPOINTS, SCALARS, values(max_leaves=4)), max_size=3), SCALARS))
@example([{"name": "ci", "url": "http://x/", "timeout": "1" * 5000 + "s"}])
@example([{"name": "ci", "url": "http://x/", "headers": {"A": 16 ** 5000}}])
@example([{"name": "ci", "url": "http://x/", "headers": {"A": "a\r\nB: c"}}])
@example([{"name": 16 ** 5000, "url": "http://x/"}])
def test_webhook_endpoints(raw: Any) -> None:
    try:
        endpoints = parse_endpoints(raw)
    except NotificationsConfigError as exc:
        assert str(exc).startswith("notifications.endpoints"), exc
        return
    assert len({e.name for e in endpoints}) == len(endpoints)
    for endpoint in endpoints:
        assert isinstance(endpoint, Endpoint) and endpoint.url.startswith(("http://", "https://"))
        assert 0 < endpoint.timeout <= 3600 and 0 <= endpoint.backoff <= 3600 and 1 <= endpoint.threshold <= 1000
        assert all("\r" not in v and "\n" not in v and "\x00" not in v for _, v in endpoint.headers)
        assert endpoint.ignored_actions <= {"push", "pull", "mount", "delete"}
        assert "***" in endpoint.shown_url or "@" not in endpoint.url.split("/")[2]


QUERY_KEYS = ("repository", "actor", "action", "since", "until", "before", "limit", "format")
QUERY_VALUES = st.one_of(near(st.sampled_from(["team/app", "alice", "robot$ci", "push", "login", "1700000000",
                                               "1700000000.25", "2026-05-01", "2026-05-01T12:00:00Z",
                                               "2026-05-01T12:00:00+02:00", "1700000000.5-12", "100", "csv"])),
                         any_text())


@fuzz
@given(st.dictionaries(st.sampled_from(QUERY_KEYS), QUERY_VALUES, max_size=5))
@example({"since": "0001-01-01T00:00:00+14:00"})
@example({"before": "1" * 5000 + "-1"})
@example({"actor": "\udc80"})
def test_audit_query_parameters(query: dict[str, str]) -> None:
    encoded = urlencode({k: v.encode("utf-8", "surrogatepass") for k, v in query.items()})
    request = make_mocked_request("GET", f"/admin/api/audit?{encoded}")
    try:
        filters = audit_api.filters(request)
        before = audit_api._before(request)
    except RegistryError as exc:  # HTTPError too: the 400s the battery checks
        assert exc.code in ("NAME_INVALID", "UNSUPPORTED", "PAGINATION_NUMBER_INVALID"), exc
        return
    for when in (filters.since, filters.until):
        assert when is None or math.isfinite(when)
    assert filters.actor is None or (len(filters.actor) <= 255 and filters.actor.isprintable())
    assert before is None or (math.isfinite(before[0]) and 0 <= before[1] < 2 ** 63)


@fuzz
@given(st.lists(any_text(), min_size=4, max_size=4))
@example(["=cmd|' /C calc'!A0", "+1", "-2", "@SUM(A1)"])
def test_csv_cells_hold_any_text_and_no_formula(texts: list[str]) -> None:
    journal = Journal(None, Source("h:1", "i"))  # type: ignore[arg-type]  # row() touches no database
    row = journal.row(Change("login", "account", repository=texts[0], tag=texts[1], outcome="failed",
                             detail={"reason": texts[2]}), None)
    row.update(actor=texts[3][:255], txid=0, seq=1)
    line = csv_line(EventRow(**{name: row.get(name) for name in EventRow.__dataclass_fields__}))
    cells = next(csv.reader(io.StringIO(line)))
    assert len(cells) == len(CSV_COLUMNS)
    assert all(not cell or cell[0] not in "=+-@\t\r" for cell in cells)
