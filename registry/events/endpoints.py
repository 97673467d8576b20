"""`notifications.endpoints`: webhook endpoints, configured with CNCF Distribution's names.

    notifications:
      endpoints:
        - name: ci
          url: https://ci.example.com/registry-events
          headers: {Authorization: [Bearer s3cr3t]}
          timeout: 500ms
          threshold: 5
          backoff: 1s
          ignoredmediatypes: [application/octet-stream]
          ignore: {mediatypes: [...], actions: [pull]}
          disabled: false

Durations are Go's (`500ms`, `1.5s`, `2m`, `1h30m`) or a number of seconds (Distribution reads a
bare number as nanoseconds: write a unit to mean the same in both).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from registry.config_entries import Entry, EntryError, described, shown
from registry.metadata.events import NOTIFIED_ACTIONS

KEYS = ("name", "url", "headers", "timeout", "threshold", "backoff", "ignoredmediatypes", "ignore", "disabled")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}")  # an HTTP field name (RFC 9110 5.1)
MAX_HEADERS = 50
MAX_SECONDS = 3600.0
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = re.compile(r"(?:[0-9]{1,9}(?:\.[0-9]{0,9})?|\.[0-9]{1,9})(?:ns|us|µs|μs|ms|s|m|h)")
_DURATION_PART = re.compile(r"([0-9.]+)(ns|us|µs|μs|ms|s|m|h)")


class NotificationsConfigError(EntryError):
    """A notifications.endpoints entry that cannot be used: names the entry, the key and why."""


@dataclass(frozen=True)
class Endpoint:
    name: str
    url: str
    headers: tuple[tuple[str, str], ...] = ()
    timeout: float = 5.0
    threshold: int = 10
    backoff: float = 1.0
    ignored_media_types: frozenset[str] = frozenset()
    ignored_actions: frozenset[str] = frozenset()
    disabled: bool = False

    def wants(self, action: str, media_type: str | None) -> bool:
        """Whether an event goes to this endpoint (audit-only actions never do)."""
        return (action in NOTIFIED_ACTIONS and action not in self.ignored_actions
                and (media_type is None or media_type not in self.ignored_media_types))

    @property
    def shown_url(self) -> str:
        """The URL without a password in it, for logs and the admin page."""
        parts = urlsplit(self.url)
        if parts.password is None:
            return self.url
        return parts._replace(netloc=f"{parts.username}:***@{parts.hostname}"
                                     f"{f':{parts.port}' if parts.port else ''}").geturl()


def parse_endpoints(raw: Any) -> list[Endpoint]:
    if not isinstance(raw, list):
        raise NotificationsConfigError(f"notifications.endpoints: expected a list; got {described(raw)}")
    endpoints: list[Endpoint] = []
    for index, item in enumerate(raw):
        endpoint = _endpoint(Entry(item, f"notifications.endpoints[{index}]", KEYS, NotificationsConfigError,
                                   "an endpoint is a mapping {name, url, ...}"))
        if any(e.name == endpoint.name for e in endpoints):
            raise NotificationsConfigError(f"notifications.endpoints[{index}]: name {endpoint.name!r} is used "
                                           "by an earlier endpoint")
        endpoints.append(endpoint)
    return endpoints


def _endpoint(entry: Entry) -> Endpoint:
    name = entry.text("name", required=True, max_length=64)
    if not NAME.fullmatch(name):
        raise entry.fail("name", "letters, digits, '.', '_' and '-', up to 64, starting with a letter or digit")
    ignore = entry.raw.get("ignore")
    ignored_types, ignored_actions = set(_media_types(entry, "ignoredmediatypes")), set()
    if ignore is not None:
        nested = Entry(ignore, f"{entry.where}: ignore", ("mediatypes", "actions"), entry.error,
                       "ignore is a mapping {mediatypes, actions}")
        ignored_types |= set(_media_types(nested, "mediatypes"))
        ignored_actions = set(nested.names("actions", "an action"))
        unknown = sorted(ignored_actions - set(NOTIFIED_ACTIONS))
        if unknown:
            raise nested.fail("actions", f"{shown(unknown[0])} is not one of {', '.join(NOTIFIED_ACTIONS)}")
    threshold = entry.integer("threshold", 10, minimum=1, maximum=1000)
    assert threshold is not None
    return Endpoint(name=name, url=entry.http_url("url")[0], headers=_headers(entry),
                    timeout=_duration(entry, "timeout", 5.0, positive=True),
                    threshold=threshold, backoff=_duration(entry, "backoff", 1.0, positive=False),
                    ignored_media_types=frozenset(ignored_types), ignored_actions=frozenset(ignored_actions),
                    disabled=entry.flag("disabled"))


def _headers(entry: Entry) -> tuple[tuple[str, str], ...]:
    """{Name: value or [values]} (Distribution's http.Header is {Name: [values]})."""
    raw = entry.raw.get("headers")
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise entry.fail("headers", f"a mapping of header names to values; got {described(raw)}")
    headers: list[tuple[str, str]] = []
    for name, values in raw.items():
        if not isinstance(name, str) or not TOKEN.fullmatch(name):
            raise entry.fail("headers", f"{shown(name)} is not a header name")
        if name.lower() in ("content-type", "content-length", "host", "transfer-encoding"):
            raise entry.fail("headers", f"{name} is set by the registry")
        for value in values if isinstance(values, list) else [values]:
            if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() < 64:
                value = str(value)  # `X-Count: 5` in YAML
            if not isinstance(value, str):
                raise entry.fail("headers", f"{name}: a value is text; got {described(value)}")
            text = value
            if not text or len(text) > 4096 or any(c in text for c in "\r\n\x00") or not text.isprintable():
                raise entry.fail("headers", f"{name}: values are printable text up to 4096 characters")
            headers.append((name, text))
    if len(headers) > MAX_HEADERS:
        raise entry.fail("headers", f"at most {MAX_HEADERS} values")
    return tuple(headers)


def _media_types(entry: Entry, key: str) -> list[str]:
    types = entry.names(key, "a media type")
    for value in types:
        if len(value) > 255 or not value.isprintable():
            raise entry.fail(key, f"{shown(value)} is not a media type")
    return types


def _duration(entry: Entry, key: str, default: float, positive: bool) -> float:
    value = entry.raw.get(key)
    if value is None:
        return default
    if isinstance(value, str) and _is_go_duration(value.strip()):
        seconds = sum(float(number) * _UNITS[unit] for number, unit in _DURATION_PART.findall(value.strip()))
    else:
        try:
            number = entry.number(key, minimum=0.0)  # a number of seconds
        except EntryError:
            raise entry.fail(key, f"a duration such as 500ms, 1s or 2m, or a number of seconds; "
                                  f"got {described(value)}") from None
        assert number is not None
        seconds = number
    if seconds > MAX_SECONDS or (positive and seconds <= 0):
        raise entry.fail(key, f"a duration {'above 0 and ' if positive else ''}up to 1h; got {shown(value)}")
    return seconds


def _is_go_duration(text: str) -> bool:
    """`1h30m`, `500ms`, `1.5s`: number-and-unit pairs, as Go's time.ParseDuration reads (no sign)."""
    return 0 < len(text) <= 64 and re.fullmatch(f"(?:{_DURATION.pattern})+", text) is not None \
        and "".join(a + b for a, b in _DURATION_PART.findall(text)) == text
