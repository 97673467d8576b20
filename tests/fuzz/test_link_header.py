"""An upstream's `Link` header (registry/client/client.py next_page, read while paging a tag list):
for any header text, either no next page or a path and query on the same list, never an exception."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from registry.client.client import next_page
from tests.fuzz.conftest import fuzz
from tests.fuzz.strategies import any_text, mutated

LIST = "/v2/team/app/tags/list"
LINKS = st.builds(lambda target, query, rel: f"<{target}{query}>; rel={rel}",
                  st.sampled_from([LIST, "http://h" + LIST, "https://x:1" + LIST, "/v2/other/tags/list", "", "//h/v2"]),
                  st.sampled_from(["?n=10&last=v1", "", "?", "?last=%00", "#frag", "?last=<>"]),
                  st.sampled_from(['"next"', "next", '"prev"', '"NEXT"', '"next prev"', ""]))


@fuzz
@given(st.one_of(LINKS, mutated(LINKS), any_text(), st.lists(LINKS, max_size=3).map(", ".join)))
@example('<' + LIST + '?last=a>; rel="next"')
@example('<http://[h' + LIST + '?n=10&last=v1>; rel="next"')  # urlsplit raises on it: found by this test
def test_a_next_page_is_on_the_same_list_or_none(header: str) -> None:
    found = next_page(header, LIST)
    assert found is None or (found.startswith(LIST + "?") and len(found) > len(LIST) + 1)
