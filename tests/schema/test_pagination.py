"""The cursor convention every connection shares."""

from __future__ import annotations

import pytest

from hub.core.errors import BadUserInput
from schema.pagination import check_first, decode_cursor, encode_cursor, page_of


def test_a_cursor_holds_its_sort_key() -> None:
    cursor = encode_cursor("2026-11-24T00:00:00+00:00", 42, None)
    assert decode_cursor(cursor, 3) == ["2026-11-24T00:00:00+00:00", 42, None]


@pytest.mark.parametrize("forged", ["", "abc", "!!!", "W10", encode_cursor(1), "\u0000"])
def test_a_cursor_not_given_by_the_list_is_bad_input(forged: str) -> None:
    with pytest.raises(BadUserInput) as caught:
        decode_cursor(forged, 2)
    assert caught.value.extensions == {"code": "BAD_USER_INPUT", "argument": "after"}


def test_a_page_says_whether_more_follow() -> None:
    rows = [(i, f"item {i}") for i in range(4)]
    page = page_of(rows, 3, node=lambda r: r[1], key=lambda r: (r[0],))
    assert page.nodes() == ["item 0", "item 1", "item 2"]
    assert page.page_info.has_next_page and not page.page_info.has_previous_page
    assert page.page_info.end_cursor == page.edges[-1].cursor
    assert decode_cursor(page.page_info.end_cursor or "", 1) == [2]
    last = page_of(rows[3:], 3, node=lambda r: r[1], key=lambda r: (r[0],), after="x")
    assert not last.page_info.has_next_page and last.page_info.has_previous_page
    empty = page_of([], 3, node=str, key=lambda r: (r,))
    assert empty.edges == [] and empty.page_info.end_cursor is None


def test_first_is_bounded() -> None:
    check_first(1, 100)
    check_first(100, 100)
    for bad in (0, -1, 101):
        with pytest.raises(BadUserInput):
            check_first(bad, 100)
